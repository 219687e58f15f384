"""Photos on disk, named by the sha256 of their bytes (the same photo is stored once, whoever uploads it), with a
small JPEG thumbnail beside.

An upload is staged first: each photo is decoded, hashed and written with its thumbnail into a staging folder of its
own; only then, under the store's lock, are the files moved into place and the records committed in one transaction.
Deleting records and removing the files no record names any more happen under the same lock, so a photo deleted in
one project while the same bytes arrive in another is never lost. A crash (kill -9, power) can leave a staging
folder or files no record names: :meth:`ImageStore.clean` removes both when the studio starts.

Nothing here takes a path from a request: a file's name is always computed from its content.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import os
import shutil
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Iterator

from PIL import Image

from ..data.images import load_image

THUMBNAIL_SIZE = 192
SUFFIXES = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "GIF": ".gif", "BMP": ".bmp", "TIFF": ".tif",
            "PPM": ".ppm"}


@dataclass(frozen=True)
class StoredImage:
    sha256: str
    suffix: str
    width: int
    height: int


class ImageStore:
    """``objects/ab/abcdef....jpg`` and ``thumbs/ab/abcdef....jpg`` under `root`; uploads staged in ``staging/``."""

    def __init__(self, root: Path, max_pixels: int):
        self.root, self.max_pixels = root, max_pixels
        self._thread_lock = threading.Lock()

    def path(self, sha256: str, suffix: str) -> Path:
        return self.root / "objects" / sha256[:2] / f"{sha256}{suffix}"

    def thumbnail(self, sha256: str) -> Path:
        return self.root / "thumbs" / sha256[:2] / f"{sha256}.jpg"

    @contextlib.contextmanager
    def staging(self) -> Iterator[Path]:
        """A fresh staging folder for one upload, removed when the upload is committed or fails."""
        stage = self.root / "staging" / uuid.uuid4().hex
        stage.mkdir(parents=True)
        try:
            yield stage
        finally:
            shutil.rmtree(stage, ignore_errors=True)

    def prepare(self, source: bytes | Path, stage: Path) -> StoredImage:
        """Decode `source` (refusing what training could not use, with the reason: ImageError), then write it and
        its thumbnail into `stage` under their content's name."""
        image = load_image(source, max_pixels=self.max_pixels)
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as original:
            suffix = SUFFIXES.get(original.format or "", ".img")
        digest = _sha256(source)
        staged = stage / "objects" / f"{digest}{suffix}"
        staged.parent.mkdir(exist_ok=True)
        if isinstance(source, bytes):
            staged.write_bytes(source)
        else:
            os.replace(source, staged)
        image.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE))
        thumb = stage / "thumbs" / f"{digest}.jpg"
        thumb.parent.mkdir(exist_ok=True)
        image.save(thumb, "JPEG", quality=85)
        return StoredImage(digest, suffix, *image.size)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Exclusive use of the store's files, across threads and processes sharing the folder."""
        self.root.mkdir(parents=True, exist_ok=True)
        with self._thread_lock:
            fd = os.open(self.root / ".lock", os.O_CREAT | os.O_RDWR, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)

    def commit(self, stage: Path, images: list[StoredImage]) -> list[Path]:
        """Move the staged files of `images` into place (under :meth:`locked`); the files placed now, so that a
        failed database commit can take them back (:meth:`discard`)."""
        placed = []
        for image in images:
            for staged, target in ((stage / "objects" / f"{image.sha256}{image.suffix}",
                                    self.path(image.sha256, image.suffix)),
                                   (stage / "thumbs" / f"{image.sha256}.jpg", self.thumbnail(image.sha256))):
                if not target.exists():
                    target.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(staged, target)
                    placed.append(target)
        return placed

    @staticmethod
    def discard(placed: list[Path]) -> None:
        for path in placed:
            path.unlink(missing_ok=True)

    def remove(self, sha256: str, suffix: str) -> None:
        """Delete a photo no record names any more (under :meth:`locked`)."""
        self.path(sha256, suffix).unlink(missing_ok=True)
        self.thumbnail(sha256).unlink(missing_ok=True)

    def clean(self, referenced: set[str]) -> int:
        """Remove what an interrupted upload left: staging folders, and photos and thumbnails no record names.
        Returns the number of files removed."""
        removed = 0
        with self.locked():
            staging = self.root / "staging"
            if staging.is_dir():
                removed += sum(1 for p in staging.rglob("*") if p.is_file())
                shutil.rmtree(staging, ignore_errors=True)
            for folder in ("objects", "thumbs"):
                for path in (self.root / folder).glob("*/*"):
                    if path.name.split(".")[0] not in referenced:  # a hidden leftover's name splits to ""
                        path.unlink(missing_ok=True)
                        removed += 1
        return removed


def _sha256(source: bytes | Path) -> str:
    if isinstance(source, bytes):
        return hashlib.sha256(source).hexdigest()
    digest = hashlib.sha256()
    with open(source, "rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
