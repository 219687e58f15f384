"""The ``mobiclass`` command: parses arguments and calls the Python API. Exit status: 0 success,
1 when some input failed (the others still succeed), 2 for usage errors."""
from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import json
import os
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from . import __version__
from .errors import MobiclassError, UsageError
from .files import atomic_write_text

console = Console(stderr=True)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except MobiclassError as exc:
        console.print(f"[red]error:[/red] {exc}", markup=True, highlight=False)
        return exc.exit_code
    except KeyboardInterrupt:
        console.print("interrupted")
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mobiclass", description="Image classifiers on the MobileNet family.")
    parser.add_argument("--version", action="version", version=f"mobiclass {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    models = commands.add_parser("models", help="list the architectures, their size, cost and pretrained weights")
    models.add_argument("--format", choices=("table", "json"), default="table")
    models.set_defaults(handler=run_models)

    predict = commands.add_parser("predict", help="classify images with a pretrained model or a trained run")
    predict.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders (recursive) or globs")
    predict.add_argument("--model", help="model name or run folder (default: efficientnet_lite0, which works "
                                         "offline, or the architecture recorded in --weights)")
    predict.add_argument("--weights", default="imagenet",
                         help="pretrained weights name, a local file (.pth, .pt, .safetensors, .tflite) or 'none'")
    predict.add_argument("--top-k", type=_positive_int, default=5)
    predict.add_argument("--batch-size", type=_positive_int, default=32)
    predict.add_argument("--format", choices=("table", "json", "jsonl", "csv"), default="table",
                         help="jsonl: one JSON object per line")
    predict.add_argument("--output", metavar="FILE", help="write the results to FILE (atomically) instead of the "
                                                          "screen; {shard} in the name becomes the shard number")
    predict.add_argument("--shard", metavar="I/N",
                         help="classify only the I-th of N contiguous blocks of the inputs (0-based); 'auto' takes "
                              "RANK/WORLD_SIZE from torchrun. Shard files (csv: header in shard 0 only, or jsonl) "
                              "concatenate to the single-process output")
    predict.add_argument("--backend", choices=("fastest", "torch", "onnxruntime", "openvino"), default="fastest",
                         help="fastest (default): export to ONNX once (cached) and run it on the engine measured "
                              "fastest here; or a given engine")
    predict.set_defaults(handler=run_predict)

    trainer = commands.add_parser("train", help="train a classifier on a folder of photos (transfer learning, "
                                               "then fine-tuning)")
    trainer.add_argument("data", nargs="?", metavar="DATA",
                         help="a folder with one sub-folder per class, or with train/ and val/ (and test/) holding "
                              "class folders, or a CSV manifest with path,label[,split] columns")
    trainer.add_argument("--out", help="the run folder to create (e.g. runs/flowers)")
    trainer.add_argument("--config", help="a YAML file of training options; options given here override it")
    trainer.add_argument("--resume", metavar="RUN", help="continue an interrupted run from its last epoch")
    trainer.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
    trainer.add_argument("--quiet", action="store_true", help="no progress bars or per-epoch lines")
    _add_training_options(trainer)
    trainer.set_defaults(handler=run_train)

    tuner = commands.add_parser("tune", help="search training hyperparameters with Optuna (cached features, "
                                             "pruning); writes best.yaml for mobiclass train")
    tuner.add_argument("data", metavar="DATA", help="labelled images, as for train")
    tuner.add_argument("--out", default="tune", help="study folder: study.db, trials.csv, best.yaml, plots "
                                                     "(default: tune); running again adds trials to its study")
    tuner.add_argument("--trials", type=_positive_int, default=20, help="trials to add to the study (default: 20)")
    tuner.add_argument("--sampler", choices=("tpe", "random", "grid"), default="tpe")
    tuner.add_argument("--pruner", choices=("median", "asha", "none"), default="median")
    tuner.add_argument("--timeout", type=float, help="stop starting trials after this many seconds")
    tuner.add_argument("--space", help="YAML search space: option: [choices] | {low, high, log} | value "
                                       "(default: learning rates, weight decay, batch size, label smoothing, "
                                       "dropout, augmentation, unfrozen blocks, resolution)")
    tuner.add_argument("--config", help="a YAML file of the fixed training options every trial starts from; "
                                        "training options given here are fixed too, and left out of the search")
    tuner.add_argument("--quiet", action="store_true")
    _add_training_options(tuner)
    tuner.set_defaults(handler=run_tune)

    evaluator = commands.add_parser("evaluate", help="metrics, confusion matrix, plots and an HTML report on "
                                                     "labelled images")
    evaluator.add_argument("model", metavar="RUN", help="a run folder (or a model name)")
    evaluator.add_argument("data", metavar="DATA", help="class folders, a folder with split folders, or a manifest")
    evaluator.add_argument("--split", help="which split of DATA (default: test if present, else val)")
    evaluator.add_argument("--out", help="output folder (default: RUN/evaluation)")
    evaluator.add_argument("--batch-size", type=_positive_int, default=32)
    evaluator.add_argument("--format", choices=("table", "json"), default="table")
    evaluator.set_defaults(handler=run_evaluate)

    comparer = commands.add_parser("compare", help="parameters, multiply-adds, size, latency, throughput and "
                                                   "accuracy of several models, measured here")
    comparer.add_argument("models", nargs="+", metavar="MODEL_OR_RUN")
    comparer.add_argument("--data", help="labelled images to measure accuracy on")
    comparer.add_argument("--out", default="comparison", help="output folder (default: comparison)")
    comparer.add_argument("--runs", type=_positive_int, default=20, help="timed runs per measurement (median)")
    comparer.add_argument("--format", choices=("table", "json"), default="table")
    comparer.set_defaults(handler=run_compare)

    exporter = commands.add_parser("export", help="ONNX (and int8 ONNX) files for phones and boards, verified "
                                                  "against the PyTorch model")
    exporter.add_argument("model", metavar="RUN_OR_MODEL")
    exporter.add_argument("--format", choices=("onnx",), default="onnx")
    exporter.add_argument("--int8", action="store_true", help="also write model.int8.onnx (static quantization)")
    exporter.add_argument("--torchscript", action="store_true", help="also write model.torchscript.pt")
    exporter.add_argument("--tflite", action="store_true",
                          help="also write model.tflite (needs pip install 'mobiclass[tflite]')")
    exporter.add_argument("--calibration", metavar="DATA",
                          help="images to calibrate and verify on (default: the run's own training/validation split)")
    exporter.add_argument("--exclude-first-last", action="store_true",
                          help="keep the first convolution and the classifier in float when quantizing")
    exporter.add_argument("--out", help="output folder (default: RUN/export)")
    exporter.set_defaults(handler=run_export)

    server = commands.add_parser("serve", help="an HTTP API (with micro-batching) and a web page for a model")
    server.add_argument("model", metavar="RUN_OR_MODEL", help="a run folder, a model name or an exported .onnx file")
    server.add_argument("--weights", default="imagenet", help="pretrained weights for a model name (as in predict)")
    server.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 for every interface)")
    server.add_argument("--port", type=_positive_int, default=8000)
    server.add_argument("--workers", type=_positive_int, default=1, help="server processes, each with its own engine")
    server.add_argument("--backend", choices=("onnxruntime", "openvino", "fastest", "torch"), default="onnxruntime")
    server.add_argument("--max-batch-size", type=_positive_int, default=8,
                        help="images from concurrent requests run together, up to this many (1: no batching)")
    server.add_argument("--max-wait-ms", type=float, default=0.0,
                        help="how long the first image of a batch waits for others (0: batch only the images "
                             "that queued while the engine was busy)")
    server.add_argument("--max-upload-mb", type=float, default=10.0, help="largest request body accepted")
    server.add_argument("--max-images", type=_positive_int, default=32, help="most images in one request")
    server.add_argument("--top-k", type=_positive_int, default=5, help="default number of classes per result")
    server.set_defaults(handler=run_serve)

    importer = commands.add_parser("import-weights", help="convert TensorFlow Lite weights into a .safetensors file")
    importer.add_argument("file", metavar="FILE.tflite")
    importer.add_argument("--model", required=True, help="the architecture the file holds, e.g. mobilenet_v2")
    importer.add_argument("--width", type=float, help="width multiplier (found from the file when omitted)")
    importer.add_argument("--out", required=True, metavar="FILE.safetensors")
    importer.set_defaults(handler=run_import_weights)
    return parser


