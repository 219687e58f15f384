"""The Try page's model: one trained model in memory at a time, behind the same classification path as the
service (serve/classifying.py), and its Grad-CAM twin, loaded on first use.

The model is kept warm: when a training or export job ends, the model it trained or exported is loaded on its
engine (its ONNX export made, the faster engine chosen) in the background, so that the first answer of the Try page
that follows does not wait for it."""
from __future__ import annotations

import logging
import threading
from pathlib import Path

from ..serve.classifying import UploadClassifier
from ..serve.explaining import Explainer
from ..serve.uploads import ServeSettings


log = logging.getLogger("mobiclass.studio")
WARM_EVERY_S = 1.0


class TryModels:
    def __init__(self, settings: ServeSettings):
        self.settings = settings
        self.lock = threading.Lock()
        self.key: tuple | None = None
        self.classifying: UploadClassifier | None = None
        self.explainer: Explainer | None = None
        self.stopping = threading.Event()
        self.warmer: threading.Thread | None = None
        self.warmed: Path | None = None  # the run whose model the last ended job left warm

    def start_warming(self, sessions, home: Path) -> None:
        """Watch the job records: when a training or export job ends, load its model (see the module's doc)."""
        self.warmer = threading.Thread(target=self._warm, args=(sessions, home), daemon=True,
                                       name="mobiclass-try-warmer")
        self.warmer.start()

    def _warm(self, sessions, home: Path) -> None:
        from sqlalchemy import select

        from .db import Job

        seen = None
        while not self.stopping.wait(WARM_EVERY_S):
            try:
                with sessions() as db:
                    job = db.scalar(select(Job).where(Job.kind.in_(("train", "export")), Job.state == "done")
                                    .order_by(Job.finished_at.desc(), Job.id.desc()))
                    source = job if job is None or job.kind == "train" else db.get(Job, job.source_job_id)
                    run_dir = home / source.run_dir if source is not None and source.run_dir else None
                if seen is None:
                    seen = (job and job.id) or 0  # what ended before the studio started is not warmed
                    continue
                if job is None or job.id == seen or run_dir is None or not (run_dir / "model.safetensors").is_file():
                    continue
                seen = job.id
                self.classifying_for(run_dir)
                self.warmed = run_dir
            except Exception as exc:  # noqa: BLE001 - warming is an optimisation: the page's own request says why
                log.warning("could not warm the Try page's model: %s", exc)

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
        self.stopping.set()
        if self.warmer is not None:
            self.warmer.join()
        with self.lock:
            if self.classifying is not None:
                self.classifying.close()
            self.key, self.classifying, self.explainer = None, None, None
