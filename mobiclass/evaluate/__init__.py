"""Metrics, reports, plots and model comparison. `evaluate` is imported when first used (it loads engines and
matplotlib); the metrics are light and used by training."""
from .metrics import calibration_bins, classification_report, fit_temperature, summary_metrics

__all__ = ["calibration_bins", "classification_report", "evaluate", "fit_temperature", "summary_metrics"]


def __getattr__(name: str):
    if name == "evaluate":
        from .evaluation import evaluate

        return evaluate
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
