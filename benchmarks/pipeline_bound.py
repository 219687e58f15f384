"""Is fine-tuning fed at the training step's own speed? The step alone (the same model, optimizer, batch and precision
as `train`, on one synthetic batch reused, so no data is loaded) against a real fine-tuning epoch of `train` on
flowers-mini, the step alone running between the epochs in the same process, for two recipes:

- the Keras comparison's (MobileNetV2 1.0, 224 px, batch 32, every layer trained, no augmentation, from scratch),
  beside Keras' own epoch when its environment exists (`make keras-env`);
- the default recipe (EfficientNet-Lite0, pretrained, the last 8 blocks fine-tuned, default augmentation).

Then the first model and the whole default `mobiclass train` as a user runs it (benchmarks/first_model.py, one run).

`--part memory` weighs keeping freed memory for the next step (what `train` does on a CPU) against glibc's default
(bench:memory). `--part feed` prints how long the feed alone takes to make a batch (no step to feed). `--part
precision` weighs bf16 autocast against fp32 for every architecture's training step (the last 8
blocks and every block, from scratch so that no weights are downloaded; alternating, twice each): what
`--precision auto` chooses on CPUs that compute bf16 natively (ModelSpec.bf16_on_cpu).

    python benchmarks/pipeline_bound.py [--keras-python .venv-keras/bin/python] [--epochs 8] [--part precision]

Writes the table into the README (bench:pipeline, or bench:step_precision) with the load average at start and end.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, machine, markdown_table, shared_dataset, write_readme_section  # noqa: E402

PEER = dict(model="mobilenet_v2", weights="none", unfreeze="all", augment="none")
DEFAULT = dict(model="efficientnet_lite0")
STEPS = 8
KERAS_EPOCHS = 7  # the first one traces and warms up; not counted


def step_runner(recipe: dict, precision: str, keep_memory: bool = True):
    """`run(count)`: images/s of `count` of `train`'s fine-tuning steps on one synthetic batch reused: the bound on
    any data pipeline. With `keep_memory`, freed memory is kept for the next step as `train` keeps it on a CPU
    (keep_freed_memory)."""
    import torch

    from mobiclass.train.config import TrainConfig
    from mobiclass.train.freeze import resolved_unfreeze, set_trainable, train_mode
    from mobiclass.train.loops import (autocast_dtype, autocast_for, keep_freed_memory, loss_function,
                                       make_optimizer, make_scheduler, train_one_epoch)
    from mobiclass.train.model_setup import build_model

    if keep_memory:
        keep_freed_memory()
    cfg = TrainConfig(**recipe, precision=precision)
    device = torch.device("cpu")
    model, preprocessing, _ = build_model(cfg, 5, device)
    trainable = set_trainable(model, resolved_unfreeze(cfg.unfreeze, cfg.weights == "none"))
    optimizer = make_optimizer(model, trainable, cfg)
    scheduler = make_scheduler(optimizer, cfg, 1000)
    images = torch.randn(cfg.batch_size, 3, preprocessing.size, preprocessing.size).contiguous(
        memory_format=torch.channels_last)
    labels = torch.randint(0, 5, (cfg.batch_size,))
    autocast = autocast_for(device, autocast_dtype(precision, device, cfg.model))
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    loss_fn = loss_function(cfg, None)

    def run(count: int) -> float:
        train_mode(model, trainable, cfg.freeze_bn and cfg.weights != "none")
        start = time.perf_counter()
        train_one_epoch(model, ((images, labels) for _ in range(count)), optimizer, scheduler, loss_fn, scaler,
                        autocast)
        return count * cfg.batch_size / (time.perf_counter() - start)

    run(2)  # warm-up: the first steps allocate and pick kernels
    return run


def step_alone(recipe: dict, precision: str, steps: int = STEPS, keep_memory: bool = True) -> float:
    """Images/s of `train`'s fine-tuning step alone (step_runner), median of three runs."""
    run = step_runner(recipe, precision, keep_memory)
    return statistics.median(run(steps // 2) for _ in range(3))


def memory_kept_or_not() -> list[list]:
    """The step alone with freed memory given back to the system (glibc's default) and kept (what `train` does),
    each in a fresh process (the setting holds for a process's life), alternating, three times each."""
    import multiprocessing

    rows = []
    context = multiprocessing.get_context("spawn")
    for name, recipe, precision in (("MobileNetV2, every layer", PEER, "bf16"),
                                    ("EfficientNet-Lite0, last 8 blocks", DEFAULT, "fp32")):
        rates: dict[bool, list[float]] = {False: [], True: []}
        for _ in range(3):
            for keep in rates:
                with context.Pool(1) as pool:
                    rates[keep].append(pool.apply(step_alone, (recipe, precision, STEPS, keep)))
        given, kept = statistics.median(rates[False]), statistics.median(rates[True])
        print(name, rates, flush=True)
        rows.append([name, precision, f"{given:.1f}", f"{kept:.1f}", f"{kept / given:.2f}x"])
    return rows


def feed_alone(recipe: dict, batches: int = 24) -> float:
    """Milliseconds per batch of `train`'s fine-tuning feed with no step to feed: flowers-mini's training photos
    decoded into memory, cropped, augmented as the recipe says, collated and put in channels_last."""
    import torch

    from mobiclass.data.dataset import scan_dataset
    from mobiclass.data.loaders import Augmentation, ImageDataset
    from mobiclass.train.config import TrainConfig
    from mobiclass.train.loops import training_batches
    from mobiclass.train.model_setup import build_model

    cfg = TrainConfig(**recipe)
    _, preprocessing, _ = build_model(cfg, 5, torch.device("cpu"))
    samples = scan_dataset(shared_dataset("flowers-mini")).splits["train"]
    dataset = ImageDataset(samples, preprocessing, Augmentation.preset(cfg.augment), raw=True)
    dataset.preload()
    sampler = torch.utils.data.RandomSampler(dataset, num_samples=batches * cfg.batch_size)
    start = time.perf_counter()
    for _ in training_batches(dataset, sampler, cfg.batch_size, 0, torch.device("cpu")):
        pass
    return (time.perf_counter() - start) * 1000 / batches


def epochs_beside_the_step(recipe: dict, precision: str, epochs: int, work: Path) -> list[tuple[float, float]]:
    """(images/s of a fine-tuning epoch of `train` on flowers-mini, of as many steps alone) for each epoch after the
    first, the step alone being the mean of its runs right before and right after the epoch, in the same process:
    both then see the machine alike (its speed wanders from minute to minute by as much as the gap measured)."""
    from mobiclass.train import train

    run, rows = step_runner(recipe, precision), []
    steps = 250 // 32  # flowers-mini's 250 training photos, full batches of 32

    def beside(row: dict) -> None:
        if row["stage"] == "finetune":
            rows.append((row["images_per_s"], run(steps)))

    train(shared_dataset("flowers-mini"), work / f"run-{recipe['model']}-{precision}", **recipe,
          precision=precision, epochs=epochs, head_epochs=0 if recipe.get("weights") == "none" else 60,
          early_stopping=0, calibrate=False, progress=False, on_epoch=beside)
    return [(epoch, (before + after) / 2) for (_, before), (epoch, after) in zip(rows, rows[1:])]


def precision_by_architecture() -> list[list]:
    from mobiclass.models import CATALOG

    rows = []
    for name in sorted(CATALOG):
        for unfreeze in ("8", "all"):
            rates: dict[str, list[float]] = {"bf16": [], "fp32": []}
            for _ in range(2):
                for precision in rates:
                    recipe = dict(model=name, weights="none", unfreeze=unfreeze, augment="none")
                    rates[precision].append(step_alone(recipe, precision, steps=6))
            bf16, fp32 = (statistics.median(rates[p]) for p in ("bf16", "fp32"))
            print(name, unfreeze, rates, flush=True)
            rows.append([name, "last 8" if unfreeze == "8" else "every block", f"{fp32:.1f}", f"{bf16:.1f}",
                         f"{bf16 / fp32:.2f}x", "bf16" if CATALOG[name].bf16_on_cpu else "fp32"])
    return rows


def step_table(part: str, how: str, columns: list[str], measure, readme: bool, section: str = "") -> None:
    """Print `measure()`'s rows as a table of training steps, and write it into the README's section."""
    load_start = os.getloadavg()[0]
    table = markdown_table(columns, measure())
    text = (f"`python benchmarks/pipeline_bound.py --part {part}` (training step, batch 32, 224 px, synthetic "
            f"batches, {how}; {machine()}); load average {load_start:.2f} at start, {os.getloadavg()[0]:.2f} at "
            f"end.\n\n{table}")
    print(text)
    if readme:
        write_readme_section(section or part, text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keras-python", default=str(REPO / ".venv-keras" / "bin" / "python"))
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--precisions", default="bf16,fp32")
    parser.add_argument("--no-readme", action="store_true")
    parser.add_argument("--part", choices=("pipeline", "precision", "feed", "memory"), default="pipeline")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    if args.part == "memory":
        step_table("memory", "a fresh process each, median of 3 alternating",
                   ["model", "precision", "step, memory given back, img/s", "step, memory kept, img/s",
                    "kept / given back"], memory_kept_or_not, not args.no_readme)
    elif args.part == "precision":
        step_table("precision", "median of 2 alternating runs",
                   ["model", "blocks trained", "fp32 step, img/s", "bf16 step, img/s", "bf16 / fp32", "auto chooses"],
                   precision_by_architecture, not args.no_readme, section="step_precision")
    elif args.part == "feed":
        for name, recipe in (("without augmentation (Keras comparison)", PEER), ("default augmentation", DEFAULT)):
            print(f"feed alone, {name}: {feed_alone(recipe):.0f} ms per batch of 32")
    if args.part != "pipeline":
        return 0
    from mobiclass.train.loops import keep_freed_memory

    keep_freed_memory()  # as `mobiclass train` does: this process trains and ends
    work = Path(tempfile.mkdtemp(prefix="mobiclass-pipeline-"))
    os.environ["MOBICLASS_HOME"] = str(work / "cache")
    load_start = os.getloadavg()[0]
    rows = []
    keras_rate = keras_fastest = None
    if Path(args.keras_python).exists():
        from peer_keras import keras

        # Keras' epochs take one of two times here (about 10 s or 20 s for the same 250 photos): its median and its
        # fastest epoch are both shown.
        answer = keras(args.keras_python, "train", shared_dataset("flowers-mini") / "train", KERAS_EPOCHS)
        rates = [answer["images"] / seconds for seconds in answer["epoch_seconds"][1:]]
        keras_rate, keras_fastest = statistics.median(rates), max(rates)
        print("keras", rates, flush=True)
    for name, recipe in (("Keras comparison: MobileNetV2, every layer, from scratch", PEER),
                         ("default: EfficientNet-Lite0, pretrained, last 8 blocks", DEFAULT)):
        for precision in args.precisions.split(","):
            pairs = epochs_beside_the_step(recipe, precision, args.epochs, work)
            epoch, bound = (statistics.median(pair[i] for pair in pairs) for i in (0, 1))
            paired = statistics.median(a / b for a, b in pairs)  # each epoch against its own neighbour in time
            print(name, precision, pairs, flush=True)
            versus = (f"{keras_rate:.1f} ({epoch / keras_rate:.2f}x); fastest epoch {keras_fastest:.1f} "
                      f"({epoch / keras_fastest:.2f}x)") if keras_rate and keras_fastest and recipe is PEER else "-"
            rows.append([name, precision, f"{bound:.1f}", f"{epoch:.1f}", f"**{paired:.0%}** ({epoch / bound:.0%})",
                         " ".join(f"{a / b:.0%}" for a, b in pairs), versus])
    table = markdown_table(["recipe", "precision", "step alone, img/s (median; runs between the epochs)",
                            "our epoch, img/s (median after the first)",
                            "epoch / step: median of the epochs' ratios (ratio of the medians)",
                            "each epoch / the step around it (mean of the runs before and after)",
                            f"Keras' epoch, img/s: median of {KERAS_EPOCHS - 1} (ours / Keras)"], rows)
    from first_model import one_run

    first = one_run(work / "first")
    command = markdown_table(["`mobiclass train flowers-mini` (default recipe, a fresh cache)", "s"], [
        ["to a provisional model in the run folder", f"{first['provisional_s']:.1f}"],
        [f"to `mobiclass predict` answering with it (val accuracy {first['first_accuracy']:.2f}, "
         f"{first['first_stage']} stage)", f"{first['predicted_s']:.1f}"],
        [f"to the end of training (val accuracy {first['final_accuracy']:.2f})", f"{first['total_s']:.0f}"]])
    text = (f"`python benchmarks/pipeline_bound.py` on {machine()}; load average {load_start:.2f} at start, "
            f"{os.getloadavg()[0]:.2f} at end.\n\n{table}\n\n{command}")
    print(text)
    if not args.no_readme:
        write_readme_section("pipeline", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
