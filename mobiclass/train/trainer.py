"""Two-stage training of a MobileNet classifier on a folder of photos.

Stage 1 (transfer learning): the pretrained backbone is frozen; its features are computed once
(center crop plus a few augmented views) and cached, and the new head is trained on the cache.
Stage 2 (fine-tuning): the last N backbone blocks (or all) are unfrozen and trained with the head,
the backbone at a lower learning rate, with warm-up then cosine decay, label smoothing, weight
decay and early stopping on the validation metric.

Every epoch ends with an atomic checkpoint (``state.pt``, loaded with ``weights_only=True``), so
an interrupted run resumes from its last completed epoch and reaches the same result.
"""
from __future__ import annotations

import csv
import io
import json
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DistributedSampler

from ..data import Preprocessing
from ..data.dataset import Dataset, scan_dataset
from ..data.features import extract_features
from ..data.loaders import Augmentation, ImageDataset
from ..errors import UsageError
from ..evaluate.metrics import summary_metrics
from ..files import atomic_path, atomic_write_text
from ..models import MobileNet, create_model
from ..runtime import RUN_MANIFEST, load_classifier, save_run
from ..weights import Weights, save_weights_file
from .config import TrainConfig
from .distributed import Distributed, init_distributed, shutdown
from .freeze import has_folded_batchnorm, reestimate_batchnorm, set_trainable, train_mode

STATE, CONFIG, SPLIT, REPORT = "state.pt", "config.yaml", "split.json", "data_report.json"
BN_REESTIMATE_IMAGES = 256


@dataclass
class TrainResult:
    run_dir: Path
    metrics: dict
    history: list[dict]


def train(data: str | Path | None = None, out: str | Path | None = None, *,
          config: TrainConfig | str | Path | None = None, overwrite: bool = False, progress: bool = True,
          on_epoch: Callable[[dict], None] | None = None, **options) -> TrainResult:
    """Train a classifier on `data` into the run folder `out`.

    Options are :class:`TrainConfig` fields (``model="mobilenet_v2", epochs=5, ...``); `config`
    is a TrainConfig or a YAML file whose values the options override. `on_epoch` sees each epoch's
    metrics row once it is saved (epoch 0 is the head trained on cached features); an exception it
    raises stops the run there (the tuner prunes trials this way).
    """
    overrides = {k: v for k, v in {"data": data and str(data), "out": out and str(out), **options}.items()
                 if v is not None}
    if isinstance(config, TrainConfig):
        config = TrainConfig.from_dict({**config.to_dict(), **overrides})
    elif config is not None:
        config = TrainConfig.load(config, **overrides)
    else:
        config = TrainConfig.from_dict(overrides)
    if not config.data or not config.out:
        raise UsageError("training needs DATA (a folder or CSV manifest) and --out (the run folder to create)")
    distributed = init_distributed(config.device)
    run_dir, error = Path(config.out), None
    if distributed.is_main:  # one process prepares the folder; the others wait for it (or for its error)
        try:
            _new_run_dir(run_dir, overwrite)
            atomic_write_text(run_dir / CONFIG, config.to_yaml())
        except UsageError as exc:
            error = str(exc)
    error = distributed.broadcast(error)
    if error:
        shutdown(distributed)
        raise UsageError(error)
    try:
        return _Trainer(config, run_dir, None, progress, on_epoch, distributed).run()
    finally:
        shutdown(distributed)


def resume(run_dir: str | Path, progress: bool = True) -> TrainResult:
    """Continue an interrupted run from its last completed epoch, with the same config and split."""
    run_dir = Path(run_dir)
    if not (run_dir / CONFIG).is_file():
        raise UsageError(f"{run_dir} is not a run folder to resume (no {CONFIG})")
    config = TrainConfig.load(run_dir / CONFIG)
    state = torch.load(run_dir / STATE, map_location="cpu", weights_only=True) if (run_dir / STATE).exists() else None
    distributed = init_distributed(config.device)
    try:
        return _Trainer(config, run_dir, state, progress, None, distributed).run()
    finally:
        shutdown(distributed)


