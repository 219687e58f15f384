"""Two-stage training of a MobileNet classifier on a folder of photos.

The head stage (transfer learning): the pretrained backbone is frozen; its features are computed once
(center crop plus optional augmented views) and cached, and the new head is trained on the cache.
The fine-tuning stage: the last N backbone blocks (or all) are unfrozen and trained with the head, the
backbone at a lower learning rate, with warm-up then cosine decay, label smoothing, weight decay and
early stopping on the validation metric.

Every epoch ends with an atomic checkpoint (``state.pt``, loaded with ``weights_only=True``), so an
interrupted run resumes from its last completed epoch and reaches the same result.
"""
from __future__ import annotations

import time
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Callable

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ..data import Preprocessing
from ..data.dataset import Dataset, Sample, scan_dataset
from ..data.features import extract_features
from ..data.loaders import Augmentation, ImageDataset
from ..errors import UsageError
from ..run_folder import CONFIG, RunFolder, next_run_folder
from ..model_info import ModelInfo
from ..weights import Weights
from .calibration import settle_model
from .checkpoint import CheckpointSaver, val_metrics
from .config import TrainConfig
from .model_setup import build_model
from .targeting import check_fits, explicit_options, fit_to_target
from .distill import Teacher, distillation_loss, load_teacher, unlabeled_samples, with_teacher
from .distributed import Distributed, init_distributed, shutdown
from .freeze import has_folded_batchnorm, resolved_unfreeze, restore_batchnorm_statistics, set_trainable, train_mode
from .loops import (Seams, Validation, autocast_dtype, autocast_for, make_head_optimizer,
                    make_loader, make_sampler, make_scheduler, on_device, steps_per_epoch, train_one_epoch,
                    training_batches, validate)
from .report import TrainingReporter, ending
from .self_training import self_train, self_training_config


@dataclass
class TrainResult:
    run_dir: Path
    metrics: dict
    history: list[dict]


def train(data: str | Path | None = None, out: str | Path | None = None, *,
          config: TrainConfig | str | Path | None = None, overwrite: bool = False, progress: bool = True,
          on_epoch: Callable[[dict], None] | None = None, on_progress: Callable[[dict], None] | None = None,
          seams: Seams | None = None, **options) -> TrainResult:
    """Train a classifier on `data` into the run folder `out` (by default the next free ``runs/train``,
    ``runs/train2``, ...).

    Options are :class:`TrainConfig` fields (``model="mobilenet_v2", epochs=5, ...``); `config`
    is a TrainConfig or a YAML file whose values the options override. `on_epoch` sees each epoch's
    metrics row once it is saved (epoch 0 is the head trained on cached features); an exception it
    raises stops the run there (the tuner prunes trials this way). `on_progress` sees each step's progress
    (``{"stage", "done", "total", "rate", "eta_s"}``, about twice a second); what it raises stops the run too.
    `seams` (:class:`~mobiclass.train.loops.Seams`) replaces the optimizer, a batch transform or the loss.
    """
    overrides = {k: v for k, v in {"data": data and str(data), "out": out and str(out), **options}.items()
                 if v is not None}
    config_source, config = config, TrainConfig.combined(config, overrides)
    if not config.data:
        raise UsageError("training needs data (a folder of class folders, or a CSV manifest)",
                         code="train_needs_data")
    if not config.out:
        config.out = str(next_run_folder())
    if config.target:  # before any work: a recipe that cannot fit the target is refused here
        fit_to_target(config, explicit_options(overrides, config_source))
    if config.unlabeled and not config.teacher:  # no teacher: the model teaches itself, round after round
        return self_train(config, _round_runner(progress, on_epoch, on_progress, seams), overwrite)
    return _run(config, RunFolder(config.out), None, progress, on_epoch, on_progress, seams, overwrite=overwrite)


def _round_runner(progress: bool, on_epoch, on_progress, seams: Seams | None) -> Callable:
    """How self-training trains (or resumes: `again`) each of its rounds."""
    return lambda config, folder, again: resume(folder, progress, on_epoch, on_progress, seams) if again else \
        _run(config, RunFolder(folder), None, progress, on_epoch, on_progress, seams, overwrite=True)


