"""Running the app with uvicorn, in one process or several (each worker loads its own engine)."""
from __future__ import annotations

import dataclasses
import json
import os

import torch

from ..errors import UsageError
from ..runtime import Classifier, load_classifier
from ..runtime.engines import OnnxClassifier
from .app import ServeSettings, create_app

ENVIRONMENT_KEY = "MOBICLASS_SERVE"  # how the parent hands the model to worker processes


def serve(model: str, weights: str = "imagenet", backend: str = "onnxruntime", host: str = "127.0.0.1",
          port: int = 8000, workers: int = 1, settings: ServeSettings = ServeSettings(),
          log_level: str = "info") -> None:
    """Serve `model` (a run folder, model name or exported file) until interrupted."""
    import uvicorn

    if workers < 1:
        raise UsageError("--workers must be at least 1")
    classifier = _serving_engine(load_classifier(model, weights, backend=backend))
    if workers == 1:
        uvicorn.run(create_app(classifier, settings), host=host, port=port, log_level=log_level)
        return
    # Workers load the file the parent already exported (no export race), on the engine it chose.
    exported = getattr(classifier, "path", None)
    os.environ[ENVIRONMENT_KEY] = json.dumps({
        "model": str(exported or model), "weights": None if exported else weights,
        "backend": getattr(classifier, "engine", backend), "threads": max(1, (os.cpu_count() or 1) // workers),
        "settings": dataclasses.asdict(settings)})
    uvicorn.run("mobiclass.serve.server:app_from_environment", factory=True, host=host, port=port,
                workers=workers, log_level=log_level)


def app_from_environment():
    """The app of one worker process, configured by the parent through the environment."""
    config = json.loads(os.environ[ENVIRONMENT_KEY])
    torch.set_num_threads(config["threads"])
    classifier = load_classifier(config["model"], config["weights"], progress=False, backend=config["backend"])
    return create_app(_serving_engine(classifier), ServeSettings(**config["settings"]))


def _serving_engine(classifier: Classifier) -> Classifier:
    """ONNX Runtime with sleeping (not spinning) threads: they share the cores with HTTP and decoding."""
    return OnnxClassifier(classifier.path, spinning=False) if isinstance(classifier, OnnxClassifier) else classifier
