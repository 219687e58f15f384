"""Deployable files: ONNX (fp32 and int8), TorchScript and TFLite, each verified against the PyTorch model."""
from .exporter import VerificationError, export
from .onnx import export_onnx, export_tflite, export_torchscript
from .quantize import quantize_int8

__all__ = ["VerificationError", "export", "export_onnx", "export_tflite", "export_torchscript", "quantize_int8"]