def resume(run_dir: str | Path, progress: bool = True, on_epoch: Callable[[dict], None] | None = None,
           on_progress: Callable[[dict], None] | None = None, seams: Seams | None = None) -> TrainResult:
    """Continue an interrupted run from its last completed epoch, with the same config and split (`on_epoch`,
    `on_progress` and `seams` as for :func:`train`)."""
    run = RunFolder(run_dir)
    if (interrupted := self_training_config(run.path)) is not None:  # a self-training: its rounds resume
        return self_train(TrainConfig.from_dict({**interrupted.to_dict(), "out": str(run.path)}),
                          _round_runner(progress, on_epoch, on_progress, seams), overwrite=None)
    if not (run / CONFIG).is_file():
        raise UsageError(f"{run.path} is not a run folder to resume (no {CONFIG})")
    state = run.read_state()
    if state is not None:
        run.check_weights()  # the best and last weights the state refers to must be whole
    return _run(TrainConfig.load(run / CONFIG), run, state, progress, on_epoch, on_progress, seams)


def _run(config: TrainConfig, run: RunFolder, state: dict | None, progress: bool,
         on_epoch: Callable[[dict], None] | None, on_progress: Callable[[dict], None] | None,
         seams: Seams | None, overwrite: bool | None = None) -> TrainResult:
    """Join the process group (a no-op without torchrun), check everything (device, data, model), only then
    create a new run folder (`overwrite` is None when resuming) in the main process, train, and leave the group."""
    distributed = init_distributed(config.device)
    finished = False
    try:
        new = overwrite is not None
        if new:
            _in_main(distributed, lambda: run.check_new(overwrite))
        # One process speaks for all.
        reporter = TrainingReporter(progress and distributed.is_main, on_progress if distributed.is_main else None)
        reporter.note(f"run folder: {run.path}")
        setup = _set_up(config, run, distributed, reporter, resuming=not new, seams=seams or Seams())
        if new:  # one process prepares the folder; the others wait for it (or its error)
            _in_main(distributed, lambda: run.create(overwrite).write_config(config.to_yaml()))
        if distributed.is_main:
            if new:
                run.write_split(setup.dataset.split_manifest())
            run.write_data_report(setup.dataset.report(), setup.dataset.bad_files)
        try:
            result = _fit(setup, state, reporter, on_epoch)
        except KeyboardInterrupt:
            reporter.note(f"[yellow]interrupted[/yellow]: the last completed epoch is saved in {run.path}")
            raise
        finished = True
        return result
    finally:
        shutdown(distributed, finished)


def _in_main(distributed: Distributed, action: Callable[[], object]) -> None:
    """Run `action` in the main process; every process raises the error it raised, if any."""
    error = None
    if distributed.is_main:
        try:
            action()
        except UsageError as exc:
            error = exc
    error = distributed.broadcast(error)
    if error:
        raise error


@dataclass
class Setup:
    """Everything a run needs, made once before the first epoch."""

    config: TrainConfig
    run: RunFolder
    distributed: Distributed
    device: torch.device
    dataset: Dataset
    model: nn.Module
    preprocessing: Preprocessing
    padding: str
    balance: str
    class_weights: torch.Tensor | None
    freeze_bn: bool
    autocast: Callable
    teacher: Teacher | None
    unlabeled: list[Sample]
    seams: Seams

    def loss(self) -> Callable:
        hard = self.seams.loss(self.config, self.class_weights)
        return distillation_loss(hard, self.config.distill_temperature, self.config.distill_weight) \
            if self.teacher else hard

    def train_samples(self) -> list[Sample]:
        return self.dataset.splits["train"] + self.unlabeled

    def weights(self) -> Weights:
        state = {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}
        return Weights(state, ModelInfo(architecture=self.config.model, classes=self.dataset.classes,
                                        preprocessing=self.preprocessing, width_mult=self.config.width_mult,
                                        padding=self.padding, source=f"trained on {self.config.data}",
                                        target=self.config.target or None))


