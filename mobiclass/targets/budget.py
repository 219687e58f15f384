"""What a model costs on a target, before anything is trained or exported: RAM for activations, flash for
weights, latency, and whether it fits. Counted on the built model (one forward pass at its image size)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from collections.abc import Callable
from functools import cache

from ..errors import UsageError
from .catalog import BYTES_PER_VALUE, TARGETS, Recipe, Target

RAM_SOURCE = "estimate: the largest layer's input plus output at the target's precision (one forward pass)"


def get_target(name: str) -> Target:
    try:
        return TARGETS[name]
    except KeyError:
        raise UsageError(f"unknown target {name!r}; targets: {', '.join(TARGETS)} (see mobiclass targets)",
                         code="unknown_target") from None


@dataclass(frozen=True)
class Profile:
    """Counts of one model at one image size."""

    params: int
    macs: int
    peak_values: int  # the largest layer's input plus output, in values


@cache
def profile(model: str, width_mult: float, image_size: int, num_classes: int = 1000) -> Profile:
    import torch
    from torch import nn

    from ..models import count_parameters, create_model

    network = create_model(model, num_classes=num_classes, width_mult=width_mult).eval()
    macs = peak = 0

    def hook(layer, inputs, output):
        nonlocal macs, peak
        peak = max(peak, inputs[0][0].numel() + output[0].numel())
        if isinstance(layer, nn.Conv2d):
            kh, kw = layer.kernel_size
            macs += output[0].numel() * (layer.in_channels // layer.groups) * kh * kw
        else:
            macs += layer.in_features * layer.out_features

    handles = [m.register_forward_hook(hook) for m in network.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.inference_mode():
        network(torch.zeros(1, 3, image_size, image_size))
    for handle in handles:
        handle.remove()
    return Profile(count_parameters(network), macs, peak)


@dataclass(frozen=True)
class Budget:
    """A model on a target at one precision: its costs, whether it fits, and why not."""

    target: str
    precision: str
    ram_kb: float
    flash_kb: float
    latency_ms: float | None
    latency_source: str
    reasons: tuple[str, ...]

    @property
    def fits(self) -> bool:
        return not self.reasons

    def as_dict(self) -> dict:
        return {"fits": self.fits, **({"reason": "; ".join(self.reasons)} if self.reasons else {}),
                "precision": self.precision, "ram_kb": round(self.ram_kb, 1), "flash_kb": round(self.flash_kb, 1),
                "latency_ms": None if self.latency_ms is None else round(self.latency_ms, 2),
                "latency_source": self.latency_source, "ram_source": RAM_SOURCE}


def estimate(target: Target, recipe: Recipe, num_classes: int = 1000, precision: str | None = None) -> Budget:
    """The costs of `recipe` on `target` at `precision` (default: the target's preferred one)."""
    precision = precision or target.precisions[0]
    counts = profile(recipe.model, recipe.width_mult, recipe.image_size, num_classes)
    size = BYTES_PER_VALUE[precision]
    ram_kb, flash_kb = counts.peak_values * size / 1000, counts.params * (target.bytes_per_weight or size) / 1000
    reasons = []
    if ram_kb > target.ram_kb:
        reasons.append(f"its largest layer needs {ram_kb:,.0f} kB of RAM at {precision}; {target.name} has "
                       f"{target.ram_kb:,} kB")
    if flash_kb > target.flash_kb:
        reasons.append(f"its weights take {flash_kb:,.0f} kB at {precision}; {target.name} has {target.flash_kb:,} kB "
                       f"of flash")
    if target.max_image_size and recipe.image_size > target.max_image_size:
        reasons.append(f"{target.name} takes images up to {target.max_image_size} px")
    latency, source = latency_estimate(target, counts.macs)
    return Budget(target.name, precision, ram_kb, flash_kb, latency, source, tuple(reasons))


def latency_estimate(target: Target, macs: int) -> tuple[float | None, str]:
    """Scaled by multiply-adds from the target's published figure, or fitted on its several figures (a fixed cost
    plus a cost per multiply-add, least squares, its worst error on those figures stated), or unknown."""
    if target.name == "laptop":
        return None, "measured at export (ONNX Runtime, batch 1, this machine)"
    if target.format == "web":
        return None, "measured at export (the page in headless Chromium, where installed, on this machine)"
    if target.format == "ethos-u":
        return None, "at export: vela's estimate for the compiled model (Ethos-U55 with 128 MACs)"
    if target.latency is None:
        return None, "unknown: no published MobileNet figure for this device; time it on the board"
    published = target.latency
    if target.calibration:
        scale, power, error = latency_fit(target)
        return (scale * (macs / 1e6) ** power,
                f"estimate: fitted on {1 + len(target.calibration)} published figures of MobileNets on this device "
                f"({published.source}; {target.calibration[0].source}) as {scale:.2f} ms x (million multiply-adds)"
                f"^{power:.2f}, within {error:.0%} of each figure")
    reference = profile(published.recipe.model, published.recipe.width_mult, published.recipe.image_size)
    return (published.ms * macs / reference.macs,
            f"estimate: scaled by multiply-adds from {published.ms:g} ms for {published.recipe.describe()} "
            f"({published.precision}; {published.source}; one figure, so its error is unknown)")


@cache
def latency_fit(target: Target) -> tuple[float, float, float]:
    """(scale, power, worst relative error) of ms = scale x (million multiply-adds) ^ power, fitted by least squares
    on the logarithms of the target's published figures: small models cost more per multiply-add than big ones."""
    figures = (target.latency, *target.calibration)
    points = [(math.log(profile(f.recipe.model, f.recipe.width_mult, f.recipe.image_size).macs / 1e6),
               math.log(f.ms)) for f in figures]
    n = len(points)
    mean_x, mean_y = sum(x for x, _ in points) / n, sum(y for _, y in points) / n
    power = sum((x - mean_x) * (y - mean_y) for x, y in points) / sum((x - mean_x) ** 2 for x, _ in points)
    scale = math.exp(mean_y - power * mean_x)
    return scale, power, max(abs(math.exp(math.log(scale) + power * x - y) - 1) for x, y in points)


def choose_recipe(target: Target, explicit: dict, num_classes: int,
                  usable: Callable[[Recipe], bool] = lambda recipe: True) -> tuple[Recipe, Budget]:
    """The first of the target's `usable` recipes (those the chosen weights exist for) that fits, with the
    explicitly given options (model, width_mult, image_size) applied over it; refuses, naming the nearest recipe
    that fits, when the options cannot fit."""
    for recipe in filter(usable, _candidates(target, explicit)):
        budget = estimate(target, recipe, num_classes)
        if budget.fits:
            return recipe, budget
    wanted = _apply(target.recipes[0], explicit)
    budget = estimate(target, wanted, num_classes)
    if budget.fits:
        raise UsageError(f"{wanted.describe()} fits {target.name}, but there are no pretrained weights for it",
                         code="no_weights_for_recipe")
    nearest = next((r for r in filter(usable, target.recipes) if estimate(target, r, num_classes).fits), None)
    if nearest is None:
        raise UsageError(f"{wanted.describe()} does not fit {target.name}: {'; '.join(budget.reasons)}; none of its "
                         f"recipes fits with these weights either", code="no_recipe_fits", target=target.name)
    raise UsageError(f"{wanted.describe()} does not fit {target.name}: {'; '.join(budget.reasons)}; the nearest "
                     f"recipe that fits: {nearest.describe()}", code="does_not_fit", target=target.name,
                     model=nearest.model, width_mult=nearest.width_mult, image_size=nearest.image_size)


def _candidates(target: Target, explicit: dict) -> list[Recipe]:
    candidates = [_apply(recipe, explicit) for recipe in target.recipes]
    if "model" in explicit:  # the target's own recipes for that architecture first, else its first one's settings
        candidates.sort(key=lambda r: r.model != explicit["model"])
    return list(dict.fromkeys(candidates))


def _apply(recipe: Recipe, explicit: dict) -> Recipe:
    same_model = explicit.get("model", recipe.model) == recipe.model
    return Recipe(explicit.get("model", recipe.model),
                  float(explicit.get("width_mult", recipe.width_mult if same_model else 1.0)),
                  int(explicit.get("image_size", recipe.image_size)))
