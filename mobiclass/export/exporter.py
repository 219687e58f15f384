"""`mobiclass export`: write deployable files, verify each against the PyTorch model, and a model card.

``export --target NAME`` deploys: the target's format, its precisions tried in order (the first that keeps the
accuracy is kept, and the card says why), its budget in the card."""
from __future__ import annotations

import os
import random
import shutil
import statistics
from pathlib import Path
from collections.abc import Sequence

import numpy as np

from ..data.dataset import scan_dataset
from ..errors import ImageError, MobiclassError, UsageError
from ..metadata import sidecar
from ..progress import ProgressReport
from ..run_folder import RunFolder, default_output, is_run_folder
from ..runtime import Classifier, load_torch_classifier, measure_speed, open_exported
from ..targets import Recipe, Target, estimate, get_target
from ..weights import DEFAULT_WEIGHTS
from . import bundles
from . import card as cards
from .boards import BOARD_FORMATS, RKNN_DEVICES, export_board, precision_for, sample_paths
from .boards import crops as board_crops
from .onnx import export_onnx, export_tflite, export_torchscript
from .quantize import quantize_int8, quantize_tflite_int8

FP32_AGREEMENT = 0.999  # fp32 must give the same top-1 as PyTorch on at least this share of images
# The accuracy a precision may lose against PyTorch, in points, or one photo of the verification set when that is
# more: on 53 photos one photo is 1.9 points, and refusing a model for one photo says nothing about it.
LOSS_LIMITS = {"int8": 0.02, "uint8": 0.02, "fp16": 0.01, "bf16": 0.01}
CALIBRATION_IMAGES = 300
BOARD_CALIBRATION_IMAGES = 100  # as measured for every board toolchain
# format name -> (file name, writer); ONNX is always written: int8 is made from it and it is the reference export.
FORMATS = {"onnx": ("model.onnx", export_onnx), "torchscript": ("model.torchscript.pt", export_torchscript),
           "tflite": ("model.tflite", export_tflite)}
INT8_FILES = {"onnx": "model.int8.onnx", "tflite": "model.int8.tflite"}


class VerificationError(MobiclassError):
    """An exported file that does not give the answers the PyTorch model gives."""


def export(model: str | os.PathLike, out: str | os.PathLike | None = None, *, formats: Sequence[str] = ("onnx",),
           target: str | None = None, int8: bool = False, half: bool = False, exclude_first_last: bool = False,
           chip: str = "rk3588", calibration: str | os.PathLike | None = None, weights: str | None = DEFAULT_WEIGHTS,
           seed: int = 0, progress: bool = False) -> dict:
    """Export a run folder (or a named model) to each of `formats`, verify each against the PyTorch model, and
    return the model card (also written to ``OUT/model-card.json``, where earlier exports' entries are kept).

    Files: ``onnx`` (always; int8 ONNX too with `int8`), ``torchscript``, ``tflite``. Board bundles, each in
    ``OUT/FORMAT/``: ``ncnn`` (fp32, or fp16 with `half`), ``rknn`` (int8, or fp16; for the Rockchip `chip`),
    ``maixcam`` (int8, or bf16), ``k210`` (uint8). int8 may lose at most 2 accuracy points against PyTorch, half
    precision 1 (or one photo, when that is more); float formats must agree with PyTorch.

    With `target` (see ``mobiclass targets``), the target's bundle alone is written, in ``OUT/FORMAT/``: its
    precisions are tried in order and the first that verifies is kept.

    Verification and calibration images come from the run's own split (validation / training), or
    from `calibration` (a dataset folder) when given or when the model has no run folder.
    """
    chosen = get_target(target) if target else None
    wanted = ["onnx"] if chosen else _formats(formats)
    if chip not in RKNN_DEVICES:
        raise UsageError(f"chip must be one of {', '.join(RKNN_DEVICES)}, got {chip!r}")
    precisions = {board: precision_for(board, half) for board in wanted if board in BOARD_FORMATS}
    out = Path(out) if out else default_output(model, "export")
    session = Session(model, weights, out, calibration, seed, progress)
    for name in wanted:
        if name in FORMATS:
            session.judge(name, session.file(name, "fp32"))
        elif name == "web":
            session.judge("web", session.web("fp32"))
            session.bundles.append("web")
    if chosen:
        _deploy(session, chosen)
    for name in [n for n in ("onnx", "tflite") if int8 and n in wanted]:
        session.judge(f"{name}-int8", session.file(name, "int8", exclude_first_last))
    for board, precision in precisions.items():
        session.judge(board, session.board(board, precision, chip))
        session.bundles.append(board)
    return session.finish(int8_retry=not exclude_first_last)


