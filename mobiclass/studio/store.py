"""Photos on disk, named by the sha256 of their bytes (the same photo is stored once, whoever uploads it), with a
small JPEG thumbnail beside; and the members of an uploaded zip, read in memory within bounds.

Nothing here takes a path from a request: a file's name is always computed from its content.
"""
from __future__ import annotations

import hashlib
import io
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from PIL import Image

from ..data.images import IMAGE_EXTENSIONS, load_image
from ..errors import UsageError
from ..files import atomic_path

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
    """``objects/ab/abcdef....jpg`` and ``thumbs/ab/abcdef....jpg`` under `root`."""

    def __init__(self, root: Path, max_pixels: int):
        self.root, self.max_pixels = root, max_pixels

    def path(self, sha256: str, suffix: str) -> Path:
        return self.root / "objects" / sha256[:2] / f"{sha256}{suffix}"

    def thumbnail(self, sha256: str) -> Path:
        return self.root / "thumbs" / sha256[:2] / f"{sha256}.jpg"

    def add(self, data: bytes) -> StoredImage:
        """Decode `data` (refusing what training could not use, with the reason), then store it and its
        thumbnail; adding the same bytes again stores nothing new."""
        image = load_image(data, max_pixels=self.max_pixels)
        with Image.open(io.BytesIO(data)) as original:
            suffix = SUFFIXES.get(original.format or "", ".img")
        digest = hashlib.sha256(data).hexdigest()
        path = self.path(digest, suffix)
        if not path.exists():
            with atomic_path(path) as tmp:
                tmp.write_bytes(data)
        thumb = self.thumbnail(digest)
        if not thumb.exists():
            image.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE))
            with atomic_path(thumb) as tmp:
                image.save(tmp, "JPEG", quality=85)
        return StoredImage(digest, suffix, *image.size)

    def remove(self, sha256: str, suffix: str) -> None:
        """Delete a photo no project holds any more."""
        self.path(sha256, suffix).unlink(missing_ok=True)
        self.thumbnail(sha256).unlink(missing_ok=True)


def zip_members(data: bytes, max_members: int, max_bytes: int) -> tuple[list[tuple[str, str, bytes]], list[str]]:
    """(class name, file name, bytes) of each image of a zip of class folders, and the members left out (``daisy/001.jpg`` or
    ``flowers/daisy/001.jpg``; ``train/``/``val/`` levels are merged). Refused whole: a zip that is not one, has
    more members than `max_members`, or would unpack to more than `max_bytes` (a zip bomb). Member names are
    only read, never used as paths."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise UsageError("the upload is not a zip file", code="bad_zip") from None
    with archive:
        infos = [i for i in archive.infolist() if not i.is_dir()]
        if len(infos) > max_members:
            raise UsageError(f"the zip holds {len(infos)} files, over the limit of {max_members}", code="zip_too_big")
        declared = sum(i.file_size for i in infos)
        if declared > max_bytes:
            raise UsageError(f"the zip unpacks to {declared:,} bytes, over the limit of {max_bytes:,}",
                             code="zip_too_big")
        members, skipped, total = [], [], 0
        for info in infos:
            parts = [p for p in PurePosixPath(info.filename.replace("\\", "/")).parts if p not in ("", ".", "/")]
            if (len(parts) < 2 or any(p == ".." or p.startswith(".") or p == "__MACOSX" for p in parts)
                    or PurePosixPath(parts[-1]).suffix.lower() not in IMAGE_EXTENSIONS
                    or parts[-2].lower() in ("train", "val", "test")):
                # not a class-folder image: a README, macOS metadata, a path escaping the archive, a split folder
                skipped.append(info.filename[:200])
                continue
            label = parts[-2]
            with archive.open(info) as member:  # read within the bound, whatever the header claimed
                content = member.read(max_bytes - total + 1)
            total += len(content)
            if total > max_bytes:
                raise UsageError(f"the zip unpacks to more than {max_bytes:,} bytes", code="zip_too_big")
            members.append((label, parts[-1], content))
    if not members:
        raise UsageError("the zip holds no images in class folders: put each class's photos in a folder named after "
                         "the class (daisy/001.jpg, tulips/002.jpg, ...)", code="empty_zip")
    return members, skipped

