"""The engines' names, one vocabulary for the Python API and the command line (torch-free, so `--help` stays
instant): which engines run a model, which run only their own kind of exported file, and old names still accepted."""
from __future__ import annotations

import warnings

from .errors import UsageError

ENGINES = ("auto", "torch", "onnxruntime", "openvino")
DEFAULT_ENGINE = "auto"
FILE_ONLY_ENGINES = ("torchscript", "litert")  # each runs its own kind of exported file
RENAMED_ENGINES = {"fastest": "auto"}  # accepted for one release


def engine_name(engine: str) -> str:
    """A known engine name (an old spelling is accepted with a DeprecationWarning), or a UsageError."""
    if engine in RENAMED_ENGINES:
        warnings.warn(f"engine {engine!r} is now called {RENAMED_ENGINES[engine]!r}", DeprecationWarning,
                      stacklevel=3)
        engine = RENAMED_ENGINES[engine]
    if engine not in (*ENGINES, *FILE_ONLY_ENGINES):
        raise UsageError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    return engine
