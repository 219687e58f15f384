"""Decoding any image a user may have into RGB, or a clear reason why it cannot be used."""
from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import ImageError, NotAnImageError

ImageSource = str | os.PathLike | bytes

# Pillow's own decompression-bomb threshold (about 9459 x 9459 pixels); we refuse beyond it instead of warning.
MAX_PIXELS = Image.MAX_IMAGE_PIXELS or 89_478_485
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")


def load_image(source: ImageSource, min_size: int | None = None, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Decode a file path or raw bytes into an RGB image with its EXIF orientation applied.

    `min_size` lets JPEG decoding skip detail that a later resize would throw away (draft mode):
    the image keeps at least `min_size` pixels on each side. Raises :class:`ImageError` with a
    message fit for the user for anything that is not a usable image.
    """
    stream = _open(source)
    try:
        with stream, warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # refused below, with its size
            image = Image.open(stream)  # reads the header only: a huge file that is no image is refused at once
            width, height = image.size
            if width * height > max_pixels:
                raise ImageError(f"image too large: {width}x{height} pixels is over the limit of {max_pixels} "
                                 "(a possible decompression bomb)")
            if min_size and image.format == "JPEG":
                image.draft("RGB", (min_size, min_size))
            image.load()
            image = ImageOps.exif_transpose(image)
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise NotAnImageError("not an image, or a format Pillow cannot read") from None
    except Image.DecompressionBombError:
        raise ImageError(f"image too large: over the limit of {max_pixels} pixels "
                         "(a possible decompression bomb)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageError(f"truncated or corrupt image data ({exc})") from None
    if min(image.size) < 1:
        raise ImageError(f"image has no pixels ({image.size[0]}x{image.size[1]})")
    return to_rgb(image)


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB: 16-bit and float images are rescaled, transparency goes on white."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        values = np.asarray(image, dtype=np.float64)
        # 16-bit files are the common case; a float image is stretched to its own range.
        top = 65535.0 if image.mode != "F" else max(float(values.max()), 1e-12)
        low = 0.0 if image.mode != "F" else min(float(values.min()), 0.0)
        scaled = np.clip((values - low) / (top - low) * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(scaled, "L").convert("RGB")
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _open(source: ImageSource) -> io.BufferedIOBase:
    """A binary stream over the bytes or the file; nothing beyond what decoding asks for is read."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        if not source:
            raise ImageError("empty file")
        return io.BytesIO(bytes(source))
    path = Path(source)
    if not path.exists():
        raise ImageError("a broken link: the file it points to is missing" if path.is_symlink() else "no such file")
    if path.is_dir():
        raise ImageError("is a folder, not an image")
    try:
        if path.stat().st_size == 0:
            raise ImageError("empty file")
        return open(path, "rb")
    except OSError as exc:
        raise ImageError(f"cannot read file ({exc.strerror or exc})") from None
