"""The ONNX export of a PyTorch classifier, made once and kept in the cache: what the ONNX engines run when
they are asked to serve a model name or a run folder."""
from __future__ import annotations

import hashlib
from pathlib import Path

from ..files import cache_home
from ..metadata import encode
from ..runtime import Classifier
from .onnx import export_onnx


def cached_onnx(classifier: Classifier) -> Path:
    """Keyed by the model's metadata and every weight, so a changed run never reuses a stale file."""
    digest = hashlib.sha1(encode(classifier.describe()).encode())
    digest.update(classifier.module.fingerprint().encode())
    path = cache_home() / "onnx" / f"{classifier.architecture}-{digest.hexdigest()[:16]}.onnx"
    if not path.exists():
        export_onnx(classifier, path)
    return path
