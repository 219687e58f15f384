"""Hyperparameter search with Optuna: every trial is a real (quiet) training run on the same seeded split.

Fast on a CPU by design: head-only trials train on backbone features cached once per resolution and
augmentation (data/features.py), and fine-tuning trials report their validation metric after every epoch
so a median (or ASHA) pruner stops the hopeless ones early. The study lives in ``DIR/study.db``
(SQLite): running again adds trials to it, and an interrupted search keeps everything finished so far.
"""
from __future__ import annotations

import dataclasses
import math
import shutil
import time
import warnings
from pathlib import Path

from rich.console import Console
from rich.table import Table

from .errors import MobiclassError, UsageError
from .files import atomic_write_text, csv_text, read_yaml_mapping
from .interrupts import CtrlC
from .train import train
from .pretrained import pretrained_widths
from .targets import Recipe, estimate, get_target
from .train.config import TrainConfig

SAMPLERS = ("tpe", "random", "grid")
PRUNERS = ("median", "asha", "none")
STUDY_NAME = "mobiclass"

# name: a list of choices, a {low, high[, log, step]} range, or a fixed value; every name is a TrainConfig field.
DEFAULT_SPACE = {
    "lr": {"low": 1e-4, "high": 1e-2, "log": True},
    "head_lr": {"low": 1e-3, "high": 3e-2, "log": True},
    "weight_decay": {"low": 1e-4, "high": 1e-1, "log": True},
    "batch_size": [16, 32, 64],
    "label_smoothing": {"low": 0.0, "high": 0.2},
    "dropout": {"low": 0.0, "high": 0.5},
    "augment": ["light", "default", "strong"],
    "unfreeze": ["none", "2", "4", "all"],
    "image_size": [160, 192, 224],
}


@dataclasses.dataclass
class TuneResult:
    out: Path
    best_value: float | None
    best_config: TrainConfig | None
    trials: int
    pruned: int
    interrupted: bool


def load_space(path: str | Path | None) -> dict:
    """The search space of a YAML file (a mapping of option to choices, range or fixed value), or the default."""
    if path is None:
        return dict(DEFAULT_SPACE)
    space = read_yaml_mapping(path, "search space file")
    if not space:
        raise UsageError(f"{path} must map training options to choices (a list), a range ({{low, high}}) or a value")
    return space


def target_space(target_name: str, weights: str) -> dict:
    """The architectures, image sizes and (from scratch) widths worth searching on a target: its recipes' (with
    weights that exist), and the usual sizes up to its limit."""
    target = get_target(target_name)
    models = [m for m in dict.fromkeys(r.model for r in target.recipes)
              if weights != "imagenet" or pretrained_widths(m)]
    sizes = sorted({r.image_size for r in target.recipes} | {96, 128, 160, 192, 224})
    space = {"model": models, "image_size": [s for s in sizes if s <= (target.max_image_size or s)]}
    widths = sorted({r.width_mult for r in target.recipes})
    if weights == "none" and len(widths) > 1:  # pretrained weights come at width 1.0 only
        space["width_mult"] = widths
    return space


