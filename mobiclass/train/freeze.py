"""Which parts of the model learn, and BatchNorm statistics for weights that lost theirs."""
from __future__ import annotations

import torch
from torch import nn

from ..models import MobileNet


# Pretrained fine-tuning updates the last 8 backbone blocks: as accurate as all 18 of EfficientNet-Lite0 in 5-fold
# cross-validation on flowers-mini (0.914 vs 0.911) at twice the speed, since the early blocks run at the highest
# resolution (benchmarks/recipe_flowers.py). A model from scratch has nothing to keep: every block learns.
PRETRAINED_UNFREEZE = "8"


def resolved_unfreeze(unfreeze: str, from_scratch: bool) -> str:
    """What "auto" means for a run: the last PRETRAINED_UNFREEZE blocks, or all of them from scratch."""
    if unfreeze != "auto":
        return unfreeze
    return "all" if from_scratch else PRETRAINED_UNFREEZE


def trainable_blocks(model: MobileNet, unfreeze: str) -> list[nn.Module]:
    """The backbone blocks that fine-tuning updates: "all", "none" or the last N (all of them if N is more)."""
    blocks = model.backbone_blocks()
    if unfreeze == "all":
        return blocks
    count = 0 if unfreeze == "none" else int(unfreeze)
    return blocks[max(0, len(blocks) - count):] if count else []


def set_trainable(model: MobileNet, unfreeze: str) -> list[nn.Module]:
    """Freeze the backbone except the chosen blocks; the head always learns. Returns the trainable blocks."""
    model.requires_grad_(False)
    blocks = trainable_blocks(model, unfreeze)
    for module in [*blocks, model.head_modules()]:
        module.requires_grad_(True)
    return blocks


def train_mode(model: MobileNet, trainable: list[nn.Module], freeze_bn: bool) -> None:
    """model.train(), except that frozen blocks (and every BatchNorm, with `freeze_bn`) keep their statistics."""
    model.train()
    live = {id(m) for block in [*trainable, model.head_modules()] for m in block.modules()}
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d) and (freeze_bn or id(module) not in live):
            module.eval()


def has_folded_batchnorm(model: nn.Module) -> bool:
    """True when every BatchNorm has identity statistics, as weights imported from TFLite do."""
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    return bool(norms) and all(torch.all(m.running_mean == 0) and torch.all(m.running_var == 1) for m in norms)


BN_REESTIMATE_IMAGES = 256


def restore_batchnorm_statistics(model: nn.Module, samples: list, preprocessing, device, workers: int) -> int:
    """Weights imported from TFLite lost their BatchNorm statistics (folded, identity): measure real ones on the
    first training photos (at most BN_REESTIMATE_IMAGES); how many were used."""
    from ..data.loaders import ImageDataset
    from .loops import make_loader

    subset = samples[:BN_REESTIMATE_IMAGES]
    loader = make_loader(ImageDataset(subset, preprocessing), 32, workers)
    reestimate_batchnorm(model, (images.to(device) for images, _ in loader))
    return len(subset)


@torch.no_grad()
def reestimate_batchnorm(model: nn.Module, batches) -> None:
    """Give identity BatchNorms (see :func:`has_folded_batchnorm`) real statistics, keeping the eval function.

    An identity BN computes x + b. With the measured mean m and variance v of its input, setting
    running stats (m, v), weight sqrt(v + eps) and bias m + b gives the same eval function, while
    train-mode normalisation (batch statistics) now sees the scale it expects.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    sums = {id(m): [0.0, 0.0, 0] for m in norms}

    def hook(module, inputs, _output):
        x = inputs[0].detach().double()
        stats = sums[id(module)]
        stats[0] = stats[0] + x.sum(dim=(0, 2, 3))
        stats[1] = stats[1] + (x * x).sum(dim=(0, 2, 3))
        stats[2] += x.numel() // x.shape[1]

    handles = [m.register_forward_hook(hook) for m in norms]
    model.eval()
    try:
        for images in batches:
            model(images.contiguous(memory_format=torch.channels_last))
    finally:
        for handle in handles:
            handle.remove()
    for module in norms:
        total, squares, count = sums[id(module)]
        if not count:
            continue
        mean = total / count
        var = (squares / count - mean * mean).clamp_min(0)
        module.bias.copy_(mean + module.bias.double())  # the folded bias b stays: still x + b in eval mode
        module.weight.copy_(torch.sqrt(var + module.eps))
        module.running_mean.copy_(mean)
        module.running_var.copy_(var)
