"""The ONNX export of a PyTorch classifier, made once and kept in the cache: what the ONNX engines run when
they are asked to serve a model name or a run folder.

An index remembers which export came from which source (a run folder's or weights file's path, size and time; a
model name and its weights), so that the next command finds it without importing torch or loading the weights
(`mobiclass predict` starts in well under a second; see benchmarks/peer_keras.py).
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from ..files import atomic_write_text, cache_home
from ..metadata import encode, file_kind
from ..runtime import Classifier
from ..runtime.sources import looks_like_path
from ..version import __version__

INDEX = "index.json"


def cached_onnx(classifier: Classifier, source: str | None = None) -> Path:
    """Keyed by the model's metadata and every weight, so a changed run never reuses a stale file; remembered
    under `source` (see :func:`source_key`) when given."""
    digest = hashlib.sha1(encode(classifier.describe()).encode())
    digest.update(classifier.module.fingerprint().encode())
    path = cache_home() / "onnx" / f"{classifier.architecture}-{digest.hexdigest()[:16]}.onnx"
    if not path.exists():
        from .onnx import export_onnx

        export_onnx(classifier, path)
    if source:
        index = _read_index()
        if index.get(source) != path.name:
            index[source] = path.name
            atomic_write_text(path.parent / INDEX, json.dumps(index, indent=1) + "\n")
    return path


def remembered_onnx(source: str | None) -> Path | None:
    """The export made earlier from `source`, if it is still in the cache."""
    name = _read_index().get(source) if source else None
    path = cache_home() / "onnx" / name if name else None
    return path if path and path.is_file() else None


def source_key(model: str | os.PathLike | None, weights: str | os.PathLike | None) -> str | None:
    """Where a classifier comes from, cheaply: a run folder or weights file by path, size and modification time
    (a retrained run gets a new key); a model name by its weights' name and this version of mobiclass."""
    from ..pretrained import OFFLINE_MODEL

    parts = [f"v{__version__}"]
    for value in (model, weights):
        if value is not None and looks_like_path(value):
            path = Path(value).resolve()
            files = [path / "model.safetensors", path / "model.json"] if path.is_dir() else [path]
            try:
                parts += [f"{f}:{f.stat().st_size}:{f.stat().st_mtime_ns}" for f in files]
            except OSError:
                return None  # not there: the slow path says why
        else:
            parts.append(str(value if value is not None or model is not None else OFFLINE_MODEL))
    if model is not None and file_kind(model):
        return None
    return "|".join(parts)


def _read_index() -> dict:
    try:
        return json.loads((cache_home() / "onnx" / INDEX).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
