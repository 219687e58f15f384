"""The argument parser: one vocabulary for every command (``--model``, ``--weights``, ``--engine``, ``--out``,
``--width-mult``), training flags built from :class:`~mobiclass.train.TrainConfig`'s fields, and the older
spellings accepted for one release with a deprecation message."""
from __future__ import annotations

import argparse
import dataclasses

from ..engine_names import DEFAULT_ENGINE, ENGINES, RENAMED_ENGINES
from ..version import __version__
from .messages import deprecated

ENGINE_HELP = ("auto (default): an exported file on its own engine; a model or run exported to ONNX once (cached) "
               "and run on the faster of ONNX Runtime and OpenVINO, as measured here once; or a given engine")
MODEL_HELP = "a model name (see mobiclass models), a run folder, or an exported .onnx/.torchscript.pt/.tflite file"
WEIGHTS_HELP = "pretrained weights name, a local file (.pth, .pt, .safetensors, .tflite) or 'none'"


class Renamed(argparse.Action):
    """An old flag that stores into the new one's destination, with a deprecation message."""

    def __init__(self, option_strings, dest, new: str, **kwargs):
        self.new = new
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        deprecated(f"{option_string} is now {self.new}")
        setattr(namespace, self.dest, values)


class Deprecated(argparse.Action):
    """An old switch that still works (the command reads it), with what to type instead."""

    def __init__(self, option_strings, dest, instead: str, **kwargs):
        self.instead = instead
        super().__init__(option_strings, dest, nargs=0, default=False, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        deprecated(f"{option_string} is now {self.instead}")
        setattr(namespace, self.dest, True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mobiclass", description="Image classifiers on the MobileNet family.")
    parser.add_argument("--version", action="version", version=f"mobiclass {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _models(commands)
    _targets(commands)
    _predict(commands)
    _train(commands)
    _tune(commands)
    _evaluate(commands)
    _compare(commands)
    _doctor(commands)
    _select(commands)
    _export(commands)
    _serve(commands)
    _studio(commands)
    _import_weights(commands)
    _toolchains(commands)
    return parser


def _studio(commands) -> None:
    studio = commands.add_parser("studio", help="the web studio: collect photos, train, evaluate, deploy, try it",
                                 description="A local web application from photos to a deployed model. Projects, "
                                             "photos, runs and exports live under --home.")
    studio.add_argument("--home", default=None, help="where the studio keeps its data (default ~/.mobiclass/studio)")
    studio.add_argument("--host", default="127.0.0.1",
                        help="address to listen on; beyond 127.0.0.1 every API call needs the token")
    studio.add_argument("--port", type=port_number, default=8765)
    studio.add_argument("--token", default=None, help="the API token (one is made and printed when --host is not "
                                                      "local and none is given)")
    _allowed_host(studio)
    studio.add_argument("--database", default=None,
                        help="a SQLAlchemy URL, e.g. postgresql://... for a team (default: SQLite under --home)")
    studio.add_argument("--open", action="store_true", help="open the page in the browser")
    studio.set_defaults(handler=_handler("run_studio"))


def _handler(name: str, module: str = "commands"):
    def run(args):
        import importlib

        return getattr(importlib.import_module(f".{module}", __package__), name)(args)
    return run


def _model_options(parser, engine: bool = True, old_positional: str | None = None) -> None:
    """--model, --weights and --engine, as every command that loads a model takes them."""
    parser.add_argument("--model", help=MODEL_HELP)
    parser.add_argument("--weights", default="imagenet", help=WEIGHTS_HELP + " (for a model name)")
    if engine:
        parser.add_argument("--engine", choices=ENGINES + tuple(RENAMED_ENGINES), default=DEFAULT_ENGINE,
                            help=ENGINE_HELP, metavar="{" + ",".join(ENGINES) + "}")
        parser.add_argument("--backend", dest="engine", action=Renamed, new="--engine", help=argparse.SUPPRESS)
    if old_positional:
        parser.add_argument("old_model", nargs="?", metavar=old_positional, help=argparse.SUPPRESS)


def _models(commands) -> None:
    models = commands.add_parser("models", help="list the architectures, their size, cost and pretrained weights")
    models.add_argument("--format", choices=("table", "json"), default="table")
    models.set_defaults(handler=_handler("run_models"))


def _targets(commands) -> None:
    targets = commands.add_parser("targets", help="the hardware you can deploy to: RAM, flash, format, recipes; "
                                                  "with --model, whether a model fits each one")
    targets.add_argument("--model", help="a run folder or a model name: its RAM, flash, latency and fit per target")
    targets.add_argument("--format", choices=("table", "json", "markdown"), default="table",
                         help="markdown: the catalogue as a table for a README")
    targets.set_defaults(handler=_handler("run_targets", "hardware"))


def _predict(commands) -> None:
    predict = commands.add_parser("predict", help="classify images with a pretrained model or a trained run")
    predict.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders (recursive) or globs")
    _model_options(predict)
    predict.add_argument("--top-k", type=positive_int, default=5)
    predict.add_argument("--min-confidence", type=float, default=0.0, metavar="P",
                         help="answer 'unsure' instead of a label when the top class's confidence is under P")
    predict.add_argument("--batch-size", type=positive_int, default=32)
    predict.add_argument("--format", choices=("table", "json", "jsonl", "csv"), default="table",
                         help="jsonl: one JSON object per line")
    predict.add_argument("--out", metavar="FILE", help="write the results to FILE (atomically) instead of the "
                                                       "screen; {shard} in the name becomes the shard number")
    predict.add_argument("--output", dest="out", action=Renamed, new="--out", help=argparse.SUPPRESS)
    predict.add_argument("--explain", metavar="OUT_DIR",
                         help="also write a Grad-CAM heatmap per image into OUT_DIR (NAME.gradcam.png: where the "
                              "model looked for its answer); needs the PyTorch model, not an exported file")
    predict.add_argument("--shard", metavar="I/N",
                         help="classify only the I-th of N contiguous blocks of the inputs (0-based); 'auto' takes "
                              "RANK/WORLD_SIZE from torchrun. Shard files (csv: header in shard 0 only, or jsonl) "
                              "concatenate to the single-process output")
    predict.set_defaults(handler=_handler("run_predict"))


def _train(commands) -> None:
    trainer = commands.add_parser("train", help="train a classifier on a folder of photos (transfer learning, "
                                               "then fine-tuning)")
    trainer.add_argument("data", nargs="?", metavar="DATA",
                         help="a folder with one sub-folder per class, or with train/ and val/ (and test/) holding "
                              "class folders, or a CSV manifest with path,label[,split] columns")
    trainer.add_argument("--out", help="the run folder to create (default: runs/train, then runs/train2, ...)")
    trainer.add_argument("--config", help="a YAML file of training options; options given here override it")
    trainer.add_argument("--resume", metavar="RUN", help="continue an interrupted run from its last epoch")
    trainer.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
    trainer.add_argument("--quiet", action="store_true", help="no progress bars or per-epoch lines")
    add_training_options(trainer)
    trainer.set_defaults(handler=_handler("run_train"))


def _tune(commands) -> None:
    tuner = commands.add_parser("tune", help="search training hyperparameters with Optuna (cached features, "
                                             "pruning); writes best.yaml for mobiclass train")
    tuner.add_argument("data", metavar="DATA", help="labelled images, as for train")
    tuner.add_argument("--out", default="tune", help="study folder: study.db, trials.csv, best.yaml, plots "
                                                     "(default: tune); running again adds trials to its study")
    tuner.add_argument("--trials", type=positive_int, default=20, help="trials to add to the study (default: 20)")
    tuner.add_argument("--sampler", choices=("tpe", "random", "grid"), default="tpe")
    tuner.add_argument("--pruner", choices=("median", "asha", "none"), default="median")
    tuner.add_argument("--timeout", type=float, help="stop starting trials after this many seconds")
    tuner.add_argument("--max-latency", type=float, metavar="MS",
                       help="with --target: leave out candidates whose estimated latency there is over MS; "
                            "pareto.csv lists the best trade-offs of accuracy, latency and RAM")
    tuner.add_argument("--space", help="YAML search space: option: [choices] | {low, high, log} | value "
                                       "(default: learning rates, weight decay, batch size, label smoothing, "
                                       "dropout, augmentation, unfrozen blocks, resolution)")
    tuner.add_argument("--config", help="a YAML file of the fixed training options every trial starts from; "
                                        "training options given here are fixed too, and left out of the search")
    tuner.add_argument("--quiet", action="store_true")
    add_training_options(tuner)
    tuner.set_defaults(handler=_handler("run_tune"))


def _evaluate(commands) -> None:
    evaluator = commands.add_parser("evaluate", help="metrics, confusion matrix, plots and an HTML report on "
                                                     "labelled images")
    evaluator.add_argument("data", nargs="+", metavar="DATA",
                           help="class folders, a folder with split folders, or a manifest")
    _model_options(evaluator)
    evaluator.add_argument("--split", help="which split of DATA (default: test if present, else val)")
    evaluator.add_argument("--allow-outside", action="store_true",
                           help="let a CSV manifest's paths point outside the manifest's folder")
    evaluator.add_argument("--out", help="output folder (default: RUN/evaluation)")
    evaluator.add_argument("--batch-size", type=positive_int, default=32)
    evaluator.add_argument("--format", choices=("table", "json"), default="table")
    evaluator.set_defaults(handler=_handler("run_evaluate"))


def _compare(commands) -> None:
    comparer = commands.add_parser("compare", help="parameters, multiply-adds, size, latency, throughput and "
                                                   "accuracy of several models, measured here")
    comparer.add_argument("old_models", nargs="*", metavar="MODEL", help=argparse.SUPPRESS)
    comparer.add_argument("--model", nargs="+", dest="models", metavar="MODEL",
                          help="models to compare: " + MODEL_HELP)
    comparer.add_argument("--weights", default="imagenet", help=WEIGHTS_HELP + " (for model names)")
    comparer.add_argument("--engine", choices=ENGINES, default=DEFAULT_ENGINE, help=ENGINE_HELP)
    comparer.add_argument("--data", help="labelled images to measure accuracy on")
    comparer.add_argument("--out", default="comparison", help="output folder (default: comparison)")
    comparer.add_argument("--runs", type=positive_int, default=20, help="timed runs per measurement (median)")
    comparer.add_argument("--format", choices=("table", "json"), default="table")
    comparer.set_defaults(handler=_handler("run_compare"))


def _doctor(commands) -> None:
    doctor = commands.add_parser("doctor", help="what is wrong with labelled photos: suspected label errors, "
                                                "duplicates and leaks, outliers, odd files (changes nothing)")
    doctor.add_argument("data", metavar="DATA", help="class folders, a folder with split folders, or a manifest")
    doctor.add_argument("--model", help="a run folder or model name whose backbone looks at the photos "
                                        "(default: efficientnet_lite0's ImageNet weights)")
    doctor.add_argument("--out", help="report folder: issues.json, CSVs, fix-list.csv, report.html (default: doctor)")
    doctor.add_argument("--folds", type=positive_int, default=5, help="cross-validation folds (default 5)")
    doctor.add_argument("--allow-outside", action="store_true",
                        help="let a CSV manifest's paths point outside the manifest's folder")
    doctor.add_argument("--fix-list", help="apply this reviewed fix list (path,action,class) to a copy of DATA ...")
    doctor.add_argument("--fixed", metavar="FOLDER", help="... written to this new folder, or for a CSV manifest to "
                                                          "a new .csv beside it (DATA is never changed)")
    doctor.add_argument("--format", choices=("table", "json"), default="table")
    doctor.set_defaults(handler=_handler("run_doctor", "curation"))


def _select(commands) -> None:
    selector = commands.add_parser("select", help="which unlabelled photos to label next (active learning)")
    selector.add_argument("pool", metavar="POOL", help="a folder of photos without labels, or a text file listing "
                                                       "them (one a line, relative paths from its folder)")
    selector.add_argument("--model", help="the trained run folder whose classes the photos are for (without one, "
                                          "before the first training: the most typical photos of the pool)")
    selector.add_argument("--count", type=positive_int, required=True,
                          help="how many photos to pick; best in rounds of about 25: label them, train again, pick "
                               "again with the new model")
    selector.add_argument("--strategy", choices=("diverse", "uncertainty", "typical"),
                          help="diverse (the default with --model): the least certain photos, spread over the pool; "
                               "uncertainty: the least certain; typical (the default without --model): the photo "
                               "nearest the centre of each of COUNT groups")
    selector.add_argument("--out", help="a CSV of the picks, path first, best first (default: paths on stdout)")
    selector.add_argument("--format", choices=("list", "json"), default="list")
    selector.set_defaults(handler=_handler("run_select", "curation"))


def _export(commands) -> None:
    exporter = commands.add_parser("export", help="ONNX (and int8 ONNX, TorchScript, TFLite) files for phones and "
                                                  "boards, verified against the PyTorch model")
    _model_options(exporter, engine=False, old_positional="RUN")
    exporter.add_argument("--format", default="onnx", metavar="FORMAT[,FORMAT...]",
                          help="onnx (always written), torchscript, tflite (needs 'mobiclass[tflite]'); board bundles "
                               "in OUT/FORMAT/: ncnn, rknn, maixcam, k210 (toolchains install on first use); "
                               "microcontrollers: tflm (TensorFlow Lite Micro), ethos-u (vela); web (a page)")
    exporter.add_argument("--target", metavar="NAME",
                          help="deploy to this hardware (see mobiclass targets): its format, its precisions tried "
                               "in order until one verifies, its budget in the model card; bundle in OUT/FORMAT/")
    exporter.add_argument("--int8", action="store_true", help="also write model.int8.onnx (static quantization)")
    exporter.add_argument("--half", action="store_true",
                          help="boards in half precision: ncnn fp16, rknn fp16, maixcam bf16 (default: ncnn fp32, "
                               "rknn and maixcam int8; k210 is uint8 only)")
    exporter.add_argument("--chip", default="rk3588", choices=("rk3588", "rk3566", "rk3568"),
                          help="the Rockchip chip of an rknn export (default: rk3588)")
    exporter.add_argument("--device", dest="chip", action=Renamed, new="--chip", choices=("rk3588", "rk3566", "rk3568"),
                          help=argparse.SUPPRESS)  # --device means a CUDA device everywhere else
    exporter.add_argument("--torchscript", action=Deprecated, instead="--format onnx,torchscript",
                          help=argparse.SUPPRESS)
    exporter.add_argument("--tflite", action=Deprecated, instead="--format onnx,tflite", help=argparse.SUPPRESS)
    exporter.add_argument("--calibration", metavar="DATA",
                          help="images to calibrate and verify on (default: the run's own training/validation split)")
    exporter.add_argument("--exclude-first-last", action="store_true",
                          help="keep the first convolution and the classifier in float when quantizing")
    exporter.add_argument("--out", help="output folder (default: RUN/export)")
    exporter.set_defaults(handler=_handler("run_export"))


def _serve(commands) -> None:
    server = commands.add_parser("serve", help="an HTTP API (with micro-batching) and a web page for a model")
    _model_options(server, old_positional="RUN_OR_MODEL")
    server.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 for every interface)")
    server.add_argument("--port", type=port_number, default=8000)
    server.add_argument("--token", default=None, help="the API token (one is made and printed when --host is not "
                                                      "local and none is given)")
    _allowed_host(server)
    server.add_argument("--workers", type=positive_int, default=1, help="server processes, each with its own engine")
    server.add_argument("--max-batch-size", type=positive_int, default=8,
                        help="images from concurrent requests run together, up to this many (1: no batching)")
    server.add_argument("--max-wait-ms", type=float, default=0.0,
                        help="how long the first image of a batch waits for others (0: batch only the images "
                             "that queued while the engine was busy)")
    server.add_argument("--max-upload-mb", type=float, default=10.0, help="largest request body accepted")
    server.add_argument("--max-images", type=positive_int, default=32, help="most images in one request")
    server.add_argument("--top-k", type=positive_int, default=5, help="default number of classes per result")
    server.add_argument("--max-pixels", type=positive_int, default=40_000_000,
                        help="largest image accepted, in decoded pixels (default: 40 million)")
    server.add_argument("--max-request-pixels", type=positive_int, default=160_000_000,
                        help="most decoded pixels in one request, all its images together (default: 160 million)")
    server.add_argument("--max-decodes", type=positive_int, default=2,
                        help="images decoded at once across all requests (bounds memory; default: 2)")
    server.set_defaults(handler=_handler("run_serve"))


def _import_weights(commands) -> None:
    importer = commands.add_parser("import-weights", help="convert TensorFlow Lite weights into a .safetensors file")
    importer.add_argument("file", metavar="FILE.tflite")
    importer.add_argument("--model", required=True, help="the architecture the file holds, e.g. mobilenet_v2")
    importer.add_argument("--width-mult", type=float, help="width multiplier (found from the file when omitted)")
    importer.add_argument("--width", dest="width_mult", type=float, action=Renamed, new="--width-mult",
                          help=argparse.SUPPRESS)
    importer.add_argument("--out", required=True, metavar="FILE.safetensors")
    importer.set_defaults(handler=_handler("run_import_weights"))


def _toolchains(commands) -> None:
    chains = commands.add_parser("toolchains", help="the board toolchains (rknn, k210, maixcam) and the browser's "
                                                    "runtime (web): installed or not, their size; --install NAME "
                                                    "installs one (or all)")
    chains.add_argument("--install", metavar="NAME", help="rknn, k210, maixcam, web, or all")
    chains.set_defaults(handler=_handler("run_toolchains"))


def add_training_options(parser: argparse.ArgumentParser) -> None:
    """One --option per TrainConfig field (type, choices and help from its metadata), defaulting to None so a
    --config file's value stands."""
    from ..train.config import TrainConfig

    for field in dataclasses.fields(TrainConfig):
        if field.name in ("data", "out"):
            continue
        flag = "--" + field.name.replace("_", "-")
        help_text = f"{field.metadata['help']} (default: {field.default})"
        if isinstance(field.default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        else:
            parser.add_argument(flag, type=TrainConfig.kind(field), choices=field.metadata["choices"], default=None,
                                help=help_text)
    parser.add_argument("--width", dest="width_mult", type=float, action=Renamed, new="--width-mult",
                        help=argparse.SUPPRESS)


def _allowed_host(parser) -> None:
    parser.add_argument("--allowed-host", action="append", default=[], metavar="NAME",
                        help="another host name the server answers to (repeatable; '*' for any): requests whose "
                             "Host header names anything else are refused (DNS rebinding)")


def port_number(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port is between 1 and 65535, got {value}")
    return value


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value
