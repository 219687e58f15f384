"""Deployable files: ONNX (fp32 and int8), TorchScript and TFLite, each verified against the PyTorch model.

The names below are imported when first used (they need torch), so that a cached export is found without it."""
import importlib

_WHERE = {"cached_onnx": "cache", "FORMATS": "exporter", "VerificationError": "exporter", "export": "exporter",
          "export_onnx": "onnx", "export_tflite": "onnx", "export_torchscript": "onnx", "quantize_int8": "quantize"}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
