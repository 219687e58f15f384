"""Self-training: ``train DATA --unlabeled POOL`` without a teacher. A first model learns from the labelled photos
alone; then, round after round, the latest kept model labels the pool with its calibrated confidence, and a new
model learns from the labelled photos plus the pool's photos it is most sure of, under the class it gave them (hard
pseudo-labels). Round k takes the k x `pseudo_label_step` share of the pool (a curriculum: 20, 40, 60, 80 %), as
many photos per class (so that the easy classes do not crowd out the others), none below `pseudo_label_confidence`.
Each round learns from scratch (the pretrained weights), so that an early round's mistakes are not built upon.
Measured on flowers (README, bench:self_training): a fixed confidence of 0.9 taught only the easy photos (+3 points
on held-out photos, +2 on val); the growing share reaches the harder ones once the model has improved. Hard labels
taught more than the same model's soft answers (the distillation path), which only taught the student to agree with
its teacher.

A round is kept unless the validation metric falls below the labelled-only model's by more than one standard error
(`noise`): it learnt from more photos, and a validation split of a hundred photos cannot tell a few points apart.
The rounds go on while they are kept. The run folder OUT holds the kept model; each round is a run folder of its
own under OUT/self-training/ (round k's data: OUT/self-training/data-k.csv), and the options are kept in
OUT/self-training/config.yaml, so that ``train --resume OUT`` continues an interrupted self-training where it stopped.
A new self-training into an existing OUT is refused unless it replaces it (``--overwrite``): finished rounds of other
options are never reused."""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from collections.abc import Callable

from ..data.dataset import scan_dataset, scan_unlabeled
from ..errors import UsageError
from ..files import atomic_write_text, write_csv
from ..run_folder import CONFIG, RunFolder, is_run_folder
from .config import TrainConfig

ROUNDS = "self-training"

KEPT_FILES = ("model.safetensors", "model.json", "metrics.json", "metrics.csv", "metrics.jsonl", "split.json",
              "config.yaml", "data_report.json", "bad_files.csv")


def self_training_config(out: str | Path) -> TrainConfig | None:
    """The options of the self-training in the run folder `out` (finished or interrupted); None when it holds none."""
    recorded = Path(out) / ROUNDS / CONFIG
    return TrainConfig.load(recorded) if recorded.is_file() else None


def self_train(config: TrainConfig, run_round: Callable, overwrite: bool | None = False) -> object:
    """Train `config` (whose ``unlabeled`` is set and ``teacher`` is not) by self-training into ``config.out``
    (`overwrite` None: resume the one there); `run_round(config, folder, resume)` trains (or resumes) one round and
    returns its TrainResult."""
    out = Path(config.out)
    rounds = out.resolve() / ROUNDS  # every path of the rounds is absolute: a resume from elsewhere finds them
    config = TrainConfig.from_dict({**config.to_dict(), "data": str(Path(config.data).resolve()),
                                    "unlabeled": str(Path(config.unlabeled).resolve())})
    pool, unreadable = scan_unlabeled(config.unlabeled, max(2, config.workers))
    pool = [str(Path(p).resolve()) for p in pool]  # round k's data lies in OUT/self-training, elsewhere
    metric = config.metric
    labelled = TrainConfig.from_dict({**config.to_dict(), "unlabeled": "", "out": str(rounds / "round-0")})
    if overwrite is not None:
        _start(config, overwrite)
    try:
        best = _round(labelled, run_round)
    except UsageError:
        if overwrite is not None and not (rounds / "round-0").exists():  # refused before any work: nothing is left
            shutil.rmtree(out)
        raise
    split = RunFolder(best.run_dir).read_split()
    known = {Path(p).resolve() for rows in split.values() for p, _ in rows}
    pool = [p for p in pool if Path(p).resolve() not in known]  # a labelled photo found in the pool again
    reference = best.metrics["val"][metric]
    slack = noise(reference, len(split.get("val", [])))
    history = [{"round": 0, "pseudo_labelled": 0, f"val_{metric}": reference, "kept": True}]
    last = min(config.self_training_rounds, math.ceil(1 / config.pseudo_label_step - 1e-9))  # then the whole pool
    for number in range(1, last + 1):
        share = min(1.0, number * config.pseudo_label_step)
        chosen = pseudo_labels(best.run_dir, pool, share, config.pseudo_label_confidence, config.workers)
        if not chosen:
            history.append({"round": number, "pseudo_labelled": 0, "stopped": "no unlabeled photo is confident "
                                                                               "enough"})
            break
        labelled_rows = [[str(Path(p).resolve()), label, name] for name, rows in split.items() for p, label in rows]
        data = write_csv(rounds / f"data-{number}.csv", ["path", "label", "split"],
                         labelled_rows + [[p, label, "train"] for p, label in chosen])
        taught = TrainConfig.from_dict({**config.to_dict(), "data": str(data), "unlabeled": "", "allow_outside": True,
                                        "out": str(rounds / f"round-{number}")})
        result = _round(taught, run_round)
        score = result.metrics["val"][metric]
        per_class = {c: sum(label == c for _, label in chosen) for c in sorted({c for _, c in chosen})}
        history.append({"round": number, "share": round(share, 4), "pseudo_labelled": len(chosen),
                        "per_class": per_class, f"val_{metric}": score, "kept": score >= reference - slack})
        if score < reference - slack:
            break
        best = result
    summary = {"rounds": history, "kept_round": max(r["round"] for r in history if r.get("kept")),
               "pool": len(pool), "unreadable": len(unreadable), "step": config.pseudo_label_step,
               "confidence": config.pseudo_label_confidence, "tolerance": round(slack, 4)}
    _keep(best.run_dir, out, summary)
    best.metrics["self_training"] = summary
    return type(best)(out, best.metrics, best.history)


