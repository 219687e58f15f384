"""The network a run starts from: pretrained weights (or none), the new head, dropout, padding and preprocessing."""
from __future__ import annotations

import torch
from torch import nn

from ..data import Preprocessing
from ..errors import UsageError
from ..models import create_model
from ..runtime import load_torch_classifier
from .config import TrainConfig


def build_model(cfg: TrainConfig, num_classes: int, device: torch.device) -> tuple[nn.Module, Preprocessing, str]:
    """(model, preprocessing, padding). A `padding` other than the weights' rebuilds the network with it and keeps
    the weights: TF "SAME" padding shifts stride-2 layers by one pixel, which fine-tuning absorbs, and some
    compilers (nncase for the K210) need symmetric padding to keep their working memory small."""
    if cfg.weights == "none":  # from scratch: torchvision's ImageNet normalisation, symmetric padding
        padding = "torch" if cfg.padding == "auto" else cfg.padding
        model, base = create_model(cfg.model, width_mult=cfg.width_mult, padding=padding), Preprocessing()
    else:
        pretrained = load_torch_classifier(cfg.model, cfg.weights, width_mult=cfg.width_mult)
        if cfg.width_mult != pretrained.width_mult:
            raise UsageError(f"the {cfg.weights} weights are for width {pretrained.width_mult}, not "
                             f"{cfg.width_mult}", code="width_needs_scratch")
        model, base, padding = pretrained.module, pretrained.preprocessing, pretrained.padding
        if cfg.padding not in ("auto", padding):
            state = model.state_dict()
            model = create_model(cfg.model, num_classes=model.num_classes, width_mult=cfg.width_mult,
                                 padding=cfg.padding)
            model.load_state_dict(state)
            padding = cfg.padding
    model.reset_classifier(num_classes)
    if cfg.dropout is not None:
        for module in model.head_modules().modules():
            if isinstance(module, nn.Dropout):
                module.p = cfg.dropout
    preprocessing = Preprocessing.for_size(cfg.image_size, cfg.crop, mean=base.mean, std=base.std,
                                           interpolation=base.interpolation)
    return model.to(device, memory_format=torch.channels_last), preprocessing, padding
