"""The metadata a saved or exported model carries (architecture, classes, preprocessing), and where each file
format keeps it: ONNX metadata properties, an extra file inside a TorchScript archive, a JSON file beside a
.tflite file. A leaf module: reading metadata needs no engine and no torch."""
from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

from .errors import UsageError, WeightsError

METADATA_KEY = "mobiclass"
TORCHSCRIPT_EXTRA = f"{METADATA_KEY}.json"
SIDECAR_SUFFIX = ".json"


def encode(metadata: dict) -> str:
    return json.dumps(metadata)


def decode(raw: str, path: Path) -> dict:
    """Parsed metadata, or a clear error when it is not the JSON object mobiclass writes."""
    try:
        metadata = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise WeightsError(f"{path} carries damaged mobiclass metadata (not valid JSON: {exc})") from None
    missing = [k for k in ("architecture", "classes", "preprocessing") if not isinstance(metadata, dict) or
               k not in metadata]
    if missing:
        raise WeightsError(f"{path} carries incomplete mobiclass metadata (missing {', '.join(missing)})")
    return metadata


def file_kind(path: str | os.PathLike) -> str | None:
    """'onnx', 'torchscript' or 'tflite' for an exported model file, None for anything else."""
    name = os.fspath(path)
    for suffix, kind in ((".onnx", "onnx"), (".torchscript.pt", "torchscript"), (".tflite", "tflite")):
        if name.endswith(suffix):
            return kind
    return None


def sidecar(path: Path) -> Path:
    """Where a .tflite file's metadata lives: ``model.tflite.json``."""
    return path.with_name(path.name + SIDECAR_SUFFIX)


def read_file_metadata(path: str | os.PathLike) -> dict:
    """The mobiclass metadata of an exported file, or a clear error for a missing, corrupt or foreign file."""
    path, kind = Path(path), file_kind(path)
    if not path.is_file():
        raise UsageError(f"no such {kind or 'model'} file: {path}")
    if kind == "onnx":
        raw = _onnx_metadata(path)
    elif kind == "torchscript":
        raw = _torchscript_metadata(path)
    elif kind == "tflite":
        if not sidecar(path).is_file():
            raise UsageError(f"{path}: an exported TFLite model needs the file and its {sidecar(path).name}")
        raw = sidecar(path).read_text(encoding="utf-8")
    else:
        raise UsageError(f"{path} is not an exported model file (.onnx, .torchscript.pt or .tflite)")
    if not raw:
        raise WeightsError(f"{path} has no mobiclass metadata (class names, preprocessing); it was not exported by "
                           f"mobiclass")
    return decode(raw, path)


def _onnx_metadata(path: Path) -> str | None:
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - protobuf raises several types on a damaged file
        raise WeightsError(f"{path} is not a usable ONNX model ({str(exc).splitlines()[0][:200]})") from None
    return {p.key: p.value for p in model.metadata_props}.get(METADATA_KEY)


def _torchscript_metadata(path: Path) -> str | None:
    """TorchScript files are zip archives; extra files sit under ``<archive>/extra/``."""
    try:
        with zipfile.ZipFile(path) as archive:
            member = next((n for n in archive.namelist() if n.endswith(f"/extra/{TORCHSCRIPT_EXTRA}")), None)
            return archive.read(member).decode("utf-8") if member else None
    except (zipfile.BadZipFile, OSError, UnicodeDecodeError) as exc:
        raise WeightsError(f"{path} is not a usable TorchScript file ({exc})") from None


def write_onnx_metadata(path: str | os.PathLike, metadata: str) -> None:
    import onnx

    model = onnx.load(str(path))
    for entry in list(model.metadata_props):
        if entry.key == METADATA_KEY:
            model.metadata_props.remove(entry)
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, metadata
    model.producer_name = "mobiclass"
    onnx.save(model, str(path))