def _new_run_dir(run_dir: Path, overwrite: bool) -> Path:
    if run_dir.exists() and any(run_dir.iterdir()):
        if not overwrite:
            raise UsageError(f"{run_dir} already exists; pass --overwrite to replace it, or --resume {run_dir} to "
                             f"continue it")
        if not ((run_dir / CONFIG).exists() or (run_dir / RUN_MANIFEST).exists()):
            raise UsageError(f"{run_dir} exists and is not a run folder; --overwrite only replaces run folders")
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


class _Trainer:
    def __init__(self, config: TrainConfig, run_dir: Path, state: dict | None, progress: bool,
                 on_epoch: Callable[[dict], None] | None = None, distributed: Distributed = Distributed()):
        self.config, self.run_dir, self.state, self.on_epoch = config, run_dir, state, on_epoch
        self.dist = distributed
        progress = progress and distributed.is_main  # one process speaks for all
        self.console = Console(stderr=True, quiet=not progress)
        self.progress_enabled = progress
        self.device = distributed.device(config.device)
        self.autocast_dtype = _autocast_dtype(config.precision, self.device)
        # A model trained from scratch has no statistics to keep: its BatchNorms always learn them.
        self.freeze_bn = config.freeze_bn and config.weights != "none"
        self.history: list[dict] = list(state["history"]) if state else []
        self.best = state["best"] if state else -math.inf
        self.best_epoch = state["best_epoch"] if state else -1
        self.stale_epochs = state["stale_epochs"] if state else 0
        self.started = time.perf_counter()

    # -- the run ---------------------------------------------------------------------------------------

    def run(self) -> TrainResult:
        cfg = self.config
        torch.manual_seed(cfg.seed)
        self.dataset = self._scan()
        self.model, self.preprocessing = self._build_model()
        self.class_weights = self._class_weights()
        try:
            if self.state is None or not self.state["stage1_done"]:
                if self.dist.is_main:  # cheap once features are cached: one process does it, then shares it
                    self._stage1()
                self._share_stage1()
            else:
                self.model.load_state_dict(self.state["model"])
            if cfg.epochs and cfg.unfreeze != "none":
                self._stage2()
            elif cfg.epochs:
                self.console.print("unfreeze is 'none': the head trained on cached features is the final model")
        except KeyboardInterrupt:
            self.console.print(f"[yellow]interrupted[/yellow]: the last completed epoch is saved; continue with "
                               f"mobiclass train --resume {self.run_dir}")
            raise
        return self._finish()

    def _scan(self) -> Dataset:
        cfg = self.config
        saved = self.run_dir / SPLIT
        split = json.loads(saved.read_text()) if saved.exists() else None  # a resumed run keeps its split
        dataset = scan_dataset(cfg.data, cfg.val_split, cfg.seed, workers=max(2, cfg.workers), saved_split=split)
        if not self.dist.is_main:  # the seeded split is the same in every process; rank 0 writes it
            return dataset
        if split is None:
            atomic_write_text(saved, json.dumps(dataset.split_manifest(), indent=1) + "\n")
        atomic_write_text(self.run_dir / REPORT, json.dumps(dataset.report(), indent=2) + "\n")
        with atomic_path(self.run_dir / "bad_files.csv") as tmp:
            with open(tmp, "w", newline="", encoding="utf-8") as f:
                writer = csv.DictWriter(f, ["path", "split", "class", "error"])
                writer.writeheader()
                writer.writerows(dataset.bad_files)
        self._print_scan(dataset)
        return dataset

    def _print_scan(self, dataset: Dataset) -> None:
        table = Table("class", *dataset.splits, title=f"{Path(dataset.root).name}: {dataset.split_origin}")
        for i, name in enumerate(dataset.classes):
            table.add_row(name, *(str(dataset.counts(split)[i]) for split in dataset.splits))
        self.console.print(table)
        if dataset.bad_files:
            self.console.print(f"[yellow]skipped {len(dataset.bad_files)} unusable file(s)[/yellow] "
                               f"(listed in {self.run_dir / 'bad_files.csv'}), e.g. "
                               f"{dataset.bad_files[0]['path']}: {dataset.bad_files[0]['error']}")
        if dataset.duplicates:
            self.console.print(f"[yellow]{len(dataset.duplicates)} file(s) appear in more than one split[/yellow] "
                               f"(exact duplicates, listed in {REPORT}); validation figures may be optimistic")
        if dataset.imbalance() > self.config.imbalance_ratio:
            self.console.print(f"[yellow]class imbalance[/yellow]: the largest class is {dataset.imbalance():.1f}x "
                               f"the smallest; class_balance={self.config.class_balance}")

    def _build_model(self) -> tuple[MobileNet, Preprocessing]:
        cfg = self.config
        if cfg.weights == "none":  # from scratch: torchvision's ImageNet normalisation, symmetric padding
            model = create_model(cfg.model, width_mult=cfg.width_mult)
            base_preprocessing, padding = Preprocessing(), "torch"
        else:
            classifier = load_classifier(cfg.model, cfg.weights)
            if cfg.width_mult != classifier.width_mult:
                raise UsageError(f"the {cfg.weights} weights are for width {classifier.width_mult}, not "
                                 f"{cfg.width_mult}; use --weights none to train another width from scratch")
            model, base_preprocessing, padding = classifier.model, classifier.preprocessing, classifier.padding
        self.padding = padding
        model.reset_classifier(len(self.dataset.classes))
        if cfg.dropout is not None:
            for module in model.head_modules().modules():
                if isinstance(module, nn.Dropout):
                    module.p = cfg.dropout
        model = model.to(self.device, memory_format=torch.channels_last)
        preprocessing = Preprocessing.for_size(cfg.image_size, cfg.crop, mean=base_preprocessing.mean,
                                               std=base_preprocessing.std,
                                               interpolation=base_preprocessing.interpolation)
        return model, preprocessing

    def _class_weights(self) -> torch.Tensor | None:
        cfg = self.config
        balance = cfg.class_balance
        if balance == "auto":
            balance = "weights" if self.dataset.imbalance() > cfg.imbalance_ratio else "none"
        if balance == "sampler" and self.dist.enabled:
            balance = "weights"  # each process samples its own shard; class weights balance the loss instead
        self.balance = balance
        if balance != "weights":
            return None
        counts = torch.tensor(self.dataset.counts("train"), dtype=torch.float32)
        return (counts.sum() / (len(counts) * counts)).to(self.device)

    # -- stage 1: the head on cached features -----------------------------------------------------------

    def _stage1(self) -> None:
        cfg, model = self.config, self.model
        train, val = self.dataset.splits["train"], self.dataset.splits["val"]
        if has_folded_batchnorm(model) and cfg.epochs and cfg.unfreeze != "none" and not self.freeze_bn:
            self._reestimate_batchnorm(train)
        views = 1 + cfg.feature_views
        start = time.perf_counter()
        with self._progress("stage 1: features", views * len(train) + len(val)) as advance:
            common = dict(seed=cfg.seed, batch_size=max(cfg.batch_size, 64), workers=cfg.workers,
                          device=self.device, on_batch=advance)
            train_x, train_y = extract_features(model, train, self.preprocessing,
                                                Augmentation.preset(cfg.augment), views, **common)
            val_x, val_y = extract_features(model, val, self.preprocessing, **common)
        feature_seconds = time.perf_counter() - start
        head = model.head_modules()
        torch.manual_seed(cfg.seed)  # dropout masks must not depend on whether features came from the cache
        generator = torch.Generator().manual_seed(cfg.seed)
        optimizer = torch.optim.AdamW(head.parameters(), lr=cfg.head_lr, weight_decay=cfg.weight_decay)
        steps = max(1, math.ceil(len(train_x) / cfg.batch_size)) * cfg.head_epochs
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(1, steps))
        train_x, train_y = train_x.to(self.device), train_y.to(self.device)
        head.train()
        total_loss = correct = seen = 0.0
        for _ in range(cfg.head_epochs):
            for batch in torch.randperm(len(train_x), generator=generator).split(cfg.batch_size):
                logits = model.forward_head(train_x[batch])
                loss = F.cross_entropy(logits, train_y[batch], weight=self.class_weights,
                                       label_smoothing=cfg.label_smoothing)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                total_loss += loss.item() * len(batch)
                correct += (logits.argmax(1) == train_y[batch]).sum().item()
                seen += len(batch)
        head.eval()
        with torch.inference_mode():
            probabilities = model.forward_head(val_x.to(self.device)).softmax(1).cpu().numpy()
        row = {"epoch": 0, "stage": "head", "train_loss": total_loss / max(seen, 1),
               "train_accuracy": correct / max(seen, 1), **_prefixed(summary_metrics(val_y.numpy(), probabilities)),
               "lr": cfg.head_lr, "images_per_s": (views * len(train) + len(val)) / max(feature_seconds, 1e-9),
               "seconds": time.perf_counter() - start}
        self._end_epoch(row)

    def _reestimate_batchnorm(self, samples) -> None:
        """Weights imported from TFLite lost their BatchNorm statistics; measure them before fine-tuning."""
        subset = samples[:BN_REESTIMATE_IMAGES]
        loader = _loader(ImageDataset(subset, self.preprocessing), 32, self.config.workers)
        reestimate_batchnorm(self.model, (images.to(self.device) for images, _ in loader))
        self.console.print(f"re-estimated BatchNorm statistics on {len(subset)} training images "
                           f"(the weights carried folded, identity statistics)")

    # -- stage 2: fine-tuning ------------------------------------------------------------------------------

    def _stage2(self) -> None:
        cfg, model = self.config, self.model
        trainable = set_trainable(model, cfg.unfreeze)
        steps_per_epoch = max(1, math.ceil(len(self.dataset.splits["train"]) / cfg.batch_size))
        optimizer = self._optimizer(trainable)
        warmup = min(int(cfg.warmup_epochs * steps_per_epoch), cfg.epochs * steps_per_epoch - 1)
        cosine = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(1, cfg.epochs * steps_per_epoch - warmup))
        if warmup > 0:
            scheduler = torch.optim.lr_scheduler.SequentialLR(optimizer, [
                torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=0.01, total_iters=warmup), cosine],
                milestones=[warmup])
        else:
            scheduler = cosine
        first_epoch = 1
        if self.state is not None and self.state.get("optimizer") is not None:
            optimizer.load_state_dict(self.state["optimizer"])
            scheduler.load_state_dict(self.state["scheduler"])
            first_epoch = self.state["epoch"] + 1
        if self.dist.enabled:  # different dropout masks in each process
            torch.manual_seed(cfg.seed + 1_000_003 * self.dist.rank)
        if self.state is not None:
            rng = self.state.get("rng_by_rank") or [self.state["rng"]]
            if len(rng) == self.dist.world_size:  # else: stage 2 had not started; the seeds above stand
                torch.set_rng_state(rng[self.dist.rank])
        if self.state is not None and self.state.get("stopped"):
            return
        self.network = DistributedDataParallel(model, device_ids=[self.device.index] if self.device.type == "cuda"
                                               else None) if self.dist.enabled else model
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.autocast_dtype == torch.float16)
        dataset = ImageDataset(self.dataset.splits["train"], self.preprocessing, Augmentation.preset(cfg.augment),
                               seed=cfg.seed)
        val_shard = self.dataset.splits["val"][self.dist.rank::self.dist.world_size]
        val_loader = _loader(ImageDataset(val_shard, self.preprocessing), cfg.batch_size, cfg.workers)
        for epoch in range(first_epoch, cfg.epochs + 1):
            start = time.perf_counter()
            dataset.epoch = epoch
            sampler = self._sampler(epoch)
            loader = _loader(dataset, cfg.batch_size, cfg.workers, sampler=sampler,
                             drop_last=len(sampler) > cfg.batch_size)
            train_mode(model, trainable, self.freeze_bn)
            stats = self._train_epoch(epoch, loader, optimizer, scheduler)
            images_per_s = stats.pop("images") / (time.perf_counter() - start)
            model.eval()
            val = self._evaluate(val_loader)
            row = {"epoch": epoch, "stage": "finetune", **stats, **_prefixed(val),
                   "lr": optimizer.param_groups[-1]["lr"], "images_per_s": images_per_s,
                   "seconds": time.perf_counter() - start}
            stop = self._end_epoch(row, optimizer=optimizer, scheduler=scheduler)
            if stop:
                self.console.print(f"early stopping: no better {cfg.metric} for {cfg.early_stopping} epochs")
                break

    def _optimizer(self, trainable: list[nn.Module]) -> torch.optim.Optimizer:
        cfg = self.config
        groups = []
        for modules, lr in ((trainable, cfg.lr * cfg.backbone_lr_mult), ([self.model.head_modules()], cfg.lr)):
            params = [p for m in modules for p in m.parameters() if p.requires_grad]
            # No weight decay on biases and normalisation weights (1-D tensors), as is standard.
            groups.append({"params": [p for p in params if p.ndim > 1], "lr": lr, "weight_decay": cfg.weight_decay})
            groups.append({"params": [p for p in params if p.ndim <= 1], "lr": lr, "weight_decay": 0.0})
        groups = [g for g in groups if g["params"]]
        if cfg.optimizer == "sgd":
            return torch.optim.SGD(groups, momentum=cfg.momentum, nesterov=True)
        return torch.optim.AdamW(groups)

    def _sampler(self, epoch: int) -> torch.utils.data.Sampler:
        samples = self.dataset.splits["train"]
        if self.dist.enabled:
            sampler = DistributedSampler(samples, self.dist.world_size, self.dist.rank, seed=self.config.seed)
            sampler.set_epoch(epoch)
            return sampler
        generator = torch.Generator().manual_seed(self.config.seed * 100_003 + epoch)
        if self.balance == "sampler":
            counts = self.dataset.counts("train")
            weights = torch.tensor([1.0 / counts[s.label] for s in samples], dtype=torch.double)
            return torch.utils.data.WeightedRandomSampler(weights, len(samples), generator=generator)
        return torch.utils.data.RandomSampler(samples, generator=generator)

    def _train_epoch(self, epoch, loader, optimizer, scheduler) -> dict:
        cfg = self.config
        total_loss = correct = seen = 0.0
        start = time.perf_counter()
        with self._progress(f"epoch {epoch}/{cfg.epochs}", len(loader.sampler), stats=True) as advance:
            for images, labels in loader:
                images = images.to(self.device).contiguous(memory_format=torch.channels_last)
                labels = labels.to(self.device)
                with self._autocast():
                    logits = self.network(images)
                    loss = F.cross_entropy(logits.float(), labels, weight=self.class_weights,
                                           label_smoothing=cfg.label_smoothing)
                optimizer.zero_grad(set_to_none=True)
                self.scaler.scale(loss).backward()
                self.scaler.step(optimizer)
                self.scaler.update()
                scheduler.step()
                total_loss += loss.item() * len(labels)
                correct += (logits.argmax(1) == labels).sum().item()
                seen += len(labels)
                elapsed = time.perf_counter() - start
                advance(len(labels), f"loss {total_loss / seen:.3f} acc {correct / seen:.3f} "
                                     f"lr {optimizer.param_groups[-1]['lr']:.2e} {seen / elapsed:.0f} img/s")
        total_loss, correct, seen = self.dist.sum([total_loss, correct, seen])  # every process's share
        return {"train_loss": total_loss / max(seen, 1), "train_accuracy": correct / max(seen, 1), "images": seen}

    def _evaluate(self, loader) -> dict:
        """Metrics on the whole validation split: each process scores its slice, all see every score."""
        probabilities, labels = [], []
        with torch.inference_mode(), self._autocast():
            for images, targets in loader:
                images = images.to(self.device).contiguous(memory_format=torch.channels_last)
                probabilities.append(self.model(images).float().softmax(1).cpu().numpy())
                labels.append(targets.numpy())
        parts = self.dist.gather((np.concatenate(labels) if labels else np.zeros(0, dtype=np.int64),
                                  np.concatenate(probabilities) if probabilities else
                                  np.zeros((0, len(self.dataset.classes)), dtype=np.float32)))
        return summary_metrics(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=self.autocast_dtype or torch.float32,
                              enabled=self.autocast_dtype is not None)

    def _share_stage1(self) -> None:
        """Stage 1 ran in rank 0: every process continues from its head, history and best score."""
        if not self.dist.enabled:
            return
        shared = self.dist.broadcast((self.model.state_dict(), self.history, self.best, self.best_epoch)
                                     if self.dist.is_main else None)
        state, self.history, self.best, self.best_epoch = shared
        self.model.load_state_dict(state)

    # -- bookkeeping ---------------------------------------------------------------------------------------

    def _end_epoch(self, row: dict, optimizer=None, scheduler=None) -> bool:
        """Log the epoch, save best/last weights and the resumable state; True when training should stop."""
        cfg = self.config
        self.history.append(row)
        value = row[f"val_{cfg.metric}"]
        improved = value > self.best + 1e-12
        if improved:
            self.best, self.best_epoch, self.stale_epochs = value, row["epoch"], 0
        elif row["stage"] == "finetune":
            self.stale_epochs += 1
        stop = bool(cfg.early_stopping) and self.stale_epochs >= cfg.early_stopping
        # Stage 1 runs in rank 0 alone, so only fine-tuning epochs gather (a collective) every RNG state.
        rng = torch.get_rng_state()
        rng_by_rank = self.dist.gather(rng) if row["stage"] == "finetune" else [rng]
        if not self.dist.is_main:  # every process took the same decisions; rank 0 writes them down
            return stop
        if improved:
            save_run(self.run_dir, self._weights(), {"training": cfg.to_dict(), "metrics": _val_metrics(row),
                                                     "best_epoch": row["epoch"]})
        save_weights_file(self._weights(), self.run_dir / "last.safetensors")
        self._write_history()
        state = {"epoch": row["epoch"], "stage1_done": True, "model": self.model.state_dict(),
                 "optimizer": optimizer.state_dict() if optimizer else None,
                 "scheduler": scheduler.state_dict() if scheduler else None, "rng": torch.get_rng_state(),
                 "rng_by_rank": rng_by_rank,
                 "best": self.best, "best_epoch": self.best_epoch, "stale_epochs": self.stale_epochs,
                 "history": self.history, "stopped": stop}
        with atomic_path(self.run_dir / STATE) as tmp:
            torch.save(state, tmp)
        marker = "[green]*[/green]" if improved else " "
        self.console.print(f"{marker} {row['stage']:8} epoch {row['epoch']:>2}: train loss {row['train_loss']:.3f} "
                           f"acc {row['train_accuracy']:.3f} | val loss {row['val_loss']:.3f} "
                           f"acc {row['val_accuracy']:.3f} macro-F1 {row['val_macro_f1']:.3f} | "
                           f"{row['images_per_s']:.0f} img/s, {row['seconds']:.1f} s")
        if self.on_epoch:
            self.on_epoch(row)
        return stop

    def _weights(self) -> Weights:
        state = {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}
        return Weights(state, self.config.model, self.padding, self.preprocessing, self.dataset.classes,
                       self.config.width_mult, source=f"trained on {self.config.data}")

    def _write_history(self) -> None:
        fields = list(dict.fromkeys(k for row in self.history for k in row))
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.history)
        atomic_write_text(self.run_dir / "metrics.csv", buffer.getvalue())
        atomic_write_text(self.run_dir / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in self.history))

    def _finish(self) -> TrainResult:
        best = next(r for r in self.history if r["epoch"] == self.best_epoch)
        stage_speed = {stage: [r["images_per_s"] for r in self.history if r["stage"] == stage]
                       for stage in ("head", "finetune")}
        metrics = {"val": _val_metrics(best), "best_epoch": self.best_epoch, "class_balance": self.balance,
                   "epochs_run": max(r["epoch"] for r in self.history),
                   "stopped_early": bool(self.history[-1]["epoch"] < self.config.epochs and
                                         self.config.unfreeze != "none"),
                   "stage1_images_per_s": _median(stage_speed["head"]),
                   "stage2_images_per_s": _median(stage_speed["finetune"]),
                   "train_seconds": sum(r["seconds"] for r in self.history), "processes": self.dist.world_size}
        if not self.dist.is_main:
            return TrainResult(self.run_dir, metrics, self.history)
        atomic_write_text(self.run_dir / "metrics.json", json.dumps(metrics, indent=2) + "\n")
        table = Table("", "value", title=f"run {self.run_dir}")
        for name, value in [("best epoch", str(self.best_epoch)),
                            *[(f"val {k}", f"{v:.4f}") for k, v in metrics["val"].items()],
                            ("stage 1 img/s", f"{metrics['stage1_images_per_s'] or 0:.0f}"),
                            ("stage 2 img/s", f"{metrics['stage2_images_per_s'] or 0:.0f}"),
                            ("time", f"{metrics['train_seconds']:.0f} s")]:
            table.add_row(name, value)
        self.console.print(table)
        return TrainResult(self.run_dir, metrics, self.history)

    def _progress(self, description: str, total: int, stats: bool = False):
        return _ProgressBar(description, total, stats, self.console, self.progress_enabled)


