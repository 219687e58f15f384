"""Model registry: names to builders (through the catalog), widths; parameter and multiply-add counts."""
from __future__ import annotations

from ..errors import UsageError
from .catalog import CATALOG, PADDING_MODES, ModelSpec


def list_models() -> list[str]:
    return list(CATALOG)


def get_model_spec(name: str) -> ModelSpec:
    try:
        return CATALOG[name]
    except KeyError:
        raise UsageError(f"unknown model {name!r}; choose one of: {', '.join(CATALOG)}") from None


def create_model(name: str, num_classes: int = 1000, width_mult: float | None = None,
                 padding: str = "torch", **kwargs):
    """Build an untrained model by name, e.g. ``create_model("mobilenet_v2", num_classes=5, width_mult=0.5)``."""
    spec = get_model_spec(name)
    if padding not in PADDING_MODES:
        raise UsageError(f"padding must be one of {', '.join(PADDING_MODES)}, got {padding!r}")
    if width_mult is not None and width_mult != 1.0:
        if width_mult not in spec.widths:
            allowed = ", ".join(map(str, spec.widths)) or "none (fixed by the variant)"
            raise UsageError(f"{name} has no width {width_mult}; widths: {allowed}")
        kwargs["width_mult"] = width_mult
    return spec.build(num_classes=num_classes, padding=padding, **kwargs)


def candidate_widths(name: str, width_mult: float | None = None) -> list[float]:
    """The widths to try when matching weights of unknown width: the given one, else 1.0 then the others."""
    if width_mult is not None:
        return [width_mult]
    return [1.0, *[w for w in get_model_spec(name).widths if w != 1.0]]


def count_parameters(model) -> int:
    """Learnable parameters, BatchNorm affine weights included (the figure papers and torchvision quote)."""
    return sum(p.numel() for p in model.parameters())


def count_macs(model, resolution: int = 224) -> int:
    """Multiply-adds of one forward pass on a `resolution`-square image, counted over convolutions and linears."""
    import torch
    from torch import nn

    total = 0

    def conv_hook(module: nn.Conv2d, _inputs, output):
        nonlocal total
        kh, kw = module.kernel_size
        total += output[0].numel() * (module.in_channels // module.groups) * kh * kw

    def linear_hook(module: nn.Linear, _inputs, output):
        nonlocal total
        total += module.in_features * module.out_features

    hooks = [m.register_forward_hook(conv_hook if isinstance(m, nn.Conv2d) else linear_hook)
             for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    was_training = model.training
    try:
        model.eval()
        with torch.inference_mode():
            model(torch.zeros(1, 3, resolution, resolution))
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    return total