def _start(config: TrainConfig, overwrite: bool) -> None:
    """A new self-training's folder, its options recorded first. An existing OUT is refused without `overwrite`, as
    a training's is, and else replaced (only a run folder or an earlier self-training is)."""
    out = Path(config.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        if not overwrite:
            raise UsageError(f"{out} already exists", code="run_exists", run=str(out))
        if not (is_run_folder(out) or self_training_config(out)):
            raise UsageError(f"{out} exists and is not a run folder; only run folders are replaced")
        # The labelled photos are checked before the run they replace is removed (in a fraction of a second).
        scan_dataset(config.data, config.val_split, config.seed, workers=max(2, config.workers),
                     allow_outside=config.allow_outside)
        shutil.rmtree(out)
    (out / ROUNDS).mkdir(parents=True)
    atomic_write_text(out / ROUNDS / CONFIG, config.to_yaml())


def noise(score: float, photos: int) -> float:
    """One standard error of a validation score measured on `photos` photos (binomial): how far it moves by chance.
    A round that learnt from more, mostly rightly labelled photos is kept unless validation falls by more than
    that: on flowers (100 validation photos: about 3.5 points) the stricter rule, not worse at all, threw away
    rounds that had gained up to 6 points on 300 held-out photos because validation lost 2 or 3 of its photos.
    A perfect score counts as 99 %, so that its error is not zero and a round may still lose one photo."""
    return math.sqrt(max(score * (1 - score), 0.01) / max(photos, 1))


def _round(config: TrainConfig, run_round: Callable):
    """One round's run: reused when it finished, resumed when it was interrupted, else trained."""
    folder = Path(config.out)
    if (folder / "metrics.json").is_file() and (folder / "model.safetensors").is_file():
        metrics = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
        history = [json.loads(line) for line in (folder / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
                   if line.strip()]
        from .trainer import TrainResult

        return TrainResult(folder, metrics, history)
    return run_round(config, folder, (folder / "state.pt").is_file())


def pseudo_labels(run_dir: Path, pool: list[str], share: float, floor: float,
                  workers: int) -> list[tuple[str, str]]:
    """(path, class) for the `share` of the pool the model is most sure of: as many photos per class (the share of
    the pool over the classes, at least one), the most confident first, none below `floor` calibrated confidence."""
    from ..runtime.embeddings import backbone, look_at

    classifier = backbone(str(run_dir))
    seen = look_at(classifier, pool, with_classes=True, workers=workers)
    by_class: dict[str, list[tuple[float, str]]] = {}
    for path, p in zip(pool, seen.probabilities):
        if p.max() >= floor:
            by_class.setdefault(classifier.classes[int(p.argmax())], []).append((float(p.max()), path))
    quota = max(1, round(share * len(pool) / len(classifier.classes)))
    return [(path, label) for label in sorted(by_class)
            for _, path in sorted(by_class[label], key=lambda row: (-row[0], row[1]))[:quota]]


def _keep(chosen: Path, out: Path, summary: dict) -> None:
    """The kept round's model and records become OUT's, so that OUT is the run folder to use."""
    run = RunFolder(out)
    for name in KEPT_FILES:
        if (chosen / name).is_file():
            shutil.copy2(chosen / name, out / name)
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    run.write_metrics({**metrics, "self_training": summary})
    atomic_write_text(out / "self_training.json", json.dumps(summary, indent=1) + "\n")
