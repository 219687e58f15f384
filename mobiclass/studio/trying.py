"""The Try page's model: one trained model in memory at a time, behind the same classification path as the
service (serve/classifying.py), and its Grad-CAM twin, loaded on first use."""
from __future__ import annotations

import threading
from pathlib import Path

from ..serve.classifying import UploadClassifier
from ..serve.explaining import Explainer
from ..serve.uploads import ServeSettings


class TryModels:
    def __init__(self, settings: ServeSettings):
        self.settings = settings
        self.lock = threading.Lock()
        self.key: tuple | None = None
        self.classifying: UploadClassifier | None = None
        self.explainer: Explainer | None = None

    def classifying_for(self, run_dir: Path) -> UploadClassifier:
        """The run's classifier on the fastest engine here (loaded once per trained model; blocking)."""
        with self.lock:
            self._switch(run_dir)
            if self.classifying is None:
                from ..loading import load_classifier

                self.classifying = UploadClassifier(load_classifier(run_dir, progress=False), self.settings)
            return self.classifying

    def explainer_for(self, run_dir: Path) -> Explainer:
        with self.lock:
            self._switch(run_dir)
            if self.explainer is None:
                from ..explain import GradCam
                from ..loading import load_classifier

                self.explainer = Explainer(lambda: GradCam(load_classifier(run_dir, engine="torch", progress=False)))
            return self.explainer

    def _switch(self, run_dir: Path) -> None:
        key = (str(run_dir), (run_dir / "model.safetensors").stat().st_mtime_ns)
        if key != self.key:
            if self.classifying is not None:  # closed once the requests it is answering are done
                threading.Timer(60.0, self.classifying.close).start()
            self.key, self.classifying, self.explainer = key, None, None

    def close(self) -> None:
        with self.lock:
            if self.classifying is not None:
                self.classifying.close()
            self.key, self.classifying, self.explainer = None, None, None