def _set_up(cfg: TrainConfig, run: RunFolder, distributed: Distributed, reporter: TrainingReporter,
            resuming: bool, seams: Seams) -> Setup:
    """Everything checked and built, nothing written: a refused run leaves no folder behind."""
    torch.manual_seed(cfg.seed)
    device = distributed.device(cfg.device)
    split = run.read_split() if resuming else None  # a resumed run keeps its split
    dataset = scan_dataset(cfg.data, cfg.val_split, cfg.seed, workers=max(2, cfg.workers), saved_split=split,
                           allow_outside=cfg.allow_outside)
    if distributed.is_main:
        reporter.dataset(dataset, run.path, cfg.imbalance_ratio, cfg.class_balance)
    if cfg.target:
        reporter.note(check_fits(cfg, len(dataset.classes)))
    model, preprocessing, padding = build_model(cfg, len(dataset.classes), device)
    balance = cfg.class_balance
    if balance == "auto":
        balance = "weights" if dataset.imbalance() > cfg.imbalance_ratio else "none"
    unlabeled, unreadable = unlabeled_samples(cfg, dataset.splits["train"] + dataset.splits["val"], max(2, cfg.workers))
    dataset.bad_files += unreadable
    if balance == "sampler" and (distributed.enabled or unlabeled):
        balance = "weights"  # shards or unlabeled photos cannot be drawn by class: class weights balance the loss
    class_weights = None
    if balance == "weights":
        counts = torch.tensor(dataset.counts("train"), dtype=torch.float32)
        class_weights = (counts.sum() / (len(counts) * counts)).to(device)
    # A model trained from scratch has no statistics to keep: its BatchNorms always learn them.
    freeze_bn = cfg.freeze_bn and cfg.weights != "none"
    teacher = load_teacher(cfg, dataset.classes, preprocessing, device)
    if teacher and seams.batch_transform:
        raise UsageError("a batch transform cannot be used with a teacher: the teacher answers the photos as they "
                         "were, not as the transform changed them")
    if teacher and distributed.is_main:
        reporter.note(f"distilling from {cfg.teacher} (T={cfg.distill_temperature:g}, weight {cfg.distill_weight:g})"
                      + (f" with {len(unlabeled)} unlabeled photos" if cfg.unlabeled else ""))
    autocast = autocast_for(device, autocast_dtype(cfg.precision, device, cfg.model))
    return Setup(cfg, run, distributed, device, dataset, model, preprocessing, padding, balance, class_weights,
                 freeze_bn, autocast, teacher, unlabeled, seams)


def _fit(s: Setup, state: dict | None, reporter: TrainingReporter, on_epoch) -> TrainResult:
    cfg = s.config
    saver = CheckpointSaver(s.run, cfg.metric, cfg.early_stopping, state)
    if state is None or not state.get("head_done", state.get("stage1_done")):  # stage1_done: older state files
        if s.distributed.is_main:  # cheap once features are cached: one process does it, then shares it
            _head_stage(s, saver, reporter, on_epoch)
        if s.distributed.enabled:
            s.model.load_state_dict(s.distributed.broadcast(s.model.state_dict()))
            saver.share(s.distributed)
    else:
        s.model.load_state_dict(state["model"])
    if cfg.epochs and cfg.unfreeze != "none":
        _finetune_stage(s, saver, reporter, on_epoch, state)
    elif cfg.epochs:
        reporter.note("unfreeze is 'none': the head trained on cached features is the final model")
    return _finish(s, saver, reporter)


def _head_stage(s: Setup, saver: CheckpointSaver, reporter: TrainingReporter, on_epoch) -> None:
    cfg, model = s.config, s.model
    train, val = s.train_samples(), s.dataset.splits["val"]
    if has_folded_batchnorm(model) and cfg.epochs and cfg.unfreeze != "none" and not s.freeze_bn:
        used = restore_batchnorm_statistics(model, train, s.preprocessing, s.device, cfg.workers)
        reporter.note(f"re-estimated BatchNorm statistics on {used} training images (the weights carried folded, "
                      f"identity statistics)")
    views = 1 + cfg.feature_views
    start = time.perf_counter()
    networks = [model, s.teacher] if s.teacher else [model]
    with reporter.progress("head stage: features", len(networks) * views * len(train) + len(val)) as advance:
        common = dict(seed=cfg.seed, batch_size=max(cfg.batch_size, 64), workers=cfg.workers, device=s.device,
                      on_batch=advance)
        (train_x, train_y), *taught = [extract_features(net, train, s.preprocessing, Augmentation.preset(cfg.augment),
                                                        views, **common) for net in networks]
        val_x, val_y = extract_features(model, val, s.preprocessing, **common)
    soft = [taught[0][0].to(s.device)] if taught else []  # the teacher's answers for the same views
    feature_seconds = time.perf_counter() - start
    head = model.head_modules()
    torch.manual_seed(cfg.seed)  # dropout masks must not depend on whether features came from the cache
    generator = torch.Generator().manual_seed(cfg.seed)
    optimizer, scheduler = make_head_optimizer(head, cfg, steps_per_epoch(len(train_x), cfg.batch_size) *
                                               max(1, cfg.head_epochs))
    train_x, train_y = train_x.to(s.device), train_y.to(s.device)
    loss_fn, scaler = s.loss(), torch.amp.GradScaler(s.device.type, enabled=False)
    head.train()
    totals = np.zeros(3)
    for epoch in range(cfg.head_epochs):
        batches = ((train_x[b], train_y[b], *(t[b] for t in soft))
                   for b in torch.randperm(len(train_x), generator=generator).split(cfg.batch_size))
        totals += train_one_epoch(model.forward_head, batches, optimizer, scheduler, loss_fn, scaler,
                                  where=f"head-stage epoch {epoch + 1}")
    head.eval()
    with torch.inference_mode():
        scores = Validation(val_y.numpy(), model.forward_head(val_x.to(s.device)).float().cpu().numpy())
    loss_sum, correct, seen = map(float, totals)  # plain floats: state.pt loads with weights_only
    row = {"epoch": 0, "stage": "head", "train_loss": loss_sum / max(seen, 1), "train_accuracy": correct / max(seen, 1),
           **_prefixed(scores.metrics), "lr": cfg.head_lr,
           "images_per_s": (views * len(train) + len(val)) / max(feature_seconds, 1e-9),
           "seconds": time.perf_counter() - start}
    _end_epoch(s, saver, reporter, on_epoch, row, scores)