def tune(data: str | Path, out: str | Path, trials: int = 20, *, base: TrainConfig | None = None,
         space: dict | None = None, sampler: str = "tpe", pruner: str = "median", timeout: float | None = None,
         progress: bool = True, max_latency: float | None = None) -> TuneResult:
    """Search `space` around the `base` training config with `trials` more trials stored in `out`/study.db.

    With ``base.target``, a candidate that does not fit the target's RAM and flash (or whose estimated latency there
    is over `max_latency` ms) is pruned before it trains, and ``pareto.csv`` lists the candidates no other beats on
    accuracy, latency and RAM together."""
    import optuna

    base = base or TrainConfig()
    target = get_target(base.target) if base.target else None
    if max_latency is not None and (target is None or target.latency is None):
        raise UsageError("--max-latency needs a --target whose latency is estimated from a published figure "
                         "(see mobiclass targets)")
    space = _check_space(space if space is not None else DEFAULT_SPACE, sampler)
    if trials < 1:
        raise UsageError("the number of trials must be at least 1")
    if sampler not in SAMPLERS or pruner not in PRUNERS:
        raise UsageError(f"sampler must be one of {', '.join(SAMPLERS)} and pruner one of {', '.join(PRUNERS)}")
    if not Path(data).exists():
        raise UsageError(f"data not found: {data}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    console = Console(stderr=True, quiet=not progress)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = _open_study(out / "study.db", _sampler(sampler, space, base.seed), _pruner(pruner))
    _check_same_study(study, data, base)

    def objective(trial) -> float:
        with ctrl_c.trial():
            return run_trial(trial)

    def run_trial(trial) -> float:
        config = TrainConfig.from_dict({**base.to_dict(), "data": str(data),
                                        "out": str(out / "trials" / f"{trial.number:04d}"),
                                        **{name: _suggest(trial, name, spec) for name, spec in space.items()}})

        def report(row: dict) -> None:
            trial.report(row[f"val_{config.metric}"], row["epoch"])
            if trial.should_prune():
                trial.set_user_attr("pruned_at_epoch", row["epoch"])
                raise optuna.TrialPruned()

        if target is not None:
            _check_budget(trial, target, config, max_latency)
        try:
            result = train(config=config, overwrite=True, progress=False, on_epoch=report)
        except MobiclassError as exc:  # the data or an option: every trial would fail alike, so stop here
            refused.append(exc)
            trial.study.stop()
            raise optuna.TrialPruned() from None
        trial.set_user_attr("epochs_run", result.metrics["epochs_run"])
        return result.metrics["val"][config.metric]

    def after_trial(study, trial) -> None:
        if ctrl_c.requested:
            study.stop()
        if refused:
            return
        value = f"does not fit: {trial.user_attrs['does_not_fit']}" if "does_not_fit" in trial.user_attrs else \
            "pruned" if trial.state.name == "PRUNED" else \
            f"{base.metric} {trial.value:.4f}" if trial.value is not None else trial.state.name.lower()
        seconds = trial.duration.total_seconds() if trial.duration else 0
        console.print(f"trial {trial.number}: {value} in {seconds:.0f} s  "
                      + " ".join(f"{k}={_short(v)}" for k, v in trial.params.items()))
        _keep_only_best_trial_run(study, out)

    interrupted, ctrl_c = False, CtrlC()
    refused: list[MobiclassError] = []
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        try:
            with ctrl_c.caught():
                study.optimize(objective, n_trials=trials, timeout=timeout, callbacks=[after_trial])
            if ctrl_c.requested:
                raise KeyboardInterrupt
        except KeyboardInterrupt:
            interrupted = True
            console.print("[yellow]interrupted[/yellow]: the trials finished so far are saved; run the same "
                          "command again to add more")
        if refused:
            raise refused[0]
        result = _write_outputs(study, out, base, data, space, interrupted)
    console.print(_summary(study, result, time.perf_counter() - started))
    return result


def _check_budget(trial, target, config: TrainConfig, max_latency: float | None) -> None:
    """Record the candidate's costs on the target; prune it, untrained, when it cannot fit."""
    import optuna

    budget = estimate(target, Recipe(config.model, config.width_mult, config.image_size), num_classes=2)
    for key in ("ram_kb", "flash_kb", "latency_ms"):
        trial.set_user_attr(key, getattr(budget, key))
    reasons = list(budget.reasons)
    if max_latency is not None and budget.latency_ms is not None and budget.latency_ms > max_latency:
        reasons.append(f"about {budget.latency_ms:.0f} ms on {target.name} (at most {max_latency:g} ms)")
    if reasons:
        trial.set_user_attr("does_not_fit", "; ".join(reasons))
        raise optuna.TrialPruned()


def _pareto(trials, metric: str) -> str:
    """The completed candidates no other beats on accuracy, latency and RAM at once, most accurate first."""
    done = [t for t in trials if t.state.name == "COMPLETE" and "ram_kb" in t.user_attrs]

    def costs(t):
        return (-t.value, t.user_attrs["latency_ms"] or 0.0, t.user_attrs["ram_kb"])

    front = [t for t in done if not any(all(a <= b for a, b in zip(costs(u), costs(t))) and costs(u) != costs(t)
                                        for u in done)]
    front.sort(key=costs)
    names = sorted({name for t in front for name in t.params})
    return csv_text(["number", f"val_{metric}", "latency_ms", "ram_kb", "flash_kb", *names],
                    [[t.number, f"{t.value:.6f}", "" if t.user_attrs["latency_ms"] is None else
                      f"{t.user_attrs['latency_ms']:.2f}", f"{t.user_attrs['ram_kb']:.1f}",
                      f"{t.user_attrs['flash_kb']:.1f}", *(t.params.get(n, "") for n in names)] for t in front])


def _pareto_plot(trials, out: Path, base: TrainConfig) -> None:
    """pareto.png: every candidate that trained, accuracy against latency (or RAM where latency is unknown)."""
    import matplotlib.pyplot as plt

    from .evaluate.plots import save_figure

    done = [t for t in trials if t.state.name == "COMPLETE" and "ram_kb" in t.user_attrs]
    if not done:
        return
    by_latency = all(t.user_attrs["latency_ms"] is not None for t in done)
    key, label = ("latency_ms", f"estimated latency on {base.target} (ms)") if by_latency else \
        ("ram_kb", f"RAM for activations on {base.target} (kB, estimate)")
    figure, axes = plt.subplots(figsize=(7, 5))
    axes.scatter([t.user_attrs[key] for t in done], [t.value for t in done])
    for t in done:
        axes.annotate(str(t.number), (t.user_attrs[key], t.value), fontsize=8)
    axes.set(xlabel=label, ylabel=f"val {base.metric}", title=f"candidates for {base.target} (trial numbers)")
    save_figure(figure, out / "pareto.png", dpi=100)


def _check_space(space: dict, sampler: str) -> dict:
    known = {f.name for f in dataclasses.fields(TrainConfig)} - {"data", "out"}
    unknown = sorted(set(space) - known)
    if unknown:
        raise UsageError(f"unknown option(s) in the search space: {', '.join(unknown)}; "
                         f"known: {', '.join(sorted(known))}")
    for name, spec in space.items():
        if isinstance(spec, dict) and not {"low", "high"} <= set(spec):
            raise UsageError(f"search space option {name}: a range needs low and high, got {spec}")
        if isinstance(spec, list) and not spec:
            raise UsageError(f"search space option {name}: an empty list of choices")
    if sampler == "grid" and not any(isinstance(spec, list) for spec in space.values()):
        raise UsageError("grid search needs an explicit grid: give lists of values in the search space file")
    if sampler == "grid" and any(isinstance(spec, dict) for spec in space.values()):
        ranged = [name for name, spec in space.items() if isinstance(spec, dict)]
        raise UsageError(f"grid search takes lists of values, not ranges ({', '.join(ranged)}); "
                         f"list the values to try")
    return space


def _suggest(trial, name: str, spec):
    if isinstance(spec, list):
        return trial.suggest_categorical(name, spec)
    if not isinstance(spec, dict):
        return spec  # a fixed value
    kind = TrainConfig.kind(next(f for f in dataclasses.fields(TrainConfig) if f.name == name))
    low, high, log = float(spec["low"]), float(spec["high"]), bool(spec.get("log", False))
    if kind is int:
        return trial.suggest_int(name, int(low), int(high), step=int(spec.get("step", 1)), log=log)
    return trial.suggest_float(name, low, high, log=log, step=spec.get("step"))


def _sampler(name: str, space: dict, seed: int):
    import optuna

    if name == "grid":
        grid = {k: v for k, v in space.items() if isinstance(v, list)}
        return optuna.samplers.GridSampler(grid, seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=5)


def _pruner(name: str):
    import optuna

    if name == "asha":
        return optuna.pruners.SuccessiveHalvingPruner()
    if name == "none":
        return optuna.pruners.NopPruner()
    # Judged from the head's result on (step 0) onwards, against the median of earlier trials at that step.
    return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=0)


