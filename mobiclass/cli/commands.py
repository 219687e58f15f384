"""What each command does with its parsed arguments: call the Python API, then print or write the result."""
from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..data.images import IMAGE_EXTENSIONS
from ..data.inputs import expand_inputs
from ..errors import UsageError
from ..files import atomic_write_text, check_writable, csv_text
from ..progress import ProgressReport
from ..run_folder import default_output, provisional_note
from .messages import deprecated

console = Console(stderr=True)


def say_if_provisional(model) -> None:
    """A run folder still training gives its best model so far: say so (predict, evaluate, serve)."""
    note = provisional_note(model)
    if note:
        console.print(f"[yellow]note:[/yellow] {note}", highlight=False)


def _model(args, required: bool = True) -> str | None:
    """--model, or the model given the old way (positionally)."""
    old = getattr(args, "old_model", None)
    if old is not None:
        if args.model is not None:
            raise UsageError(f"the model is given twice ({old} and --model {args.model}); give --model only")
        deprecated(f"the model as a positional argument is now --model {old}")
        return old
    if required and args.model is None:
        raise UsageError(f"mobiclass {args.command} needs --model (a run folder, a model name or an exported file)")
    return args.model


def run_models(args) -> int:
    from ..models import CATALOG
    from ..pretrained import PRETRAINED

    rows = []
    for name, spec in CATALOG.items():
        pretrained = {weights: [{"kind": s.kind, "location": s.location, "license": s.license, "padding": s.padding,
                                 "width_mult": s.width_mult}
                                for s in sources] for weights, sources in PRETRAINED.get(name, {}).items()}
        rows.append({"name": name, "params": spec.params, "macs": spec.macs, "resolution": spec.resolution,
                     "widths": list(spec.widths), "pretrained": pretrained, "description": spec.description})
    if args.format == "json":
        print(json.dumps(rows, indent=2))
        return 0
    table = Table("model", "params", "MACs @224", "resolution", "widths", "pretrained weights")
    for row in rows:
        sources = "; ".join(f"{w} ({', '.join(s['kind'] for s in srcs)})" for w, srcs in row["pretrained"].items())
        table.add_row(row["name"], f"{row['params'] / 1e6:.2f} M", f"{row['macs'] / 1e6:.0f} M",
                      str(row["resolution"]), ", ".join(map(str, row["widths"])) or "-", sources or "-")
    print_table(table)
    return 0


def run_predict(args) -> int:
    from ..loading import load_classifier

    which = _parse_shard(args.shard)
    if which and args.format not in ("csv", "jsonl"):
        raise UsageError("--shard writes parts that concatenate: use --format csv or --format jsonl")
    if args.out and args.format == "table":
        raise UsageError("--out needs --format json, jsonl or csv")
    if args.out and Path(args.out).is_dir():
        raise UsageError(f"--out {args.out} is a folder; give a file name (e.g. {Path(args.out) / 'predictions.json'})")
    paths = expand_inputs(args.inputs)
    if not paths:
        console.print(f"no image found in {', '.join(map(str, args.inputs))} (looked for "
                      f"{', '.join(IMAGE_EXTENSIONS)})", highlight=False)
        return 1
    if not any(Path(p).exists() for p in paths):  # nothing to classify: say so before loading a model
        raise UsageError(f"no such file or folder: {', '.join(paths)}")
    _check_explain(args)
    if args.out:
        check_writable(args.out, "the results to")
    say_if_provisional(args.model)
    classifier = load_classifier(args.model, args.weights, args.engine)
    with ProgressReport("classifying", len(paths), enabled=len(paths) > args.batch_size) as advance:
        results = classifier.predict(paths, top_k=args.top_k, batch_size=args.batch_size, shard=which,
                                     on_batch=advance, min_confidence=args.min_confidence)
    if args.explain:
        from ..explain import GradCam, explain_results

        on_torch = classifier if classifier.engine.module is not None else \
            load_classifier(args.model, args.weights, "torch", progress=False)
        results = explain_results(GradCam(on_torch), results, args.explain)
    if args.format == "table":
        _print_predictions(results, classifier.name)
        if args.explain:
            explained = sum("explanation" in r for r in results)
            console.print(f"{explained} Grad-CAM heatmap(s) in {shown_path(args.explain)}", highlight=False)
        return 1 if any("error" in r for r in results) else 0
    text = json.dumps(results, indent=2) + "\n" if args.format == "json" else \
        "".join(json.dumps(r) + "\n" for r in results) if args.format == "jsonl" else \
        _predictions_csv(results, header=not which or which[0] == 0)
    if args.out:
        width = len(str(which[1] - 1)) if which else 1
        atomic_write_text(Path(args.out.replace("{shard}", f"{which[0] if which else 0:0{width}d}")), text)
    else:
        sys.stdout.write(text)
    return 1 if any("error" in r for r in results) else 0