TRAINING_HELP = {
    "model": "architecture (see mobiclass models)", "weights": "pretrained name, a local file, or none (scratch)",
    "width_mult": "width multiplier (with --weights none)", "image_size": "input resolution, 96 to 224 typical",
    "crop": "share of the shorter side the evaluation center crop keeps (0.875 is ImageNet's)",
    "val_split": "validation fraction when DATA has no val/ split", "epochs": "fine-tuning epochs (stage 2)",
    "head_epochs": "epochs of head training on cached features (stage 1)",
    "feature_views": "augmented views cached per training image for stage 1",
    "unfreeze": "backbone blocks fine-tuned: all, none, or the last N",
    "lr": "head learning rate in stage 2", "backbone_lr_mult": "backbone learning rate = lr x this",
    "class_balance": "auto, weights, sampler or none", "early_stopping": "patience in epochs (0: off)",
    "metric": "validation metric for the best model and early stopping",
    "freeze_bn": "keep the pretrained BatchNorm statistics while fine-tuning (not from scratch)",
    "augment": "none, light, default or strong",
}


def _add_training_options(parser: argparse.ArgumentParser) -> None:
    """One --option per TrainConfig field, defaulting to None so a --config file's value stands."""
    from .train.config import TrainConfig

    for field in dataclasses.fields(TrainConfig):
        if field.name in ("data", "out"):
            continue
        flag = "--" + field.name.replace("_", "-")
        help_text = TRAINING_HELP.get(field.name, "") + f" (default: {field.default})"
        if isinstance(field.default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        else:
            kind = float if field.name == "dropout" else type(field.default)
            parser.add_argument(flag, type=kind, default=None, help=help_text)
    parser.add_argument("--width", dest="width_mult", type=float, help=argparse.SUPPRESS)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def run_models(args) -> int:
    from .models import count_macs, count_parameters, create_model, get_model_spec, list_models
    from .weights import PRETRAINED

    rows = []
    for name in list_models():
        spec, model = get_model_spec(name), create_model(name)
        pretrained = {weights: [{"kind": s.kind, "location": s.location, "license": s.license, "padding": s.padding}
                                for s in sources] for weights, sources in PRETRAINED.get(name, {}).items()}
        rows.append({"name": name, "params": count_parameters(model), "macs": count_macs(model, 224),
                     "resolution": spec.resolution, "widths": list(spec.widths), "pretrained": pretrained,
                     "description": spec.description})
    if args.format == "json":
        print(json.dumps(rows, indent=2))
        return 0
    table = Table("model", "params", "MACs @224", "resolution", "widths", "pretrained weights")
    for row in rows:
        sources = "; ".join(f"{w} ({', '.join(s['kind'] for s in srcs)})" for w, srcs in row["pretrained"].items())
        table.add_row(row["name"], f"{row['params'] / 1e6:.2f} M", f"{row['macs'] / 1e6:.0f} M",
                      str(row["resolution"]), ", ".join(map(str, row["widths"])) or "-", sources or "-")
    Console().print(table)
    return 0


def run_predict(args) -> int:
    from .runtime import load_classifier

    which = _parse_shard(args.shard)
    if which and args.format not in ("csv", "jsonl"):
        raise UsageError("--shard writes parts that concatenate: use --format csv or --format jsonl")
    if args.output and args.format == "table":
        raise UsageError("--output needs --format json, jsonl or csv")
    classifier = load_classifier(args.model, args.weights, backend=args.backend)
    results = classifier.predict(args.inputs, top_k=args.top_k, batch_size=args.batch_size, shard=which)
    if args.format == "table":
        _print_predictions(results, classifier.name)
        return 1 if any("error" in r for r in results) else 0
    text = json.dumps(results, indent=2) + "\n" if args.format == "json" else \
        "".join(json.dumps(r) + "\n" for r in results) if args.format == "jsonl" else \
        _predictions_csv(results, header=not which or which[0] == 0)
    if args.output:
        width = len(str(which[1] - 1)) if which else 1
        atomic_write_text(Path(args.output.replace("{shard}", f"{which[0] if which else 0:0{width}d}")), text)
    else:
        sys.stdout.write(text)
    return 1 if any("error" in r for r in results) else 0


def _parse_shard(text: str | None) -> tuple[int, int] | None:
    """'I/N' (0-based), or 'auto' for torchrun's RANK and WORLD_SIZE."""
    if text is None:
        return None
    if text == "auto":
        text = f"{os.environ.get('RANK', 0)}/{os.environ.get('WORLD_SIZE', 1)}"
    index, _, count = text.partition("/")
    if not (index.isdigit() and count.isdigit() and int(index) < int(count)):
        raise UsageError(f"--shard takes I/N with 0 <= I < N (e.g. 0/4), or auto; got {text!r}")
    return int(index), int(count)


def _predictions_csv(results: list[dict], header: bool = True) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    if header:
        writer.writerow(["path", "label", "index", "confidence", "top_k", "error"])
    for r in results:
        if "error" in r:
            writer.writerow([r["path"], "", "", "", "", r["error"]])
        else:
            top = "; ".join(f"{t['label']}:{t['confidence']:.4f}" for t in r["top_k"])
            writer.writerow([r["path"], r["label"], r["index"], f"{r['confidence']:.6f}", top, ""])
    return out.getvalue()


def _print_predictions(results: list[dict], model_name: str) -> None:
    table = Table("image", "label", "confidence", "top-k", title=model_name)
    for r in results:
        if "error" in r:
            table.add_row(r["path"], "[red]error[/red]", "", r["error"])
        else:
            top = ", ".join(f"{t['label']} {t['confidence']:.2f}" for t in r["top_k"][1:])
            table.add_row(r["path"], r["label"], f"{r['confidence']:.3f}", top)
    Console().print(table)


def run_train(args) -> int:
    from .train import resume, train

    progress = not args.quiet
    if args.resume:
        result = resume(args.resume, progress=progress)
    else:
        result = train(args.data, args.out, config=args.config, overwrite=args.overwrite, progress=progress,
                       **_training_options(args))
    if os.environ.get("RANK", "0") != "0":  # under torchrun, rank 0 reports for every process
        return 0
    val = result.metrics["val"]
    print(f"{result.run_dir}: val accuracy {val['accuracy']:.4f}, macro-F1 {val['macro_f1']:.4f} "
          f"(best epoch {result.metrics['best_epoch']}); predict with: mobiclass predict IMAGES --model "
          f"{result.run_dir}")
    return 0


def _training_options(args) -> dict:
    """The training options given on the command line (those left out stay None, so a config file's stand)."""
    from .train.config import TrainConfig

    return {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)
            if f.name not in ("data", "out") and getattr(args, f.name) is not None}


