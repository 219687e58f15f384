"""Metrics, reports, plots and model comparison."""
from .evaluation import evaluate
from .metrics import calibration_bins, classification_report, summary_metrics

__all__ = ["calibration_bins", "classification_report", "evaluate", "summary_metrics"]
