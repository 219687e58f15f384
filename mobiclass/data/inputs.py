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
    return not hidden and path.suffix.lower() in IMAGE_EXTENSIONS and (path.is_file() or path.is_symlink())


def shard(paths: list[str], index: int, count: int, block: int = 1) -> list[str]:
    """The `index`-th of `count` contiguous, non-overlapping parts of `paths`, cut at multiples of `block`.

    With `block` the batch size, every batch of a shard is a batch of the single-process run, so the shards'
    results (the same numbers, bit for bit), concatenated in shard order, are the single-process results.
    """
    if not 0 <= index < count:
        raise ValueError(f"shard index must be in 0..{count - 1}, got {index}")
    blocks = -(-len(paths) // block)
    return paths[index * blocks // count * block:(index + 1) * blocks // count * block]
