"""The MobileNet family: one file per architecture, shared blocks, the catalog and the registry.

The catalog and registry need no torch; the architectures (and `MobileNet`) are imported when first used.
"""
from .catalog import CATALOG, ModelSpec
from .registry import candidate_widths, count_macs, count_parameters, create_model, get_model_spec, list_models

__all__ = ["CATALOG", "MobileNet", "ModelSpec", "candidate_widths", "count_macs", "count_parameters",
           "create_model", "get_model_spec", "list_models"]


def __getattr__(name: str):
    if name == "MobileNet":
        from .blocks import MobileNet

        return MobileNet
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