def run_tune(args) -> int:
    from .train.config import TrainConfig
    from .tune import load_space, tune

    overrides = _training_options(args)
    base = TrainConfig.load(args.config, **overrides) if args.config else TrainConfig.from_dict(overrides)
    # An option given on the command line is fixed, not searched.
    space = {name: spec for name, spec in load_space(args.space).items() if name not in overrides}
    result = tune(args.data, args.out, args.trials, base=base, space=space, sampler=args.sampler,
                  pruner=args.pruner, timeout=args.timeout, progress=not args.quiet)
    return 130 if result.interrupted else 0


def run_evaluate(args) -> int:
    from .evaluate import evaluate

    report = evaluate(args.model, args.data, args.out, args.split, args.batch_size)
    if args.format == "json":
        print(json.dumps(report, indent=2))
        return 0
    table = Table("class", "precision", "recall", "F1", "support",
                  title=f"{args.model} on {args.data} ({report['split']}): accuracy {report['accuracy']:.4f}, "
                        f"top-5 {report['top5_accuracy']:.4f}, log loss {report['log_loss']:.4f}")
    for name, m in report["per_class"].items():
        table.add_row(name, f"{m['precision']:.3f}", f"{m['recall']:.3f}", f"{m['f1']:.3f}", str(m["support"]))
    for average in ("macro", "weighted"):
        table.add_row(f"{average} avg", *(f"{report[f'{average}_{k}']:.3f}" for k in ("precision", "recall", "f1")),
                      str(report["count"]), style="bold")
    Console().print(table)
    if report["bad_files"]:
        console.print(f"[yellow]skipped {len(report['bad_files'])} unusable file(s)[/yellow], listed in metrics.json")
    print(f"report: {Path(report['out']) / 'report.html'}")
    return 0


