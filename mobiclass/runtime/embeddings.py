"""What the data checks and the photo picker see of each photo: its backbone embedding (cached on disk with the
training features, so a second look costs seconds) and, with a trained model, its calibrated class probabilities.

Photos stream through a DataLoader in batches: a folder larger than memory is fine, only the embeddings stay."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..data.dataset import Sample
from ..progress import ProgressReport
from .classifier import Classifier
from .sources import load_torch_classifier

DEFAULT_BACKBONE = "efficientnet_lite0"  # ImageNet weights installed offline with mobiclass


@dataclass(frozen=True)
class Seen:
    """Per photo: the unit-length embedding, and the model's probabilities (None for an ImageNet backbone)."""

    embeddings: np.ndarray
    probabilities: np.ndarray | None


def backbone(model: str | None) -> Classifier:
    """A trained run folder (its fine-tuned backbone, its classes) or a catalogue name (ImageNet weights)."""
    return load_torch_classifier(model or DEFAULT_BACKBONE, progress=False)


def look_at(classifier: Classifier, paths: list[str], with_classes: bool, workers: int = 2,
            progress: bool = False, what: str = "looking at the photos") -> Seen:
    """Embeddings of `paths` (readable images: scan them first) and, when `with_classes`, the calibrated
    probabilities of the classifier's own classes."""
    import torch

    from ..data.features import extract_features

    samples = [Sample(path, -1) for path in paths]
    with ProgressReport(what, len(samples), enabled=progress) as advance:
        features, _ = extract_features(classifier.module, samples, classifier.preprocessing, workers=workers,
                                       on_batch=advance)
    probabilities = None
    if with_classes:
        with torch.inference_mode():
            logits = classifier.module.forward_head(features).float()
        probabilities = torch.softmax(logits / classifier.temperature, dim=1).numpy()
    embeddings = features.numpy().astype(np.float32)
    embeddings /= np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)
    return Seen(embeddings, probabilities)
