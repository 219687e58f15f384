"""The training loops as free functions with explicit arguments (timm's train.py style): one epoch of
optimisation, validation, and the pieces they are built from (optimizer, schedule, sampler, loader)."""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from collections.abc import Callable, Iterable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DistributedSampler

from ..data.loaders import ImageDataset, normalized, prepared_ahead
from ..data.transforms import Preprocessing
from ..evaluate.metrics import summary_metrics
from ..models import get_model_spec
from ..errors import UsageError
from .config import TrainConfig
from .distributed import Distributed

M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # glibc's mallopt parameters (malloc.h)


def train_one_epoch(forward: Callable, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
                    optimizer: torch.optim.Optimizer, scheduler, loss_fn: Callable, scaler: torch.amp.GradScaler,
                    autocast=contextlib.nullcontext, on_batch: Callable | None = None,
                    where: str = "training", transform: Callable | None = None) -> tuple[float, int, int]:
    """One pass over `batches` of (inputs, labels) or (inputs, labels, a teacher's answers); returns (summed loss,
    correct answers, images). An image without a label (-1) is answered correctly when it agrees with the teacher.

    The scheduler steps per batch. `on_batch(n, loss_sum, correct, seen)` follows the running totals. A loss
    that stops being a number is an error that says what to change (`where` names the epoch). `transform(inputs,
    labels)` (a :class:`Seams` batch transform) may return class probabilities as the labels.
    """
    loss_sum, correct, seen = 0.0, 0, 0
    for inputs, labels, *taught in batches:
        if transform is not None:
            inputs, labels = transform(inputs, labels)
        with autocast():
            logits = forward(inputs)
            loss = loss_fn(logits.float(), labels, *taught)
        if labels.is_floating_point():
            labels = labels.argmax(1)  # mixed labels: the larger share is the answer counted right
        if taught:
            labels = torch.where(labels >= 0, labels, taught[0].argmax(1))
        if not torch.isfinite(loss):
            raise UsageError(f"the training loss became NaN or infinite in {where}; the learning rate is probably "
                             f"too high", code="loss_diverged")
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        loss_sum += loss.item() * len(labels)
        correct += (logits.argmax(1) == labels).sum().item()
        seen += len(labels)
        if on_batch:
            on_batch(len(labels), loss_sum, correct, seen)
    return loss_sum, correct, seen


@dataclass(frozen=True)
class Validation:
    """An epoch's answers on the whole validation split: the metrics, and the logits a provisional model's
    temperature is fitted on."""

    labels: np.ndarray
    logits: np.ndarray

    @property
    def metrics(self) -> dict:
        return summary_metrics(self.labels, torch.from_numpy(self.logits).softmax(1).numpy())


def validate(model: nn.Module, batches: Iterable, num_classes: int, distributed: Distributed) -> Validation:
    """The whole validation split: each process scores its slice, all see every score. In fp32 even when training
    runs in bf16: the kept epoch's figure is then the accuracy the saved model has everywhere (evaluate, export, the
    studio), not one photo off it."""
    logits, labels = [], []
    with torch.inference_mode():
        for images, targets in batches:
            logits.append(model(images).float().cpu().numpy())
            labels.append(targets.cpu().numpy())
    parts = distributed.gather((np.concatenate(labels) if labels else np.zeros(0, dtype=np.int64),
                                np.concatenate(logits) if logits else np.zeros((0, num_classes), dtype=np.float32)))
    return Validation(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))


def loss_function(config: TrainConfig, class_weights: torch.Tensor | None) -> Callable:
    def loss(logits, labels):
        return F.cross_entropy(logits, labels, weight=class_weights, label_smoothing=config.label_smoothing)
    return loss


def make_optimizer(model: nn.Module, trainable: list[nn.Module], config: TrainConfig) -> torch.optim.Optimizer:
    """Head at `lr`, backbone at `lr x backbone_lr_mult`; no weight decay on biases and norms (1-D tensors)."""
    groups = parameter_groups([(trainable, config.lr * config.backbone_lr_mult), ([model.head_modules()], config.lr)],
                              config.weight_decay)
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, momentum=config.momentum, nesterov=True)
    return torch.optim.AdamW(groups)


def make_head_optimizer(head: nn.Module, config: TrainConfig, steps: int):
    """The head stage's AdamW at `head_lr` (no weight decay on biases, as in every stage) and its cosine decay over
    `steps` optimizer steps."""
    optimizer = torch.optim.AdamW(parameter_groups([([head], config.head_lr)], config.weight_decay))
    return optimizer, torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(1, steps))


def parameter_groups(levels: list[tuple[list[nn.Module], float]], weight_decay: float) -> list[dict]:
    """Optimizer groups of the trainable parameters of each (modules, learning rate) level: weight decay on weights,
    none on biases and norms (1-D tensors)."""
    groups = []
    for modules, lr in levels:
        params = [p for m in modules for p in m.parameters() if p.requires_grad]
        groups.append({"params": [p for p in params if p.ndim > 1], "lr": lr, "weight_decay": weight_decay})
        groups.append({"params": [p for p in params if p.ndim <= 1], "lr": lr, "weight_decay": 0.0})
    return [g for g in groups if g["params"]]


def make_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig, steps_per_epoch: int):
    """Linear warm-up over `warmup_epochs`, then cosine decay to the last step."""
    total = config.epochs * steps_per_epoch
    warmup = min(int(config.warmup_epochs * steps_per_epoch), total - 1)
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(1, total - warmup))
    if warmup <= 0:
        return cosine
    return torch.optim.lr_scheduler.SequentialLR(optimizer, [
        torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=0.01, total_iters=warmup), cosine],
        milestones=[warmup])