class Session:
    """One export: the model, its verification and calibration images, PyTorch's answers, and the card."""

    def __init__(self, model, weights, out: Path, calibration, seed: int, progress: bool):
        self.classifier = classifier = load_torch_classifier(model, weights)
        self.out, self.progress, self.problems, self.bundles = out, progress, {}, []
        out.mkdir(parents=True, exist_ok=True)
        self.verify_set, self.train_set = _image_sets(model, classifier, calibration, seed)
        # A calibration folder may hold photos without a class: they count for agreement, not for accuracy.
        self.labelled = np.array([label is not None for _, label in self.verify_set])
        self.labels = np.array([label or 0 for _, label in self.verify_set])
        self.reference = None
        reference, readable = self.answers(classifier, "pytorch")  # every row scores the photos still readable
        if not readable.any():
            raise UsageError(f"none of the {len(reference)} verification photos can be read any more (moved or "
                             f"deleted since training?): nothing to verify the export on",
                             code="no_verification_photos")
        self.verify_set = [image for image, ok in zip(self.verify_set, readable) if ok]
        self.labels, self.labelled, self.reference = self.labels[readable], self.labelled[readable], reference[readable]
        self.card = {"model": str(model), "architecture": classifier.architecture, "classes": classifier.classes,
                     "verified_on": len(self.verify_set), "formats": {"pytorch": self.describe(
                         classifier, self.reference)}}
        if not readable.all():
            self.card["unreadable"] = int((~readable).sum())

    def answers(self, runner: Classifier, what: str) -> tuple[np.ndarray, np.ndarray]:
        """The class `runner` answers for each verification photo, and whether the photo could be read."""
        with ProgressReport(f"verifying {what}", len(self.verify_set), enabled=self.progress) as advance:
            results = list(runner.predict_files([p for p, _ in self.verify_set], on_batch=advance))
        readable = np.array([not isinstance(r, ImageError) for _, r in results])
        return np.array([int(r.argmax()) if ok else 0 for (_, r), ok in zip(results, readable)]), readable

    def predictions(self, runner: Classifier, what: str) -> np.ndarray:
        """An exported file's answers: the photos PyTorch could read, read by the same code."""
        return self.answers(runner, what)[0]

    def describe(self, runner: Classifier, predicted: np.ndarray, path: Path | None = None) -> dict:
        size = runner.preprocessing.size
        result = {"latency_b1_ms": 1000 * statistics.median(measure_speed(runner.predict_arrays, (1, 3, size, size),
                                                                          20))}
        result.update(self.score(predicted))
        if path is not None:
            result.update(file=path.name, size_mb=path.stat().st_size / 1e6)
        return result

    def score(self, predicted: np.ndarray, kept: np.ndarray | None = None) -> dict:
        """Accuracy (on the labelled images) and top-1 agreement with PyTorch of answers to the images `kept`."""
        labels = self.labels if kept is None else self.labels[kept]
        labelled = self.labelled if kept is None else self.labelled[kept]
        result = {}
        if labelled.any():
            result["accuracy"] = float((predicted[labelled] == labels[labelled]).mean())
        if self.reference is not None:
            reference = self.reference if kept is None else self.reference[kept]
            result["top1_agreement"] = float((predicted == reference).mean())
        return result

    def file(self, name: str, precision: str, exclude_first_last: bool = False) -> dict:
        """model.onnx / .torchscript.pt / .tflite (fp32), or its int8 file, verified through its own engine."""
        if precision == "fp32":
            file_name, write = FORMATS[name]
            path = write(self.classifier, self.out / file_name)
        else:
            batches = _calibration_batches(self.classifier, self.train_set)
            path = quantize_int8(self.out / "model.onnx", self.out / INT8_FILES[name], batches, exclude_first_last) \
                if name == "onnx" else _int8_tflite(self.out, batches)
        exported = open_exported(path, "onnxruntime" if name == "onnx" else "auto")
        entry = {**self.describe(exported, self.predictions(exported, path.name), path), "precision": precision}
        if name == "onnx" and precision == "int8":
            entry["excluded_first_last"] = exclude_first_last
        return entry

    def web(self, precision: str) -> dict:
        """OUT/web/: the ONNX file (fp32, or int8 made from it) in a browser bundle, verified by the page itself in
        headless Chromium where it is installed (else through ONNX Runtime here, and the entry says so)."""
        from . import web

        entry = dict(self.card["formats"]["onnx"]) if precision == "fp32" else self.file("onnx", precision)
        files = web.write_bundle(self.classifier, self.out / "web", self.out / entry["file"], precision)
        entry.update(folder="web", files=files, runtime="ONNX Runtime (Python) on the same file: Chromium or "
                                                        "Playwright is not installed here for the browser run")
        entry.pop("target", None)
        checked = web.check_in_chromium(self.out / "web", [p for p, _ in self.verify_set])
        if checked is not None:
            entry.update(self.score(checked["top1"]), runtime=f"onnxruntime-web {web.web_runtime.VERSION} in "
                                                              f"{checked['browser']} (WebAssembly, 1 thread)",
                         browser_images_per_second=round(checked["images_per_second"], 1))
        return entry

    def board(self, board: str, precision: str, chip: str, target: Target | None = None) -> dict:
        """A board bundle in OUT/BOARD/, run on the vendor's simulator (for `target`: checked against its memory)."""
        if board == "k210":
            check_fits(get_target("k210"), self.classifier)
        verify, kept = board_crops(self.classifier, [p for p, _ in self.verify_set])
        calibration, _ = board_crops(self.classifier, sample_paths([p for p, _ in self.train_set],
                                                                   BOARD_CALIBRATION_IMAGES))
        entry = export_board(board, self.classifier, self.out / board, verify, calibration, precision, chip, target)
        entry.update(self.score(entry.pop("logits").argmax(1), np.array(kept)))
        return entry

    def judge(self, name: str, entry: dict) -> bool:
        """Verify `entry` against PyTorch (and put it into the card with its budget); whether it passed."""
        precision = entry.get("precision", "fp32")
        limit = allowed_loss(precision, int(self.labelled.sum()))
        if limit is None:
            passed = entry["top1_agreement"] >= FP32_AGREEMENT
            problem = f"{name} agrees with PyTorch on only {entry['top1_agreement']:.2%} of images"
        else:
            loss = self.card["formats"]["pytorch"]["accuracy"] - entry["accuracy"] if "accuracy" in entry else \
                1 - entry["top1_agreement"]  # unlabelled images: the share of changed answers stands in
            entry.update(accuracy_loss=loss, allowed_loss=limit)
            passed = not exceeds(loss, limit)
            problem = f"{name} ({precision}) loses {loss:.1%} accuracy (at most {limit:.1%} allowed)"
        entry["verified"] = passed
        target = cards.target_of(name, entry)
        if target is not None and "size_mb" in entry:
            cards.add_budget(entry, target, self.classifier)
        self.card["formats"][name] = entry
        self.problems.pop(name, None)
        if not passed:
            self.problems[name] = problem
        return passed

    def finish(self, int8_retry: bool = False) -> dict:
        card = self.card
        card["verified"], card["problems"] = not self.problems, list(self.problems.values())
        cards.write(self.out, card)
        for folder in self.bundles:  # the bundle carries its own card: what it holds and how it verified
            shutil.copy(self.out / cards.CARD, self.out / folder / cards.CARD)
        card["out"] = str(self.out)
        if self.problems:
            raise VerificationError("export written but NOT verified: " + "; ".join(self.problems.values()) +
                                    f" (details in {self.out / cards.CARD})", code="not_verified",
                                    int8_retry=int8_retry and "onnx-int8" in self.problems)
        return card


