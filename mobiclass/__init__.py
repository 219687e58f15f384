"""mobiclass: image classifiers on the MobileNet family, from a folder of photos to a deployable model.

The public names are imported when first used, so that ``import mobiclass`` (and ``mobiclass --help``)
does not load torch.
"""
from .errors import ImageError, MobiclassError, UsageError, WeightsError
from .version import __version__

__all__ = ["Classifier", "ImageError", "MobiclassError", "UsageError", "WeightsError", "__version__", "count_macs",
           "count_parameters", "create_model", "list_models", "load_classifier", "load_run"]

_LAZY = {"Classifier": "runtime", "load_run": "runtime", "load_classifier": "loading", "count_macs": "models",
         "count_parameters": "models", "create_model": "models", "list_models": "models"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