def _finetune_stage(s: Setup, saver: CheckpointSaver, reporter: TrainingReporter, on_epoch,
                    state: dict | None) -> None:
    cfg, model, distributed = s.config, s.model, s.distributed
    trainable = set_trainable(model, resolved_unfreeze(cfg.unfreeze, cfg.weights == "none"))
    if distributed.is_main and len(trainable) < len(model.backbone_blocks()):
        reporter.note(f"fine-tuning the last {len(trainable)} of {len(model.backbone_blocks())} backbone blocks")
    train_samples = s.train_samples()
    optimizer = s.seams.optimizer(model, trainable, cfg)
    scheduler = make_scheduler(optimizer, cfg, steps_per_epoch(len(train_samples), cfg.batch_size))
    first_epoch = 1
    if state is not None and state.get("optimizer") is not None:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        first_epoch = state["epoch"] + 1
    if distributed.enabled:  # different dropout masks in each process
        torch.manual_seed(cfg.seed + 1_000_003 * distributed.rank)
    if state is not None:
        rng = state.get("rng_by_rank") or [state["rng"]]
        if len(rng) == distributed.world_size:  # else: fine-tuning had not started; the seeds above stand
            torch.set_rng_state(rng[distributed.rank])
        if state.get("stopped"):
            return
    network = DistributedDataParallel(model, device_ids=[s.device.index] if s.device.type == "cuda" else None) \
        if distributed.enabled else model
    fp16 = autocast_dtype(cfg.precision, s.device, cfg.model) == torch.float16
    scaler = torch.amp.GradScaler(s.device.type, enabled=fp16)
    loss_fn = s.loss()
    dataset = ImageDataset(train_samples, s.preprocessing, Augmentation.preset(cfg.augment), seed=cfg.seed, raw=True)
    val_set = ImageDataset(s.dataset.splits["val"][distributed.rank::distributed.world_size], s.preprocessing, raw=True)
    in_memory = cfg.cache_images and dataset.preload(threads=max(2, cfg.workers)) and val_set.preload()
    if in_memory:
        reporter.note(f"decoded {len(train_samples)} training and {len(val_set)} validation photos once into memory")
    # Photos in memory are cropped in this process: on a CPU, worker processes would compete with the training step
    # for its cores (an epoch at 79 % of the step's speed instead of 95-100 %, benchmarks/pipeline_bound.py), and
    # forking them for each validation would copy the kept memory's pages on write (3 epochs: 28 s, 22.6 s without).
    feeders = 0 if in_memory and s.device.type == "cpu" else cfg.workers
    val_loader = make_loader(val_set, cfg.batch_size, feeders)
    labels, counts = [sample.label for sample in train_samples], s.dataset.counts("train")
    for epoch in range(first_epoch, cfg.epochs + 1):
        start = time.perf_counter()
        dataset.epoch = epoch
        sampler = make_sampler(labels, counts, s.balance, distributed, cfg.seed, epoch)
        train_mode(model, trainable, s.freeze_bn)
        with reporter.progress(f"epoch {epoch}/{cfg.epochs}", len(sampler), stats=True) as advance:
            def show(n, loss_sum, correct, seen, start=start):
                rate = seen / (time.perf_counter() - start)
                advance(n, f"loss {loss_sum / seen:.3f} acc {correct / seen:.3f} "
                           f"lr {optimizer.param_groups[-1]['lr']:.2e} {rate:.0f} img/s")
            with closing(training_batches(dataset, sampler, cfg.batch_size, feeders, s.device)) as feed:
                batches = with_teacher(feed, s.teacher, s.autocast) if s.teacher else feed
                totals = train_one_epoch(network, batches, optimizer, scheduler, loss_fn, scaler, s.autocast, show,
                                         where=f"fine-tuning epoch {epoch}", transform=s.seams.batch_transform)
        loss_sum, correct, seen = distributed.sum(list(totals))  # every process's share
        images_per_s = seen / (time.perf_counter() - start)
        model.eval()
        val = validate(model, on_device(val_loader, s.device, s.preprocessing), len(s.dataset.classes),
                       distributed)
        row = {"epoch": epoch, "stage": "finetune", "train_loss": loss_sum / max(seen, 1),
               "train_accuracy": correct / max(seen, 1), **_prefixed(val.metrics),
               "lr": optimizer.param_groups[-1]["lr"], "images_per_s": images_per_s,
               "seconds": time.perf_counter() - start}
        if _end_epoch(s, saver, reporter, on_epoch, row, val, optimizer, scheduler):
            reporter.note(f"early stopping: no better {cfg.metric} for {cfg.early_stopping} epochs")
            break


