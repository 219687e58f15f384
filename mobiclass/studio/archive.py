"""The photos of an uploaded zip of class folders, unpacked within bounds on what it really unpacks to.

The sizes a zip declares are checked first; since headers may lie, each member is then decompressed in chunks into
a file of the upload's staging folder, counting the bytes that come out, against the same per-member and total
limits and a deadline (a member longer than it declared fails its CRC check). A member that is not an image is
recognised from its first bytes and never decompressed further. Damaged, encrypted and unknown-method members
refuse the whole upload with the reason. Member names are only read, never
used as paths.
"""
from __future__ import annotations

import io
import lzma
import time
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from PIL import Image

from ..data.images import IMAGE_EXTENSIONS
from ..errors import UsageError

CHUNK = 1 << 20
HEAD = 64 * 1024           # enough for any image format's header
SPLIT_FOLDERS = ("train", "val", "test")
# The first bytes of the formats photos come in: enough to know a member is one, whatever lies before its pixel data
# (a JPEG's EXIF and ICC segments can fill the first 64 kB; a TIFF's directory may lie at its end).
IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"BM", b"II*\0", b"MM\0*",
               b"P1", b"P2", b"P3", b"P4", b"P5", b"P6")


@dataclass(frozen=True)
class ZipLimits:
    """The bounds of one zip (the studio's settings give them)."""

    max_members: int
    max_bytes: int          # all members together, as decompressed
    max_member_bytes: int   # one photo
    max_seconds: float


@dataclass(frozen=True)
class Member:
    label: str
    name: str
    file: Path | None      # the decompressed bytes in the staging folder; None when it is no image
    error: str | None = None


def read_class_zip(data: bytes, limits: ZipLimits, stage: Path) -> tuple[list[Member], list[str]]:
    """The image members of a zip of class folders (``daisy/001.jpg`` or ``flowers/daisy/001.jpg``; ``train/``,
    ``val/`` levels merged) decompressed into `stage`, and the names of members left out (not in a class folder,
    hidden, macOS metadata, a path leaving the archive)."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError):
        raise UsageError("the upload is not a zip file", code="bad_zip") from None
    deadline = time.monotonic() + limits.max_seconds
    budget = [limits.max_bytes]
    with archive:
        infos = [i for i in archive.infolist() if not i.is_dir()]
        if len(infos) > limits.max_members:
            raise UsageError(f"the zip holds {len(infos)} files, over the limit of {limits.max_members}",
                             code="zip_too_big")
        largest = max(infos, key=lambda i: i.file_size, default=None)
        if largest is not None and largest.file_size > limits.max_member_bytes:
            raise UsageError(f"{largest.filename[:200]} unpacks to {largest.file_size:,} bytes, over the limit of "
                             f"{limits.max_member_bytes:,} for one photo", code="zip_too_big")
        declared = sum(i.file_size for i in infos)
        if declared > limits.max_bytes:
            raise UsageError(f"the zip unpacks to {declared:,} bytes, over the limit of {limits.max_bytes:,}",
                             code="zip_too_big")
        members, skipped = [], []
        for number, info in enumerate(infos):
            place = class_folder(info.filename)
            if place is None:
                skipped.append(info.filename[:200])
                continue
            label, name = place
            members.append(_unpack(archive, info, label, name, stage / f"{number:05d}", limits, budget, deadline))
    if not members:
        raise UsageError("the zip holds no images in class folders: put each class's photos in a folder named after "
                         "the class (daisy/001.jpg, tulips/002.jpg, ...)", code="empty_zip")
    return members, skipped


def class_folder(filename: str) -> tuple[str, str] | None:
    """(class, file name) of a member inside a class folder, or None for anything else."""
    parts = [p for p in PurePosixPath(filename.replace("\\", "/")).parts if p not in ("", ".", "/")]
    if (len(parts) < 2 or any(p == ".." or p.startswith(".") or p == "__MACOSX" for p in parts)
            or PurePosixPath(parts[-1]).suffix.lower() not in IMAGE_EXTENSIONS
            or parts[-2].lower() in SPLIT_FOLDERS):
        return None
    return parts[-2], parts[-1]


def _unpack(archive: zipfile.ZipFile, info: zipfile.ZipInfo, label: str, name: str, target: Path,
            limits: ZipLimits, budget: list[int], deadline: float) -> Member:
    """Decompress one member into `target` within the limits; a member that is no image stops after its head."""
    try:
        with archive.open(info) as stream:
            head = stream.read(HEAD)
            if not _looks_like_image(head):
                return Member(label, name, None, "not an image, or a format Pillow cannot read")
            with open(target, "wb") as out:
                size = len(head)
                out.write(head)
                while chunk := stream.read(CHUNK):
                    size += len(chunk)
                    _check(info, size, limits, budget[0], deadline)
                    out.write(chunk)
            _check(info, size, limits, budget[0], deadline)
            budget[0] -= size
    except NotImplementedError:  # before RuntimeError, its base class
        raise UsageError(f"{info.filename[:200]} is compressed with a method this studio cannot read (use the "
                         f"usual Deflate compression)", code="bad_zip") from None
    except RuntimeError:  # zipfile: "File ... is encrypted, password required for extraction"
        raise UsageError(f"{info.filename[:200]} is encrypted: upload a zip without a password", code="bad_zip") \
            from None
    except OSError as exc:
        if exc.errno is not None:
            raise  # the disk, not the zip (no space left, ...)
        raise UsageError(f"{info.filename[:200]} is damaged ({exc}): the zip is corrupt", code="bad_zip") from None
    except (zipfile.BadZipFile, zlib.error, lzma.LZMAError, EOFError, ValueError) as exc:
        raise UsageError(f"{info.filename[:200]} is damaged ({exc}): the zip is corrupt", code="bad_zip") from None
    return Member(label, name, target)


def _check(info: zipfile.ZipInfo, size: int, limits: ZipLimits, budget: int, deadline: float) -> None:
    if size > limits.max_member_bytes:
        raise UsageError(f"{info.filename[:200]} unpacks to more than {limits.max_member_bytes:,} bytes, over the "
                         f"limit for one photo", code="zip_too_big")
    if size > budget:
        raise UsageError(f"the zip unpacks to more than {limits.max_bytes:,} bytes (a zip bomb?)", code="zip_too_big")
    if time.monotonic() > deadline:
        raise UsageError(f"the zip took more than {limits.max_seconds:g} s to unpack", code="zip_too_slow")


def _looks_like_image(head: bytes) -> bool:
    if head.startswith(IMAGE_MAGIC) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP"):
        return True
    try:
        with Image.open(io.BytesIO(head)):
            return True
    except Exception:  # noqa: BLE001 - whatever Pillow cannot identify from the header is no image
        return False
