"""``mobiclass select``: which photos of an unlabelled pool are worth labelling next (active learning).

``uncertainty``: margin sampling, the photos whose two likeliest classes are closest (Scheffer et al., 2001).
``diverse`` (default): the same uncertainty, spread over the pool: the 5 x N least certain photos are clustered
into N groups by their embeddings (k-means) and the least certain photo of each group is picked, so that N picks are
not N near-copies of one confusing scene."""
from __future__ import annotations

import os

import numpy as np

from ..data.dataset import scan_unlabeled
from ..errors import UsageError
from ..files import write_csv
from ..run_folder import is_run_folder
from ..runtime.embeddings import backbone, look_at

STRATEGIES = ("diverse", "uncertainty")
CANDIDATES_PER_PICK = 5


def select(model: str | os.PathLike, pool: str | os.PathLike, count: int, strategy: str = "diverse",
           out: str | os.PathLike | None = None, workers: int = 2, progress: bool = False, seed: int = 0) -> list[dict]:
    """The `count` photos of `pool` to label next with the trained `model` (a run folder), best first: path,
    margin, the model's guess and its confidence. Written to `out` (CSV, path first) when given."""
    if strategy not in STRATEGIES:
        raise UsageError(f"strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    if count < 1:
        raise UsageError(f"count must be at least 1, got {count}")
    if not is_run_folder(model):
        raise UsageError(f"{model} is no trained model: select needs a run folder (what mobiclass train wrote), whose "
                         f"classes it asks about", code="needs_run_folder")
    paths, _ = scan_unlabeled(pool, workers)
    classifier = backbone(str(model))
    seen = look_at(classifier, paths, with_classes=True, workers=workers, progress=progress,
                   what="select: looking at the pool")
    ranked = np.sort(seen.probabilities, axis=1)
    margins = ranked[:, -1] - ranked[:, -2]
    order = np.argsort(margins, kind="stable")
    if strategy == "diverse" and count < len(paths):
        order = _spread(order[:CANDIDATES_PER_PICK * count], seen.embeddings, margins, count, seed)
    picks = [{"path": paths[i], "margin": round(float(margins[i]), 4),
              "guess": classifier.classes[int(seen.probabilities[i].argmax())],
              "confidence": round(float(seen.probabilities[i].max()), 4)} for i in order[:count]]
    if out is not None:
        write_csv(out, ["path", "margin", "guess", "confidence"],
                  [[p["path"], p["margin"], p["guess"], p["confidence"]] for p in picks])
    return picks


def _spread(candidates: np.ndarray, embeddings: np.ndarray, margins: np.ndarray, count: int, seed: int) -> np.ndarray:
    """The least certain candidate of each of `count` k-means clusters, least certain first."""
    from sklearn.cluster import KMeans

    clusters = KMeans(n_clusters=min(count, len(candidates)), n_init=4, random_state=seed).fit_predict(
        embeddings[candidates])
    chosen = [min(candidates[clusters == c], key=lambda i: margins[i]) for c in np.unique(clusters)]
    return np.array(sorted(chosen, key=lambda i: margins[i]))
