"""Turning the INPUTs a user typed (files, folders, globs) into an ordered list of image paths."""
from __future__ import annotations

import glob
import os
from pathlib import Path

from .images import IMAGE_EXTENSIONS


def expand_inputs(inputs: list[str | os.PathLike]) -> list[str]:
    """Files stay as given (even missing ones, so they get their own error); folders are searched
    recursively for images in sorted order; patterns are expanded in sorted order. Input order is kept."""
    paths: list[str] = []
    for item in inputs:
        item = os.fspath(item)
        path = Path(item)
        if path.is_dir():
            paths += sorted(str(p) for p in path.rglob("*") if _is_image_file(p, path))
        elif not path.exists() and glob.has_magic(item):
            matches = sorted(glob.glob(item, recursive=True))
            paths += [m for m in matches if not Path(m).is_dir()] or [item]
        else:
            paths.append(item)
    return paths


def _is_image_file(path: Path, root: Path) -> bool:
    hidden = any(part.startswith(".") for part in path.relative_to(root).parts)
    return not hidden and path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file()