def _check_explain(args) -> None:
    """--explain needs a folder to write into and a PyTorch model to differentiate: refuse before any work."""
    from ..metadata import file_kind

    if not args.explain:
        return
    if Path(args.explain).exists() and not Path(args.explain).is_dir():
        raise UsageError(f"--explain {args.explain} is a file; give a folder for the heatmaps")
    check_writable(args.explain, "heatmaps into")
    if args.model is not None and file_kind(args.model):
        raise UsageError(f"--explain needs the PyTorch model, and {args.model} is an exported file: give its run "
                         f"folder or a model name")


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
    rows = [[r["path"], "", "", "", "", r["error"]] if "error" in r else
            [r["path"], r["label"], "" if r["index"] is None else r["index"], f"{r['confidence']:.6f}",
             "; ".join(f"{t['label']}:{t['confidence']:.4f}" for t in r["top_k"]), ""] for r in results]
    return csv_text(["path", "label", "index", "confidence", "top_k", "error"], rows, with_header=header)


def _print_predictions(results: list[dict], model_name: str) -> None:
    table = Table("image", "label", "confidence", "top-k", title=model_name)
    for r in results:
        if "error" in r:
            table.add_row(shown_path(r["path"]), "[red]error[/red]", "", r["error"])
        else:
            top = ", ".join(f"{t['label']} {t['confidence']:.2f}" for t in r["top_k"][1:])
            table.add_row(shown_path(r["path"]), r["label"], f"{r['confidence']:.3f}", top)
    print_table(table, keys=(0, 1))


def shown_path(path: str | os.PathLike) -> str:
    """A path as a person reads it: relative to the current folder when it lies below it."""
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative


def print_table(table: Table, keys: tuple[int, ...] = (0,), console: Console | None = None) -> None:
    """Print `table` with the columns that identify a row (`keys`) never cut: on a terminal they keep their full
    width and the others wrap; in a pipe or a file nothing is cut at all."""
    console = console or Console()
    if not console.is_terminal:
        console = Console(width=10_000, file=console.file)
    for i in keys:
        column = table.columns[i]
        column.no_wrap = True
        column.min_width = max([len(Text.from_markup(str(cell)).plain) for cell in column.cells] + [len(column.header)])
    console.print(table)


def run_train(args) -> int:
    from ..run_folder import next_run_folder
    from ..train.config import TrainConfig

    progress = not args.quiet
    out = args.resume or args.out
    if not args.resume and args.config:  # a config file that is wrong is said before torch loads
        out = out or TrainConfig.load(args.config, **_training_options(args)).out
    out = out or str(next_run_folder())  # named now, so that an interrupted run says which folder to resume
    check_writable(out, "the run folder")
    from ..train import resume, train
    from ..train.loops import keep_freed_memory

    keep_freed_memory()  # this process trains and ends: it may keep its peak memory
    try:
        if args.resume:
            result = resume(args.resume, progress=progress)
        else:
            result = train(args.data, out, config=args.config, overwrite=args.overwrite, progress=progress,
                           **_training_options(args))
    except KeyboardInterrupt:
        console.print(f"interrupted; continue with: mobiclass train --resume {out}")
        return 130
    if os.environ.get("RANK", "0") != "0":  # under torchrun, rank 0 reports for every process
        return 0
    val = result.metrics["val"]
    print(f"{result.run_dir}: val accuracy {val['accuracy']:.4f}, macro-F1 {val['macro_f1']:.4f} "
          f"(best epoch {result.metrics['best_epoch']}); predict with: mobiclass predict IMAGES --model "
          f"{result.run_dir}")
    return 0


def _training_options(args) -> dict:
    """The training options given on the command line (those left out stay None, so a config file's stand)."""
    from ..train.config import TrainConfig

    return {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)
            if f.name not in ("data", "out") and getattr(args, f.name) is not None}


