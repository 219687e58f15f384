"""The one path from uploaded images to results, shared by the service's ``/v1/predict`` and the studio's Try page:
the same pixel budgets, decoding bound, micro-batching and result objects as ``mobiclass predict`` prints."""
from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import numpy as np
from starlette.concurrency import run_in_threadpool

from ..errors import ImageError, NotAnImageError
from ..runtime import Classifier
from .batcher import MicroBatcher
from .uploads import RELEASE_AFTER_PIXELS, ServeSettings, check_pixels, release_memory


class Rejected(Exception):
    """No image of the request could be used: 415 when none is an image at all, else 422; `body` is the answer."""

    def __init__(self, body: dict, status: int):
        super().__init__(body["error"])
        self.body, self.status = body, status


class UploadClassifier:
    """A classifier behind the request bounds: at most `max_decodes` images decoded at once across all requests,
    each under `max_pixels`, and the images of concurrent requests sharing forward passes (the micro-batcher)."""

    def __init__(self, classifier: Classifier, settings: ServeSettings,
                 on_batch: Callable[[int, float], None] | None = None):
        self.classifier, self.settings = classifier, settings
        self.decoding = threading.BoundedSemaphore(settings.max_decodes)
        self.batcher = MicroBatcher(classifier.predict_arrays, settings.max_batch_size, settings.max_wait_ms,
                                    on_batch=on_batch)

    async def classify(self, uploads: list[tuple[str, bytes]], top_k: int, min_confidence: float = 0.0) -> list[dict]:
        """One result object per upload, in order; :class:`Rejected` when none could be classified."""
        pixels = check_pixels(uploads, self.settings)
        prepared = await run_in_threadpool(lambda: [self._prepare(data) for _, data in uploads])
        if pixels > RELEASE_AFTER_PIXELS:
            release_memory()
        pending = {i: asyncio.wrap_future(self.batcher.submit(item))
                   for i, item in enumerate(prepared) if isinstance(item, np.ndarray)}
        probabilities = dict(zip(pending, await asyncio.gather(*pending.values())))
        results = [self.classifier.result(name, probabilities.get(i, item), top_k, min_confidence)
                   for i, ((name, _), item) in enumerate(zip(uploads, prepared))]
        if not pending:
            error = str(prepared[0]) if len(prepared) == 1 else f"none of the {len(prepared)} images could be used"
            status = 415 if all(isinstance(item, NotAnImageError) for item in prepared) else 422
            raise Rejected({"error": error, "results": results}, status)
        return results

    def _prepare(self, data: bytes) -> np.ndarray | ImageError:
        with self.decoding:
            return self.classifier.prepare(data, max_pixels=self.settings.max_pixels)

    def close(self) -> None:
        self.batcher.close()