def _open_study(database: Path, sampler, pruner):
    """The study in `database`, made on first use. Processes opening one new study together (tuning in parallel,
    or a script watching it) race to create its tables, and the losers fail ("already exists"): they find the
    tables made when they try again."""
    import optuna
    from sqlalchemy.exc import IntegrityError, OperationalError

    for attempt in range(3):
        try:
            return optuna.create_study(study_name=STUDY_NAME, storage=f"sqlite:///{database.resolve()}",
                                       load_if_exists=True, direction="maximize", sampler=sampler, pruner=pruner)
        except (IntegrityError, OperationalError):
            if attempt == 2:
                raise
            time.sleep(0.5)


def _check_same_study(study, data, base: TrainConfig) -> None:
    """A resumed study must keep optimising the same thing: same data, model and metric."""
    identity = {"data": str(data), "model": base.model, "metric": base.metric}
    stored = {k: study.user_attrs.get(k) for k in identity}
    if not any(stored.values()):
        for key, value in identity.items():
            study.set_user_attr(key, value)
    elif stored != identity:
        changed = ", ".join(f"{k} {stored[k]!r} -> {identity[k]!r}" for k in identity if stored[k] != identity[k])
        raise UsageError(f"the study in this folder was run with other settings ({changed})", code="other_study")