def _deploy(session: Session, target: Target) -> None:
    """The target's bundle in OUT/FORMAT/: each of its precisions in order until one verifies."""
    check_fits(target, session.classifier)
    board = target.format in BOARD_FORMATS
    web = target.format == "web"
    if not board and not web and target.format not in session.card["formats"]:  # int8 is made from the float one
        session.judge(target.format, session.file(target.format, "fp32"))
    tried = []
    for precision in target.precisions:
        if web:
            name, entry = "web", session.web(precision)
        elif board:
            name, entry = target.format, session.board(target.format, precision, target.chip or "rk3588", target)
        elif precision == "fp32":
            name, entry = target.format, session.card["formats"][target.format]
        else:
            name, entry = f"{target.format}-{precision}", session.file(target.format, precision)
        entry["target"] = target.name
        passed = session.judge(name, entry)
        tried.append({key: entry.get(key) for key in ("precision", "accuracy", "top1_agreement", "accuracy_loss",
                                                      "allowed_loss", "verified")})
        if passed:
            break
        if not board and precision != target.precisions[-1]:  # a file that failed is not left to be picked up
            (session.out / entry["file"]).unlink(missing_ok=True)
            session.card["formats"].pop(name)
            session.problems.pop(name)
    entry.update(tried=tried, precision_reason=_why(tried))
    if not board and not web:
        _file_bundle(session, target, entry)
    session.bundles.append(target.format)
    session.card.setdefault("targets", {})[target.name] = name


