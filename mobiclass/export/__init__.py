"""Deployable files: ONNX (fp32 and int8), TorchScript and TFLite, each verified against the PyTorch model."""
from .cache import cached_onnx
from .exporter import FORMATS, VerificationError, export
from .onnx import export_onnx, export_tflite, export_torchscript
from .quantize import quantize_int8

__all__ = ["FORMATS", "VerificationError", "cached_onnx", "export", "export_onnx", "export_tflite",
           "export_torchscript", "quantize_int8"]