def run_tune(args) -> int:
    from ..train.config import TrainConfig
    from ..tune import load_space, target_space, tune

    check_writable(Path(args.out) / "study.db", "the study into")
    overrides = _training_options(args)
    base = TrainConfig.load(args.config, **overrides) if args.config else TrainConfig.from_dict(overrides)
    space = load_space(args.space)
    if base.target and not args.space:  # the target's architectures and sizes are searched too
        space.update(target_space(base.target, base.weights))
    # An option given on the command line is fixed, not searched.
    space = {name: spec for name, spec in space.items() if name not in overrides}
    result = tune(args.data, args.out, args.trials, base=base, space=space, sampler=args.sampler,
                  pruner=args.pruner, timeout=args.timeout, progress=not args.quiet, max_latency=args.max_latency)
    return 130 if result.interrupted else 0


def run_evaluate(args) -> int:
    if len(args.data) > 2:
        raise UsageError("evaluate takes one DATA folder or manifest (and the model as --model)")
    if len(args.data) == 2:  # the older order: evaluate RUN DATA
        args.old_model, args.data = args.data
    else:
        args.data = args.data[0]
    model = _model(args)
    check_writable(args.out or default_output(model, "evaluation"), "the evaluation to")
    say_if_provisional(model)
    from ..evaluate import evaluate

    report = evaluate(model, args.data, args.out, args.split, args.batch_size, args.weights, args.engine,
                      progress=True, allow_outside=args.allow_outside)
    if args.format == "json":
        print(json.dumps(report, indent=2))
        return 0
    table = Table("class", "precision", "recall", "F1", "support",
                  title=f"{shown_path(model)} on {shown_path(args.data)} ({report['split']}, {report['engine']}): "
                        f"accuracy {report['accuracy']:.4f}, "
                        f"top-5 {report['top5_accuracy']:.4f}, log loss {report['log_loss']:.4f}")
    for name, m in report["per_class"].items():
        table.add_row(name, f"{m['precision']:.3f}", f"{m['recall']:.3f}", f"{m['f1']:.3f}", str(m["support"]))
    for average in ("macro", "weighted"):
        table.add_row(f"{average} avg", *(f"{report[f'{average}_{k}']:.3f}" for k in ("precision", "recall", "f1")),
                      str(report["count"]), style="bold")
    print_table(table)
    if report["bad_files"]:
        console.print(f"[yellow]skipped {len(report['bad_files'])} unusable file(s)[/yellow], listed in metrics.json")
    print(f"report: {shown_path(Path(report['out']) / 'report.html')}")
    return 0


def run_compare(args) -> int:
    if args.old_models:
        deprecated(f"models as positional arguments are now --model {' '.join(args.old_models)}")
    models = (args.models or []) + args.old_models
    if not models:
        raise UsageError("mobiclass compare needs --model with one or more models")
    check_writable(args.out, "the comparison to")
    from ..evaluate.compare import compare

    rows = compare(models, args.data, args.out, args.runs, args.weights, args.engine, progress=True)
    if args.format == "json":
        print(json.dumps(rows, indent=2))
        return 0
    table = Table("model", "engine", "params", "MACs", "MB", "px", f"batch 1 ms ({rows[0]['threads']} threads)",
                  "batch 32 img/s", "accuracy", title="Model comparison (medians, this machine)")
    for r in rows:
        accuracy = f"{r['accuracy']:.4f}" if r["accuracy"] is not None else \
            f"n/a: {r['note']}" if r.get("note") else "-"
        macs = f"{r['macs'] / 1e6:.0f} M" if r["macs"] else "-"
        params = f"{r['params'] / 1e6:.2f} M" if r["params"] else "-"
        table.add_row(shown_path(r["model"]), r["engine"], params, macs, f"{r['size_mb']:.1f}",
                      str(r["resolution"]), f"{r['latency_b1_ms']:.1f}", f"{r['throughput_b32']:.0f}", accuracy)
    print_table(table)
    print(f"written: {Path(args.out) / 'compare.csv'}, compare.json, compare.png")
    return 0


