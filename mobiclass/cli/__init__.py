"""The ``mobiclass`` command: parses arguments and calls the Python API. Exit status: 0 success,
1 when some input failed (the others still succeed), 2 for usage errors.

Only this package names flags: library errors state facts and carry a code, and :data:`ADVICE` says, for
each code, what to type.
"""
from __future__ import annotations

from ..errors import MobiclassError
from .messages import library_deprecations_shown
from .parser import build_parser

ADVICE = {
    "run_exists": "pass --overwrite to replace it, or --resume {run} to continue it",
    "unknown_weights": "pass --weights PATH for a local file, or --weights none to start from scratch",
    "weights_unavailable": "pass --weights PATH to use a local weights file (.pth, .pt, .safetensors or .tflite), "
                           "or use --model {offline_model}, whose weights are installed with mobiclass and need no "
                           "network",
    "needs_calibration": "pass --calibration DATA (a folder of class folders)",
    "train_needs_data": "give DATA: a folder with one sub-folder of photos per class",
    "width_needs_scratch": "use --weights none to train another width from scratch",
    "other_study": "use another --out",
    "no_torch_model": "pass the run folder or model name the file was exported from",
    "loss_diverged": "lower --lr (or --head-lr for the head stage)",
    "wrong_architecture": "pass the matching --model",
    "no_such_split": "choose one with --split",
    "manifest_outside": "pass --allow-outside if that is intended",
    "no_cuda": "use --device cpu (or auto)",
    "needs_python": "or point MOBICLASS_TOOLCHAINS at a folder of toolchains installed elsewhere",
    "does_not_fit": "train it with --model {model} --width-mult {width_mult:g} --image-size {image_size}",
    "no_recipe_fits": "give --weights none (from scratch) or a weights file, or see mobiclass targets",
    "no_weights_for_recipe": "give --weights FILE (e.g. a MobileNetV1 .tflite of that width) or --weights none "
                             "(from scratch)",
    "model_does_not_fit": "train a model for it: mobiclass train DATA --target {target}",
    "arena_does_not_fit": "train a model for it (mobiclass train DATA --target {target}), or a smaller --image-size",
}


def main(argv: list[str] | None = None) -> int:
    from rich.console import Console

    parser = build_parser()
    args = parser.parse_args(argv)
    console = Console(stderr=True)
    try:
        with library_deprecations_shown():
            return args.handler(args)
    except MobiclassError as exc:
        # soft_wrap: the terminal wraps the line; rich would cut paths in two where they reach the edge
        console.print(f"[red]error:[/red] {exc}{advice(exc)}", markup=True, highlight=False, soft_wrap=True)
        return exc.exit_code
    except KeyboardInterrupt:
        console.print("interrupted")
        return 130
    except OSError as exc:  # the disk or the system refused (full, read-only, permissions): no traceback
        where = f" {exc.filename}" if exc.filename else ""
        console.print(f"[red]error:[/red] cannot go on:{where} {exc.strerror or exc}", markup=True, highlight=False,
                      soft_wrap=True)
        return 1
    except Exception as exc:  # noqa: BLE001 - a bug: the traceback goes to a file, the person gets one line
        report = crash_report()
        console.print(f"[red]internal error[/red] ({type(exc).__name__}: {exc}); the details are in {report}; "
                      f"please report it", markup=True, highlight=False, soft_wrap=True)
        return 1


def crash_report() -> str:
    """Write the current exception's traceback under the cache folder; its path, or a note that it could not be."""
    import datetime
    import traceback

    from ..files import cache_home

    try:
        path = cache_home() / "logs" / f"crash-{datetime.datetime.now():%Y%m%d-%H%M%S}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(traceback.format_exc(), encoding="utf-8")
        return str(path)
    except OSError:
        return "(no file: the cache folder is not writable)"


def advice(error: MobiclassError) -> str:
    """What to type about `error`, as '; ...' to append to its message ('' when there is nothing to add)."""
    if error.code == "not_verified" and error.facts.get("int8_retry"):
        return "; try --exclude-first-last to keep the first and last layers in float"
    text = ADVICE.get(error.code or "")
    return f"; {text.format(**error.facts)}" if text else ""
