"""Request bodies as a list of (name, bytes), read within the request's bounds: the service and the studio read
uploads here. Everything is parsed in memory; nothing from a request is written to or read from disk."""
from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import io

from fastapi import HTTPException, Request
from PIL import Image
from python_multipart.multipart import MultipartParseError, MultipartParser, parse_options_header

MB = 1024 * 1024
UPLOAD_FIELDS = (b"files", b"file")


@dataclasses.dataclass(frozen=True)
class ServeSettings:
    """Batching and the bounds on each request."""

    max_batch_size: int = 8
    max_wait_ms: float = 0.0  # batch what queued while the engine was busy; see benchmarks/serve_load.py
    max_upload_mb: float = 10.0
    max_images: int = 32
    top_k: int = 5
    # A few kilobytes of PNG can decode to gigabytes: each image is bounded, and at most `max_decodes` are decoded
    # at once, whatever the number of requests.
    max_pixels: int = 40_000_000
    max_request_pixels: int = 160_000_000
    max_decodes: int = 2

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * MB)



async def read_uploads(request: Request, settings: ServeSettings,
                       fields: dict | None = None) -> list[tuple[str, bytes]]:
    """(name, bytes) of each uploaded image, read within the size bound; HTTP errors for anything else.

    Short text fields of a multipart body go into `fields` when given (the studio's ``label``)."""
    limit = settings.max_upload_bytes
    too_large = f"the request is over the upload limit of {settings.max_upload_mb:g} MB"
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, too_large)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise HTTPException(413, too_large)
    content_type, options = parse_options_header(request.headers.get("content-type", ""))
    if content_type == b"multipart/form-data":
        uploads = _parse_multipart(bytes(body), options.get(b"boundary"), settings.max_images, fields)
    elif content_type.startswith(b"image/") or content_type in (b"", b"application/octet-stream"):
        uploads = [("body", bytes(body))] if body else []
    else:
        raise HTTPException(415, f"unsupported content type {content_type.decode(errors='replace')!r}: send images "
                                 f"as the multipart/form-data field 'files', or one image as the raw body")
    if not uploads:
        raise HTTPException(400, "no image in the request: send images as the multipart/form-data field 'files', "
                                 "or one image as the raw body")
    return uploads


def _parse_multipart(body: bytes, boundary: bytes | None, max_images: int,
                     fields: dict | None = None) -> list[tuple[str, bytes]]:
    """The file parts named `files` of a multipart body, parsed in memory (nothing spooled to disk); other parts
    of at most 1 kB go into `fields` as text when it is given."""
    if not boundary:
        raise HTTPException(400, "multipart/form-data without a boundary")
    uploads: list[tuple[str, bytes]] = []
    part = {"headers": {}, "field": b"", "value": b"", "data": bytearray()}

    def begin():
        part.update(headers={}, field=b"", value=b"", data=bytearray())

    def header_end():
        part["headers"][bytes(part["field"]).lower()] = bytes(part["value"])
        part.update(field=b"", value=b"")

    def end():
        _, options = parse_options_header(part["headers"].get(b"content-disposition", b""))
        if options.get(b"name") not in UPLOAD_FIELDS:
            if fields is not None and b"filename" not in options and len(part["data"]) <= 1024:
                fields[options.get(b"name", b"").decode(errors="replace")] = part["data"].decode(errors="replace")
            return
        uploads.append((options.get(b"filename", b"").decode(errors="replace")[:255] or f"image {len(uploads) + 1}",
                        bytes(part["data"])))
        if len(uploads) > max_images:
            raise HTTPException(413, f"too many images in one request: the limit is {max_images}")

    callbacks = {
        "on_part_begin": begin, "on_header_end": header_end, "on_part_end": end,
        "on_header_field": lambda data, start, stop: part.update(field=part["field"] + data[start:stop]),
        "on_header_value": lambda data, start, stop: part.update(value=part["value"] + data[start:stop]),
        "on_part_data": lambda data, start, stop: part["data"].extend(data[start:stop]),
    }
    try:
        parser = MultipartParser(boundary, callbacks)
        parser.write(body)
        parser.finalize()
    except MultipartParseError as exc:
        raise HTTPException(400, f"malformed multipart body ({exc})") from None
    return uploads


def check_pixels(uploads: list[tuple[str, bytes]], settings: ServeSettings) -> int:
    """The pixels a request would decode, read from the headers before anything is decoded; 413 over the bound."""
    pixels = sum(image_pixels(data) for _, data in uploads)
    if pixels > settings.max_request_pixels:
        raise HTTPException(413, f"the images of this request hold {pixels:,} pixels, over the limit of "
                                 f"{settings.max_request_pixels:,} per request")
    return pixels


def image_pixels(data: bytes) -> int:
    """Width x height from an image's header (0 for bytes that are no image: they get their own error later)."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.width * image.height
    except Exception:  # noqa: BLE001 - anything Pillow cannot identify is judged when it is decoded
        return 0


RELEASE_AFTER_PIXELS = 4_000_000  # decoded buffers this large are worth handing back at once


def release_memory() -> None:
    """Hand freed decoding buffers back to the system (glibc keeps them otherwise), so that one burst of large
    images does not leave the server holding gigabytes."""
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to do
        ctypes.CDLL("libc.so.6").malloc_trim(0)


