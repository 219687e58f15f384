"""Inference: the classifier object and its batched prediction pipeline."""
from .classifier import RUN_MANIFEST, RUN_WEIGHTS, Classifier, load_classifier, load_run, save_run

__all__ = ["RUN_MANIFEST", "RUN_WEIGHTS", "Classifier", "load_classifier", "load_run", "save_run"]