def _end_epoch(s: Setup, saver: CheckpointSaver, reporter: TrainingReporter, on_epoch, row: dict, val: Validation,
               optimizer=None, scheduler=None) -> bool:
    """Record the epoch, save best/last weights (the best as the provisional model, its temperature fitted on this
    epoch's validation answers) and the resumable state; True when training should stop."""
    improved, stop = saver.record(row)
    # The head stage runs in the main process alone, so only fine-tuning epochs gather (a collective) RNG states.
    rng = torch.get_rng_state()
    rng_by_rank = s.distributed.gather(rng) if row["stage"] == "finetune" else [rng]
    if not s.distributed.is_main:  # every process took the same decisions; the main one writes them down
        return stop
    saver.save(row, improved, stop, s.weights(),
               {"head_done": True, "model": s.model.state_dict(),
                "optimizer": optimizer.state_dict() if optimizer else None,
                "scheduler": scheduler.state_dict() if scheduler else None, "rng": rng, "rng_by_rank": rng_by_rank},
               s.config.to_dict(), val)
    reporter.epoch(row, improved)
    if on_epoch:
        on_epoch(row)
    return stop


def _finish(s: Setup, saver: CheckpointSaver, reporter: TrainingReporter) -> TrainResult:
    history = saver.history
    speed = {stage: [r["images_per_s"] for r in history if r["stage"] == stage] for stage in ("head", "finetune")}
    metrics = {"val": val_metrics(saver.best_row), "best_epoch": saver.best_epoch, "class_balance": s.balance,
               "epochs_run": max(r["epoch"] for r in history),
               "stopped_early": bool(history[-1]["epoch"] < s.config.epochs and s.config.unfreeze != "none"),
               "epochs": s.config.epochs,
               "head_images_per_s": _median(speed["head"]), "finetune_images_per_s": _median(speed["finetune"]),
               "train_seconds": sum(r["seconds"] for r in history), "processes": s.distributed.world_size}
    metrics["ending"] = ending(metrics["best_epoch"], metrics["epochs_run"], s.config.epochs,
                               metrics["stopped_early"], s.config.metric)
    if s.teacher:
        metrics["distillation"] = {"teacher": s.config.teacher, "unlabeled_images": len(s.unlabeled)}
    if s.distributed.is_main:
        calibration = settle_model(s.run, s.dataset.splits["val"], s.config.calibrate)  # no longer provisional
        if calibration:
            metrics["calibration"] = calibration
        s.run.write_metrics(metrics)
        reporter.summary(s.run.path, metrics)
    return TrainResult(s.run.path, metrics, history)


def _prefixed(metrics: dict) -> dict:
    return {f"val_{k}": v for k, v in metrics.items()}


def _median(values: list[float]) -> float | None:
    return float(np.median(values)) if values else None
