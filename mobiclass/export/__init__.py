"""Deployable files: ONNX (fp32 and int8), each verified against the PyTorch model."""
from .exporter import VerificationError, export
from .onnx import export_onnx
from .quantize import quantize_int8

__all__ = ["VerificationError", "export", "export_onnx", "quantize_int8"]
