"""Example datasets shipped with mobiclass, so that a first run needs no download."""
from __future__ import annotations

from pathlib import Path

from .files import package_resource


def fruits() -> Path:
    """The five fruits of the original tutorial (apple, kiwi, orange, pear, strawberry): a folder with ``train/``
    (60 images per class) and ``val/`` (20), 100x100 photos on white from Fruits-360 (MIT licence).

    >>> from mobiclass.train import train
    >>> train(fruits(), "runs/fruits")
    """
    return package_resource("fruits")