def run_export(args) -> int:
    model = _model(args)
    if args.target:
        _check_target_alone(args)
    check_writable(args.out or default_output(model, "export"), "the export to")
    from ..export import export

    formats = args.format + "".join(f",{name}" for name in ("torchscript", "tflite") if getattr(args, name))
    card = export(model, args.out, formats=formats, target=args.target, int8=args.int8, half=args.half,
                  exclude_first_last=args.exclude_first_last, chip=args.chip, calibration=args.calibration,
                  weights=args.weights, progress=True)
    table = Table("format", "file", "precision", "MB", "ms/image", "accuracy", "top-1 agreement",
                  title=f"Export of {model}, verified on {card['verified_on']} images")
    for name, f in card["formats"].items():
        milliseconds = f.get("latency_b1_ms", f.get("simulator_ms_per_image"))
        where = f.get("file") or (f"{f['folder']}/" if "folder" in f else "(reference)")
        table.add_row(name, where, f.get("precision", "fp32"),
                      f"{f['size_mb']:.1f}" if "size_mb" in f else "-",
                      f"{milliseconds:.1f}" if milliseconds is not None else "-",
                      f"{f['accuracy']:.4f}" if "accuracy" in f else "-",
                      f"{f['top1_agreement']:.4f}" if "top1_agreement" in f else "-")
    print_table(table)
    if args.target:
        kept = card["formats"][card["targets"][args.target]]
        latency = "unknown" if kept["latency_ms"] is None else f"{kept['latency_ms']:.1f} ms"
        print(f"{args.target}: {kept['precision_reason']}; RAM {kept['ram_kb']:,.0f} kB ({kept['ram_how']}), flash "
              f"{kept['flash_kb']:,.0f} kB, latency {latency} ({kept['latency_source']})")
        if "fit_note" in kept:
            console.print(f"[yellow]warning[/yellow]: {kept['fit_note']}", highlight=False)
    print(f"verified; written to {shown_path(card['out'])} (model card: "
          f"{shown_path(Path(card['out']) / 'model-card.json')})")
    return 0


def _check_target_alone(args) -> None:
    """--target decides the format, the precision and the chip: options that would too are refused."""
    given = [flag for flag, on in (("--format", args.format != "onnx"), ("--int8", args.int8), ("--half", args.half),
                                   ("--chip", args.chip != "rk3588"), ("--torchscript", args.torchscript),
                                   ("--tflite", args.tflite)) if on]
    if given:
        raise UsageError(f"--target {args.target} chooses the format, precision and chip itself; leave out "
                         f"{', '.join(given)} (or leave out --target)")


def run_serve(args) -> int:
    from ..serve import ServeSettings, serve

    settings = ServeSettings(max_batch_size=args.max_batch_size, max_wait_ms=args.max_wait_ms,
                             max_upload_mb=args.max_upload_mb, max_images=args.max_images, top_k=args.top_k,
                             max_pixels=args.max_pixels, max_request_pixels=args.max_request_pixels,
                             max_decodes=args.max_decodes)
    say_if_provisional(_model(args))
    serve(_model(args), args.weights, args.engine, args.host, args.port, args.workers, settings,
          token=args.token, allowed_hosts=tuple(args.allowed_host))
    return 0


def run_studio(args) -> int:
    from ..studio.server import studio

    studio(args.home, args.host, args.port, args.token, args.database, open_browser=args.open,
           allowed_hosts=tuple(args.allowed_host))
    return 0


def run_import_weights(args) -> int:
    from ..weights import load_weights_file, save_weights_file

    if not args.file.endswith(".tflite"):
        raise UsageError("import-weights reads .tflite files; other formats load directly with --weights")
    check_writable(args.out, "the weights to")
    weights = load_weights_file(args.file, args.model, args.width_mult)
    path = save_weights_file(weights, args.out)
    console.print(f"wrote {path}: {weights.architecture} width {weights.width_mult}, {len(weights.classes)} classes, "
                  f"padding {weights.padding}, inputs scaled with mean {weights.preprocessing.mean[0]:.4f} "
                  f"std {weights.preprocessing.std[0]:.4f}")
    return 0


def run_toolchains(args) -> int:
    from ..export import web_runtime
    from ..export.toolchains import TOOLCHAINS, install, status

    if args.install:
        names = [*TOOLCHAINS, "web"] if args.install == "all" else [args.install]
        for name in names:
            log = lambda text: console.print(text, highlight=False)  # noqa: E731
            web_runtime.install(log) if name == "web" else install(name, log=log)
    table = Table("toolchain", "installed", "MB", "python", "what", title="Board toolchains")
    for row in [*status(), web_runtime.status()]:
        table.add_row(row["name"], "yes" if row["installed"] else "no", f"{row['size_mb']:.0f}" if row["installed"]
                      else "-", row["python"], row["description"])
    print_table(table)
    return 0
