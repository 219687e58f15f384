"""Inference: the classifier, its engines, and loading classifiers from names, files and run folders."""
from .classifier import Classifier
from .engines import Engine, measure_speed
from .sources import load_run, load_torch_classifier, onnx_engine, open_exported

__all__ = ["Classifier", "Engine", "load_run", "load_torch_classifier", "measure_speed", "onnx_engine",
           "open_exported"]