def _keep_only_best_trial_run(study, out: Path) -> None:
    """Trial run folders are large; keep the best trial's (its model is the study's answer)."""
    try:
        best = study.best_trial.number
    except ValueError:  # no completed trial yet
        best = None
    keep = None if best is None else f"{best:04d}"
    for folder in (out / "trials").glob("*"):
        if folder.name != keep:
            shutil.rmtree(folder, ignore_errors=True)


def _write_outputs(study, out: Path, base: TrainConfig, data, space: dict, interrupted: bool) -> TuneResult:
    _keep_only_best_trial_run(study, out)
    trials = study.get_trials(deepcopy=False)
    atomic_write_text(out / "trials.csv", _trials_csv(trials, space, base.metric))
    if base.target:
        atomic_write_text(out / "pareto.csv", _pareto(trials, base.metric))
        _pareto_plot(trials, out, base)
    completed = [t for t in trials if t.state.name == "COMPLETE"]
    best_config = None
    if completed:
        best = study.best_trial
        best_config = TrainConfig.from_dict({**base.to_dict(), "data": str(data), "out": str(out / "best-run"),
                                             **best.params})
        header = (f"# best of {len(trials)} trials: trial {best.number}, val {base.metric} {best.value:.4f}\n"
                  f"# train with: mobiclass train {data} --config {out / 'best.yaml'}\n")
        atomic_write_text(out / "best.yaml", header + best_config.to_yaml())
        _plots(study, out)
    pruned = sum(t.state.name == "PRUNED" for t in trials)
    return TuneResult(out, study.best_value if completed else None, best_config, len(trials), pruned, interrupted)


def _trials_csv(trials, space: dict, metric: str) -> str:
    header = ["number", "state", f"val_{metric}", "seconds", "epochs_run", "pruned_at_epoch", *space]
    rows = [[t.number, t.state.name, "" if t.value is None else f"{t.value:.6f}",
             f"{t.duration.total_seconds():.1f}" if t.duration else "",
             t.user_attrs.get("epochs_run", ""), t.user_attrs.get("pruned_at_epoch", ""),
             *(t.params.get(name, space[name] if not isinstance(space[name], (list, dict)) else "") for name in space)]
            for t in trials]
    return csv_text(header, rows)


def _plots(study, out: Path) -> list[Path]:
    """Optimisation history, parameter importances and parallel coordinates, as PNG (where there is enough data)."""
    from optuna.visualization import matplotlib as optuna_plots

    from .evaluate.plots import save_figure

    written = []
    completed = [t for t in study.trials if t.state.name == "COMPLETE"]
    varied = {name for t in completed for name in t.params if len({str(u.params.get(name)) for u in completed}) > 1}
    plots = {"history": optuna_plots.plot_optimization_history}
    if len(completed) >= 2 and varied:  # only the parameters that took several values say anything
        plots.update(importances=lambda s: optuna_plots.plot_param_importances(s, params=sorted(varied)),
                     parallel=lambda s: optuna_plots.plot_parallel_coordinate(s, params=sorted(varied)))
    for name, plot in plots.items():
        axes = plot(study)
        figure = (axes.flat[0] if hasattr(axes, "flat") else axes).get_figure()
        figure.set_size_inches(10, 6)
        written.append(save_figure(figure, out / f"{name}.png", dpi=100))
    return written


def _summary(study, result: TuneResult, seconds: float) -> Table:
    table = Table("", "value", title=f"study {result.out / 'study.db'}")
    table.add_row("trials", f"{result.trials} ({result.pruned} pruned)")
    table.add_row("this search", f"{seconds:.0f} s")
    if result.best_config is not None:
        best = study.best_trial
        table.add_row(f"best val {result.best_config.metric}", f"{result.best_value:.4f} (trial {best.number})")
        for name, value in best.params.items():
            table.add_row(f"  {name}", _short(value))
        table.add_row("config", str(result.out / "best.yaml"))
    return table


def _short(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) and not math.isnan(value) else str(value)