def make_sampler(labels: list[int], counts: list[int], balance: str, distributed: Distributed, seed: int,
                 epoch: int) -> torch.utils.data.Sampler:
    """This epoch's order: seeded per epoch; class-balanced with `balance == "sampler"`; sharded under DDP."""
    if distributed.enabled:
        sampler = DistributedSampler(labels, distributed.world_size, distributed.rank, seed=seed)
        sampler.set_epoch(epoch)
        return sampler
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    if balance == "sampler":
        weights = torch.tensor([1.0 / counts[label] for label in labels], dtype=torch.double)
        return torch.utils.data.WeightedRandomSampler(weights, len(labels), generator=generator)
    return torch.utils.data.RandomSampler(labels, generator=generator)


def make_loader(dataset, batch_size: int, workers: int, **kwargs) -> torch.utils.data.DataLoader:
    """A DataLoader with its own generator: creating one never consumes the global RNG (dropout's)."""
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, num_workers=workers,
                                       generator=kwargs.pop("generator", torch.Generator()), **kwargs)


def training_batches(dataset: ImageDataset, sampler, batch_size: int, workers: int,
                     device: torch.device) -> Iterator:
    """An epoch's (images, labels) on `device` from a `raw` dataset. Without worker processes each batch's crops are
    cut on a thread while the batch before it trains, and stacked and normalised on this thread, on the step's
    cores: a torch operation on the cutting thread starts a second team of compute threads that fights the step's
    (stacking there slowed the step 15 % for 5 % of a core, measured beside the step alone; the epoch against the
    step: benchmarks/pipeline_bound.py)."""
    drop_last = len(sampler) > batch_size
    if workers:
        return on_device(make_loader(dataset, batch_size, workers, sampler=sampler, drop_last=drop_last), device,
                         dataset.preprocessing)
    loader = make_loader(dataset, batch_size, 0, sampler=sampler, drop_last=drop_last, collate_fn=_listed)
    return on_device(((torch.stack(pixels), labels) for pixels, labels in prepared_ahead(loader)), device,
                     dataset.preprocessing)


def _listed(samples: list[tuple[torch.Tensor, int]]) -> tuple[list[torch.Tensor], torch.Tensor]:
    """A batch as the list of its photos' bytes (stacked later, on the step's thread) and its labels."""
    return [pixels for pixels, _ in samples], torch.tensor([label for _, label in samples])


def on_device(batches: Iterable, device: torch.device, preprocessing: Preprocessing) -> Iterator:
    """(images normalised in channels_last, labels) on `device` from batches of crops' bytes: the bytes travel (a
    quarter of the floats) and become the model's input there. Closing it closes `batches`."""
    try:
        for pixels, labels in batches:
            yield normalized(pixels.to(device, non_blocking=True), preprocessing), labels.to(device)
    finally:
        if hasattr(batches, "close"):
            batches.close()


def autocast_dtype(precision: str, device: torch.device, model: str,
                   native_bf16: bool | None = None) -> torch.dtype | None:
    """The autocast type of `precision` for `model` on `device`. "auto": bf16 (else fp16) on GPU; on a CPU that
    computes bf16 natively (AVX-512 BF16 or AMX; `native_bf16` when known, else detected), bf16 for the models whose
    training step it speeds up (MobileNetV1 and V2: 1.1-1.4x here) and fp32 for those it slows down (5x5 depthwise
    convolutions: EfficientNet-Lite 0.77x, MobileNetV3 0.55-0.78x; benchmarks/pipeline_bound.py); fp32 elsewhere."""
    if precision == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        native = cpu_has_bf16() if native_bf16 is None else native_bf16
        return torch.bfloat16 if device.type == "cpu" and native and get_model_spec(model).bf16_on_cpu else None
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def cpu_has_bf16() -> bool:
    checks = (getattr(torch.cpu, "_is_avx512_bf16_supported", None), getattr(torch.cpu, "_is_amx_tile_supported", None))
    return any(check() for check in checks if check is not None)


def keep_freed_memory() -> bool:
    """Ask glibc to keep the memory a training step frees for the next step rather than give it back to the system,
    which the next step would fault in again page by page (on this 2-core machine: 4.7 million page faults and 10 s
    of kernel time in 16 steps of Lite0; its step runs 1.5x as fast without them, MobileNetV2's 1.1x:
    benchmarks/pipeline_bound.py --part memory). The process then keeps its peak memory until it ends, so the
    owners of processes that train and end call it (`mobiclass train`, the studio's job processes), not `train()`,
    which may run in a notebook or a server. False, changing nothing, where the C library is not glibc."""
    import platform

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    import ctypes

    mallopt = ctypes.CDLL(None).mallopt
    return bool(mallopt(M_MMAP_MAX, 0) and mallopt(M_TRIM_THRESHOLD, 2**31 - 1))


def autocast_for(device: torch.device, dtype: torch.dtype | None) -> Callable:
    return lambda: torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None)


def steps_per_epoch(images: int, batch_size: int) -> int:
    return max(1, math.ceil(images / batch_size))


@dataclass(frozen=True)
class Seams:
    """The trainer's extension points, passed as arguments (as timm passes its choices) for recipes its options do
    not cover: how the fine-tuning optimizer is made (``optimizer(model, trainable_blocks, config)``), a transform of
    each fine-tuning batch (``batch_transform(images, labels) -> (images, labels or class probabilities)``: mixup,
    ...), and the loss (``loss(config, class_weights) -> loss_fn(logits, labels)``). The defaults are the recipe;
    benchmarks/recipe_candidates.py weighs two others."""

    optimizer: Callable[[nn.Module, list, TrainConfig], torch.optim.Optimizer] = make_optimizer
    batch_transform: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = None
    loss: Callable[[TrainConfig, torch.Tensor | None], Callable] = loss_function