class _ProgressBar:
    """A rich progress bar; ``advance(n, text)`` moves it and shows loss, accuracy, lr and images/s."""

    def __init__(self, description, total, stats, console, enabled):
        columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()]
        if stats:
            columns.append(TextColumn("{task.fields[stats]}"))
        self.progress = Progress(*columns, console=console, transient=True, disable=not enabled)
        self.task = self.progress.add_task(description, total=total, stats="")

    def __enter__(self):
        self.progress.start()
        return lambda n, text="": self.progress.update(self.task, advance=n, stats=text)

    def __exit__(self, *exc):
        self.progress.stop()


def _loader(dataset, batch_size: int, workers: int, **kwargs) -> torch.utils.data.DataLoader:
    """A DataLoader with its own generator: creating one never consumes the global RNG (dropout's)."""
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, num_workers=workers,
                                       generator=kwargs.pop("generator", torch.Generator()), **kwargs)


def _autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """Mixed precision on GPU ("auto": bf16 where supported, else fp16); full fp32 on CPU unless asked."""
    if precision == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def _prefixed(metrics: dict) -> dict:
    return {f"val_{k}": v for k, v in metrics.items()}


def _val_metrics(row: dict) -> dict:
    return {"accuracy": row["val_accuracy"], "macro_f1": row["val_macro_f1"], "loss": row["val_loss"]}


def _median(values: list[float]) -> float | None:
    return float(np.median(values)) if values else None

