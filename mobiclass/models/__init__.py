"""The MobileNet family: one file per architecture, shared blocks, and the registry."""
from . import efficientnet_lite, mobilenet_v1, mobilenet_v2, mobilenet_v3  # noqa: F401  (registers the models)
from .blocks import MobileNet
from .registry import (ModelSpec, candidate_widths, count_macs, count_parameters, create_model, get_model_spec,
                       list_models)

__all__ = ["MobileNet", "ModelSpec", "candidate_widths", "count_macs", "count_parameters", "create_model",
           "get_model_spec", "list_models"]
