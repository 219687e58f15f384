"""Inference: the classifier object and its batched prediction pipeline."""
from .classifier import BACKENDS, RUN_MANIFEST, RUN_WEIGHTS, Classifier, load_classifier, load_run, save_run

__all__ = ["BACKENDS", "RUN_MANIFEST", "RUN_WEIGHTS", "Classifier", "load_classifier", "load_run", "save_run"]
