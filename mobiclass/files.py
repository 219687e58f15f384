"""Files: atomic writes (a reader, or a crash, never sees half a file), CSV and YAML, where caches and shared
assets live."""
from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import os
import tempfile
from pathlib import Path
from collections.abc import Iterable, Iterator, Mapping, Sequence

from .errors import UsageError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()  # what a plain open() would have given; mkstemp makes files private (0600)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; when the block succeeds it replaces `path` in one rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def sha256_of(path: str | os.PathLike) -> str:
    """The sha256 of a file's bytes, read in 1 MB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def cache_home() -> Path:
    """Where weights and feature caches live: ``$MOBICLASS_HOME`` or ``~/.cache/mobiclass``."""
    return Path(os.environ.get("MOBICLASS_HOME") or Path.home() / ".cache" / "mobiclass")


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def package_resource(relative: str) -> Path:
    """A file or folder shipped inside the package (``mobiclass/resources/``)."""
    return Path(__file__).resolve().parent / "resources" / relative


def assets_dir() -> Path:
    """Shared local assets (datasets, weights): ``$MOBICLASS_ASSETS``, else ``shared/`` beside the checkout."""
    if os.environ.get("MOBICLASS_ASSETS"):
        return Path(os.environ["MOBICLASS_ASSETS"])
    return Path(__file__).resolve().parents[2] / "shared"


def csv_text(header: Sequence[str], rows: Iterable[Sequence | Mapping], with_header: bool = True) -> str:
    """CSV of `rows` (sequences in header order, or mappings by header name; other keys ignored)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    if with_header:
        writer.writerow(header)
    for row in rows:
        writer.writerow([row.get(name, "") for name in header] if isinstance(row, Mapping) else row)
    return buffer.getvalue()


def write_csv(path: str | os.PathLike, header: Sequence[str], rows: Iterable[Sequence | Mapping]) -> Path:
    atomic_write_text(path, csv_text(header, rows))
    return Path(path)


def check_writable(path: str | os.PathLike, what: str) -> None:
    """Refuse now, before any work, a `path` that could not be written later: its nearest existing folder must take
    a new file (a read-only disk, a missing permission, a file where a folder should be are said here)."""
    path = Path(path).absolute()
    folder = path if path.is_dir() else path.parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir():
        raise UsageError(f"cannot write {what} {path}: {folder} is a file, not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=".mobiclass-write-check.", dir=folder)
    except OSError as exc:
        raise UsageError(f"cannot write {what} {path}: {folder} is not writable ({exc.strerror or exc})",
                         code="not_writable") from None
    os.close(fd)
    os.unlink(probe)


def read_yaml_mapping(path: str | os.PathLike, what: str) -> dict:
    """A YAML file holding a mapping, or a UsageError saying what is wrong with it (`what` names its role)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{what} not found: {path}")
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise UsageError(f"{path} is not a YAML file: it is not text ({what} expected)") from None
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" at line {where.line + 1}" if where else ""
        raise UsageError(f"{path} is not valid YAML{line}: {getattr(exc, 'problem', None) or exc}") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise UsageError(f"{path} must hold a mapping of option: value")
    return values
