"""The architecture cards of the training step: size, latency measured on this machine, and the accuracy the
training benchmark measured (benchmarks/train_accuracy.py writes expected_accuracy.json).

Latencies are measured once per machine, in the background when the studio starts, and kept in the cache
(``MOBICLASS_HOME/model-speeds.json``, for this processor, core count and version of mobiclass): a page never waits
for them, and a second studio, or the next start, finds them there."""
from __future__ import annotations

import json
import os
import platform
import statistics
import threading
from pathlib import Path

from ..files import atomic_write_text, cache_home
from ..models.catalog import CATALOG
from ..pretrained import loadable, ready_here
import contextlib

EXPECTED = Path(__file__).resolve().parent / "expected_accuracy.json"
SPEED_RUNS = 10
ACCURACY_NOTE = ("what our training benchmark reached on sample photo sets (flowers-mini: 5 kinds of flowers, 100 "
                 "validation photos; fruits-mini: 5 fruits on white); yours depends on your photos")


class ModelCards:
    """Cards for every catalog model; latencies are measured once per machine (see the module's doc)."""

    def __init__(self):
        self.speeds_file = cache_home() / "model-speeds.json"
        self.lock = threading.Lock()
        self.measuring: threading.Thread | None = None
        self.stopping = threading.Event()

    def cards(self, target: str | None = None, image_size: int | None = None, classes: int = 2) -> dict:
        """Every card; with `target`, each says whether that architecture at `image_size` (default: its own) fits
        the target, and its RAM, flash and latency there."""
        expected = json.loads(EXPECTED.read_text(encoding="utf-8"))
        speeds = self._speeds()
        cards = []
        for name, spec in CATALOG.items():
            ready, choosable = ready_here(name), loadable(name)
            cards.append({
                "name": name, "description": spec.description, "resolution": spec.resolution,
                "params": spec.params, "macs": spec.macs,
                "size_mb": {"fp32": round(spec.params * 4 / 1e6, 1), "int8": round(spec.params / 1e6, 1)},
                "ready": ready, "choosable": choosable, "why_not": _why_not(ready, choosable),
                "latency_ms": speeds.get(name), "expected_accuracy": expected["accuracy"].get(name, {}),
                "fit": None if target is None else _fit(target, name, image_size or spec.resolution, classes)})
        return {"models": cards, "accuracy_source": expected["source"], "accuracy_note": ACCURACY_NOTE,
                "latency_source": "PyTorch, batch 1, median of 10 on this machine",
                "measuring": bool(self.measuring and self.measuring.is_alive())}

    def start(self) -> None:
        """Measure, in the background, the models ready here that this machine has no latency for yet."""
        speeds = self._speeds()
        missing = [name for name in CATALOG if ready_here(name) and name not in speeds]
        with self.lock:
            if missing and not (self.measuring and self.measuring.is_alive()):
                self.measuring = threading.Thread(target=self._measure, args=(missing,), daemon=True,
                                                  name="mobiclass-model-speeds")
                self.measuring.start()

    def _speeds(self) -> dict:
        try:
            cached = json.loads(self.speeds_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return cached.get("speeds", {}) if cached.get("machine") == _machine() else {}

    def _measure(self, names: list[str]) -> None:
        import torch

        from ..runtime import load_torch_classifier
        from ..runtime.engines import measure_speed

        for name in names:
            if self.stopping.is_set():
                return
            try:
                classifier = load_torch_classifier(name, progress=False)
            except Exception:  # noqa: BLE001 - a model that cannot load here simply shows no latency
                continue
            with torch.inference_mode():
                times = measure_speed(lambda x, module=classifier.module: module(torch.from_numpy(x)),
                                      (1, 3, classifier.preprocessing.size, classifier.preprocessing.size), SPEED_RUNS)
            speeds = self._speeds()
            speeds[name] = round(statistics.median(times) * 1000, 1)
            atomic_write_text(self.speeds_file, json.dumps({"machine": _machine(), "speeds": speeds}, indent=1) + "\n")

    def close(self) -> None:
        """Stop measuring after the model being measured (the studio is stopping)."""
        self.stopping.set()
        if self.measuring:
            self.measuring.join()


def _machine() -> str:
    """What latencies depend on: the processor, its cores and the version of mobiclass (torch comes with it)."""
    from ..version import __version__

    model = platform.processor()
    with contextlib.suppress(OSError, StopIteration), open("/proc/cpuinfo", encoding="utf-8") as info:
        model = next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    return f"{platform.machine()} {model} | {os.cpu_count()} cores | mobiclass {__version__}"


def _why_not(ready: bool, choosable: bool) -> str | None:
    if ready:
        return None
    if choosable:
        return "its ImageNet weights download the first time it trains (this needs the internet once)"
    return "its ImageNet weights are not on this machine, and the studio runs offline (MOBICLASS_OFFLINE)"


def _fit(target: str, model: str, image_size: int, classes: int) -> dict:
    from ..targets import Recipe, estimate, get_target

    budget = estimate(get_target(target), Recipe(model, 1.0, image_size), classes)
    return {"target": target, "image_size": image_size, **budget.as_dict()}
