"""Inference: the classifier object and its batched prediction pipeline."""
from .classifier import Classifier, load_classifier, load_run

__all__ = ["Classifier", "load_classifier", "load_run"]
