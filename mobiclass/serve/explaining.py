"""Grad-CAM behind the service (``POST /v1/explain``): the model's PyTorch twin is loaded on first use, and one
explanation runs at a time (each is a backward pass, a few hundred milliseconds on a small CPU)."""
from __future__ import annotations

import base64
import threading
from collections.abc import Callable

from ..data import load_image
from ..errors import ImageError
from ..explain import GradCam, overlay_png

MAX_EXPLAINED = 4  # images per request: each costs a backward pass
OVERLAY_SIDE = 320


class Explainer:
    def __init__(self, load: Callable[[], GradCam]):
        self._load = load
        self._cam: GradCam | None = None
        self._lock = threading.Lock()

    def explain(self, uploads: list[tuple[str, bytes]], label: str | None, max_pixels: int) -> list[dict]:
        """Per upload: the explained class, its peak (x, y) in the photo's pixels and the overlay as a PNG data
        URL; or ``{"path", "error"}`` for bytes that are no usable image."""
        results = []
        with self._lock:
            if self._cam is None:
                self._cam = self._load()
            cam = self._cam
            target = None if label is None else cam.classes.index(label)
            for name, data in uploads:
                try:
                    image = load_image(data, max_pixels=max_pixels)
                except ImageError as exc:
                    results.append({"path": name, "error": str(exc)})
                    continue
                [explanation] = cam.explain([image], None if target is None else [target])
                png = overlay_png(explanation, image, OVERLAY_SIDE)
                results.append({"path": name, "label": cam.classes[explanation.index], "index": explanation.index,
                                "peak": list(explanation.peak),
                                "heatmap": "data:image/png;base64," + base64.b64encode(png).decode()})
        return results