def run_compare(args) -> int:
    from .evaluate.compare import compare

    rows = compare(args.models, args.data, args.out, args.runs)
    if args.format == "json":
        print(json.dumps(rows, indent=2))
        return 0
    table = Table("model", "params", "MACs", "MB", "px", f"batch 1 ms ({rows[0]['threads']} threads)",
                  "batch 32 img/s", "accuracy", title="Model comparison (medians, this machine)")
    for r in rows:
        accuracy = f"{r['accuracy']:.4f}" if r["accuracy"] is not None else ("n/a: " + r["note"][:40] if
                                                                             r.get("note") else "-")
        macs = f"{r['macs'] / 1e6:.0f} M" if r["macs"] else "-"
        table.add_row(r["model"], f"{r['params'] / 1e6:.2f} M", macs, f"{r['size_mb']:.1f}",
                      str(r["resolution"]), f"{r['latency_b1_ms']:.1f}", f"{r['throughput_b32']:.0f}", accuracy)
    Console().print(table)
    print(f"written: {Path(args.out) / 'compare.csv'}, compare.json, compare.png")
    return 0


def run_export(args) -> int:
    from .export import export

    card = export(args.model, args.out, int8=args.int8, calibration=args.calibration,
                  exclude_first_last=args.exclude_first_last, torchscript=args.torchscript, tflite=args.tflite)
    table = Table("format", "file", "MB", "batch 1 ms", "accuracy", "top-1 agreement",
                  title=f"Export of {args.model}, verified on {card['verified_on']} images")
    for name, f in card["formats"].items():
        table.add_row(name, f.get("file", "-"), f"{f['size_mb']:.1f}" if "size_mb" in f else "-",
                      f"{f['latency_b1_ms']:.1f}", f"{f['accuracy']:.4f}" if "accuracy" in f else "-",
                      f"{f['top1_agreement']:.4f}" if "top1_agreement" in f else "-")
    Console().print(table)
    print(f"verified; written to {card['out']} (model card: {Path(card['out']) / 'model-card.json'})")
    return 0


def run_serve(args) -> int:
    from .serve import ServeSettings, serve

    settings = ServeSettings(max_batch_size=args.max_batch_size, max_wait_ms=args.max_wait_ms,
                             max_upload_mb=args.max_upload_mb, max_images=args.max_images, top_k=args.top_k)
    serve(args.model, args.weights, args.backend, args.host, args.port, args.workers, settings)
    return 0


def run_import_weights(args) -> int:
    from .weights import load_weights_file, save_weights_file

    if not args.file.endswith(".tflite"):
        raise UsageError("import-weights reads .tflite files; other formats load directly with --weights")
    weights = load_weights_file(args.file, args.model, args.width)
    path = save_weights_file(weights, args.out)
    console.print(f"wrote {path}: {weights.architecture} width {weights.width_mult}, {len(weights.classes)} classes, "
                  f"padding {weights.padding}, inputs scaled with mean {weights.preprocessing.mean[0]:.4f} "
                  f"std {weights.preprocessing.std[0]:.4f}")
    return 0
