"""Calibrated confidence: after training, one temperature is fitted on the held-out validation split and stored
with the model, so that a 90 % answer is right about 90 % of the time, in every engine and every exported file."""
from __future__ import annotations

import numpy as np

from ..data.dataset import Sample
from ..evaluate.metrics import calibration_bins, fit_temperature, summary_metrics
from ..run_folder import RunFolder
from ..runtime import Classifier
from ..runtime.classifier import softmax


def settle_model(run: RunFolder, samples: list[Sample], calibrate: bool, batch_size: int = 32) -> dict | None:
    """The end of training: the best model stops being provisional. With `calibrate`, its temperature is fitted on
    the validation split (the report returned), else set back to 1."""
    if not calibrate:
        run.save_model(run.load_weights().with_temperature(1.0), {**_kept(run.read_manifest()), "provisional": False})
        return None
    return calibrate_run(run, samples, batch_size)


def _kept(manifest: dict) -> dict:
    return {k: manifest[k] for k in ("training", "metrics", "best_epoch", "stage") if k in manifest}


def calibrate_run(run: RunFolder, samples: list[Sample], batch_size: int = 32) -> dict:
    """Fit the temperature of the best model on the validation split and store it with the model: the answers stay
    the same, the confidences become honest (label smoothing, for one, makes a model under-confident)."""
    best = run.load_weights()
    classifier = Classifier.from_weights(best)
    prepared = [classifier.prepare(sample.path) for sample in samples]
    usable = [i for i, item in enumerate(prepared) if isinstance(item, np.ndarray)]
    logits = np.concatenate([classifier.engine.run(np.stack([prepared[i] for i in usable[start:start + batch_size]]))
                             for start in range(0, len(usable), batch_size)])
    labels = np.array([samples[i].label for i in usable])
    temperature = fit_temperature(logits, labels)
    before, after = softmax(logits), softmax(logits, temperature)
    report = {"temperature": temperature, "fitted_on": f"val ({len(usable)} images)",
              "ece_before": calibration_bins(labels, before)["ece"],
              "ece_after": calibration_bins(labels, after)["ece"],
              "log_loss_before": summary_metrics(labels, before)["loss"],
              "log_loss_after": summary_metrics(labels, after)["loss"]}
    run.save_model(best.with_temperature(temperature),
                   {**_kept(run.read_manifest()), "provisional": False, "calibration": report})
    return report
