"""Metrics and reports."""
from .metrics import summary_metrics

__all__ = ["summary_metrics"]
