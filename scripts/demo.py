"""`make demo`: the main job end to end on real photos, with no network needed.

1. Classifies scikit-image's sample photos with pretrained ImageNet MobileNetV2 (torchvision's
   download when online, else the Coral TFLite weights shipped with mobiclass, imported) and
   EfficientNet-Lite0 (installed package), printing both top-5 lists side by side.
2. Trains a classifier on flowers-mini from the shared assets when they are there, else on the five fruits
   shipped with mobiclass (or on the DATA folder given as the first argument), and predicts a few validation
   images with the trained run.
3. Evaluates the trained run and says where its HTML report is.
4. Picks the hardware: what the trained model costs on every target of the catalogue (fits, RAM, flash, latency),
   then deploys it to the laptop (ONNX, int8 if it keeps the accuracy), a Raspberry Pi (ncnn) and the browser (a
   web page on onnxruntime-web, checked in headless Chromium where it is installed), each verified.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from PIL import Image
from rich.console import Console
from rich.table import Table
from skimage import data

from mobiclass import MobiclassError, load_classifier
from mobiclass.errors import UsageError
from mobiclass.data.dataset import scan_dataset
from mobiclass.evaluate import evaluate
from mobiclass.export import VerificationError, export
from mobiclass.datasets import fruits
from mobiclass.files import assets_dir
from mobiclass.targets import TARGETS, Recipe, estimate
from mobiclass.train import train

PHOTOS = ("chelsea", "coffee", "rocket", "astronaut")
MODELS = ("mobilenet_v2", "efficientnet_lite0")
REPO = Path(__file__).resolve().parents[1]
console = Console(width=None if sys.stdout.isatty() else 120)  # a log keeps whole headers and paths


def pretrained_predictions() -> None:
    images = {name: Image.fromarray(getattr(data, name)()) for name in PHOTOS}
    columns = {}
    for model in MODELS:
        try:
            classifier = load_classifier(model, engine="torch")  # its source: where the weights came from
        except MobiclassError as exc:
            console.print(f"[yellow]{model} skipped:[/yellow] {exc}")
            continue
        probabilities = classifier.predict_images(images.values())
        origin = classifier.source.replace("\\", "/").rsplit("/", 1)[-1].split(":")[0]
        columns[f"{model}\n[dim]{origin}[/dim]"] = [
            "\n".join(f"{p[i]:.2f} {classifier.classes[i]}" for i in p.argsort()[::-1][:5]) for p in probabilities]
    table = Table("photo", *columns, title="1. Pretrained ImageNet top-5 (scikit-image sample photos)",
                  show_lines=True)
    for row, name in enumerate(PHOTOS):
        table.add_row(name, *(cells[row] for cells in columns.values()))
    console.print(table)


def train_and_predict(data_dir: Path) -> None:
    run = REPO / "runs" / f"demo-{data_dir.name}"
    console.rule(f"2. Training on {data_dir} -> {run.relative_to(REPO)}")
    result = train(data_dir, run, overwrite=True)
    classifier = load_classifier(result.run_dir)
    val = scan_dataset(data_dir).splits["val"]
    picks = [sample for i, sample in enumerate(val) if i % max(1, len(val) // 8) == 0][:8]
    table = Table("image", "true class", "predicted", "confidence",
                  title=f"Validation images predicted by {result.run_dir.relative_to(REPO)}")
    for sample, prediction in zip(picks, classifier.predict([s.path for s in picks], top_k=1)):
        truth = classifier.classes[sample.label]
        mark = "[green]" if prediction["label"] == truth else "[red]"
        table.add_row(Path(sample.path).name, truth, f"{mark}{prediction['label']}", f"{prediction['confidence']:.2f}")
    console.print(table)
    console.print(f"val accuracy {result.metrics['val']['accuracy']:.3f}; try it: "
                  f".venv/bin/mobiclass predict IMAGES --model {result.run_dir.relative_to(REPO)}", soft_wrap=True)
    console.rule("3. Evaluation")
    report = evaluate(result.run_dir, data_dir)
    console.print(f"{report['split']} accuracy {report['accuracy']:.3f}, macro-F1 {report['macro_f1']:.3f}, "
                  f"log loss {report['log_loss']:.3f}, {len(report['mistakes'])} mistakes shown")
    console.print(f"open the report: {Path(report['out']).relative_to(REPO) / 'report.html'}")
    console.rule("4. Pick your hardware, deploy, verify")
    classifier = load_classifier(result.run_dir, engine="torch")
    fits = Table("target", "runs", "fits", "RAM kB (est.)", "flash kB (est.)", "latency ms",
                 title="What this model costs on each target (mobiclass targets --model RUN)")
    for target in TARGETS.values():
        budget = estimate(target, Recipe(classifier.architecture, classifier.width_mult,
                                         classifier.preprocessing.size), len(classifier.classes))
        fits.add_row(target.name, target.runs, "yes" if budget.fits else f"no: {budget.reasons[0]}",
                     f"{budget.ram_kb:,.0f}", f"{budget.flash_kb:,.0f}",
                     "measured at export" if target.name == "laptop" else
                     f"{budget.latency_ms:.1f} (estimate)" if budget.latency_ms is not None else "unknown")
    console.print(fits)
    for target in ("laptop", "raspberry-pi", "browser"):
        try:
            card = export(result.run_dir, target=target)
        except VerificationError as exc:  # the files exist; the demo shows what the check found
            console.print(f"[yellow]{exc}[/yellow]")
            card = json.loads((result.run_dir / "export" / "model-card.json").read_text())
        except UsageError as exc:  # onnxruntime-web could not be fetched at setup (no registry reachable)
            console.print(f"[yellow]{target}: {exc}[/yellow]")
            continue
        kept = card["formats"][card["targets"][target]]
        latency = "unknown" if kept["latency_ms"] is None else f"{kept['latency_ms']:.1f} ms"
        console.print(f"{target}: {kept['precision_reason']}; {kept['flash_kb']:,.0f} kB, latency {latency} "
                      f"({kept['latency_source']}); bundle in "
                      f"{(result.run_dir / 'export' / kept.get('bundle', kept.get('folder', ''))).relative_to(REPO)}",
                      soft_wrap=True)
    run = result.run_dir.relative_to(REPO)
    console.rule("Next")
    console.print(f"source .venv/bin/activate     # puts mobiclass on PATH\n"
                  f"mobiclass predict YOUR_PHOTOS --model {run}\n"
                  f"mobiclass serve --model {run}     # a web page and an HTTP API on http://127.0.0.1:8000\n"
                  f"python3 -m http.server --bind 127.0.0.1 -d {run}/export/web   # the browser bundle\n"
                  f"mobiclass train YOUR_FOLDER     # one sub-folder of photos per class\n"
                  f"mobiclass targets               # the hardware you can deploy to; then train and export with "
                  f"--target NAME", highlight=False,
                  soft_wrap=True)


def main() -> int:
    pretrained_predictions()
    flowers = assets_dir() / "datasets" / "flowers-mini"
    data_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else flowers if flowers.exists() else fruits()
    if not data_dir.exists():
        console.print(f"[red]no training data at {data_dir}[/red]: give a folder with one sub-folder of photos per "
                      f"class (make demo DATA=path/to/folder)")
        return 2
    train_and_predict(data_dir)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except MobiclassError as exc:
        console.print(f"[red]error:[/red] {exc}")
        sys.exit(exc.exit_code)
