"""A dynamic micro-batcher: images from concurrent requests share one forward pass.

One inference thread takes the first waiting image, then keeps collecting until it holds
`max_batch_size` images or `max_wait_ms` have passed since the first, and runs them together.
Under load, batches fill at once and throughput approaches the engine's batch figure; a lone
request waits at most `max_wait_ms`. ``max_batch_size=1`` turns batching off.
"""
from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future
from collections.abc import Callable

import numpy as np

_STOP = object()


class MicroBatcher:
    def __init__(self, predict_arrays: Callable[[np.ndarray], np.ndarray], max_batch_size: int = 32,
                 max_wait_ms: float = 5.0, on_batch: Callable[[int, float], None] | None = None):
        if max_batch_size < 1 or max_wait_ms < 0:
            raise ValueError("max_batch_size must be at least 1 and max_wait_ms at least 0")
        self.predict_arrays, self.max_batch_size, self.max_wait = predict_arrays, max_batch_size, max_wait_ms / 1000
        self.on_batch = on_batch
        self._queue: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="mobiclass-batcher", daemon=True)
        self._thread.start()

    def submit(self, image: np.ndarray) -> Future:
        """Queue one preprocessed image (3, H, W); the future gives its class probabilities."""
        future: Future = Future()
        self._queue.put((image, future))
        return future

    def close(self) -> None:
        """Finish the images already queued, then stop the thread."""
        self._queue.put(_STOP)
        self._thread.join()

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            batch, stop = self._collect(first)
            # A request whose client went away has cancelled its futures: skip those images.
            batch = [(image, future) for image, future in batch if future.set_running_or_notify_cancel()]
            if batch:
                self._predict(batch)
            if stop:
                return

    def _collect(self, first) -> tuple[list, bool]:
        batch, deadline = [first], time.monotonic() + self.max_wait
        while len(batch) < self.max_batch_size:
            try:
                item = self._queue.get(timeout=max(deadline - time.monotonic(), 0))
            except queue.Empty:
                break
            if item is _STOP:
                return batch, True
            batch.append(item)
        return batch, False

    def _predict(self, batch: list) -> None:
        start = time.perf_counter()
        try:
            probabilities = self.predict_arrays(np.stack([image for image, _ in batch]))
        except Exception as exc:  # noqa: BLE001 - the error belongs to the requests, not to this thread
            for _, future in batch:
                future.set_exception(exc)
            return
        if self.on_batch:
            self.on_batch(len(batch), time.perf_counter() - start)
        for (_, future), row in zip(batch, probabilities):
            future.set_result(row)