def _file_bundle(session: Session, target: Target, entry: dict) -> None:
    """OUT/FORMAT/ for a file format: the kept file, labels, the program and a README, as boards get."""
    folder = session.out / target.format
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    shutil.copy(session.out / entry["file"], folder / entry["file"])
    if target.format == "tflite" and sidecar(session.out / entry["file"]).exists():
        shutil.copy(sidecar(session.out / entry["file"]), sidecar(folder / entry["file"]))
    bundles.write(target.format, session.classifier, folder, [entry["file"]], entry["precision"])
    entry["bundle"] = target.format


def _why(tried: list[dict]) -> str:
    """Which precision was kept and why, in one sentence."""
    def said(t: dict) -> str:
        if t["allowed_loss"] is None:
            return f"{t['precision']} agrees with PyTorch on {t['top1_agreement']:.1%} of images"
        return f"{t['precision']} loses {t['accuracy_loss']:.1%} (at most {t['allowed_loss']:.1%} allowed)"
    kept = tried[-1]
    failed = "; ".join(said(t) for t in tried[:-1])
    verdict = f"{kept['precision']} kept: {said(kept)}" if kept["verified"] else \
        f"no precision verified; {said(kept)}"
    return f"{failed}; {verdict}" if failed else verdict


def check_fits(target: Target, classifier: Classifier) -> None:
    """Refuse, before converting, a model that cannot fit the target (the K210's KPU memory, a board's flash)."""
    budget = estimate(target, Recipe(classifier.architecture, classifier.width_mult, classifier.preprocessing.size),
                      len(classifier.classes), target.precisions[-1])
    if not budget.fits:
        raise UsageError(f"{classifier.architecture} (width {classifier.width_mult:g}) at "
                         f"{classifier.preprocessing.size} px does not fit {target.name}: {'; '.join(budget.reasons)}",
                         code="model_does_not_fit", target=target.name)


def allowed_loss(precision: str, labelled: int) -> float | None:
    """The accuracy `precision` may lose: its limit, or one photo of `labelled` when that is more; None for fp32
    (which must agree with PyTorch instead)."""
    limit = LOSS_LIMITS.get(precision)
    return None if limit is None else max(limit, 1 / labelled if labelled else 0.0)


def _int8_tflite(out: Path, batches) -> Path:
    """model.int8.tflite from model.tflite, with the float file's metadata beside it."""
    path = quantize_tflite_int8(out / "model.tflite", out / "model.int8.tflite", batches)
    shutil.copy(sidecar(out / "model.tflite"), sidecar(path))
    return path


def _formats(formats: Sequence[str] | str) -> list[str]:
    """The formats asked for (a list, or a comma-separated string), ONNX first."""
    names = formats.split(",") if isinstance(formats, str) else list(formats)
    names = [n.strip() for n in names if n.strip()]
    unknown = [n for n in names if n not in FORMATS and n not in BOARD_FORMATS and n != "web"]
    if unknown:
        raise UsageError(f"unknown export format(s) {', '.join(unknown)}; formats: "
                         f"{', '.join([*FORMATS, *BOARD_FORMATS, 'web'])}")
    return list(dict.fromkeys(["onnx", *names]))


def exceeds(value: float, limit: float) -> bool:
    """`value > limit` for differences of accuracies: 0.86 - 0.85 is 0.010000000000000009 in floating point."""
    return value > limit + 1e-9


def _image_sets(model, classifier: Classifier, calibration, seed: int) -> tuple[list, list]:
    """(verification images with labels or None, calibration images) as (path, label index) pairs."""
    index = classifier.class_index
    split = RunFolder(model).read_split() if calibration is None and is_run_folder(model) else None
    if split is not None:
        return ([(p, index.get(c)) for p, c in split["val"]], [(p, index.get(c)) for p, c in split["train"]])
    if calibration is None:
        raise UsageError(f"{model} has no run folder with a split to verify and calibrate on, and no calibration "
                         f"images were given", code="needs_calibration")
    dataset = scan_dataset(calibration, seed=seed)
    return tuple([(s.path, index.get(dataset.classes[s.label])) for s in dataset.splits[split]]
                 for split in ("val", "train"))


def _calibration_batches(classifier: Classifier, images: list, batch_size: int = 16):
    """A seeded sample of a few hundred real training images, preprocessed as at inference."""
    sample = random.Random(0).sample(images, min(CALIBRATION_IMAGES, len(images)))
    arrays = [a for a in map(classifier.prepare, [p for p, _ in sample]) if isinstance(a, np.ndarray)]
    for i in range(0, len(arrays), batch_size):
        yield np.stack(arrays[i:i + batch_size])
