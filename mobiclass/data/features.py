"""Backbone features computed once and cached: transfer learning then trains only the head, in seconds.

The cache key covers the backbone's weights, the preprocessing, the augmentation, the seed and
every file (path, size, modification time), so a changed file or model never reuses stale features.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
from typing import Protocol

import torch
from safetensors.torch import load_file, save_file

from ..files import atomic_path, cache_home
from .dataset import Sample
from .loaders import Augmentation, ImageDataset, normalized, prepared_ahead
from .transforms import Preprocessing


class FeatureSource(Protocol):
    """What :func:`extract_features` computes and caches the answers of: a backbone's pooled features, or a
    teacher's answers for the very views whose features the student's head learns from (train/distill.py)."""

    def eval(self) -> object: ...

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        """The answers to cache for a batch of preprocessed images."""

    def feature_key(self) -> str:
        """A name for the weights behind the answers: a change of weights is a change of cache key."""


def extract_features(model: FeatureSource, samples: list[Sample], preprocessing: Preprocessing,
                     augmentation: Augmentation | None = None, views: int = 1, seed: int = 0, batch_size: int = 64,
                     workers: int = 0, device: str = "cpu", on_batch=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Pooled features of each sample for `views` passes: view 0 is the center crop, later views augmented.

    Returns (features [views * N, F], labels [views * N]); results are cached on disk.
    """
    key = _cache_key(model, samples, preprocessing, augmentation, views, seed)
    path = cache_home() / "features" / f"{key}.safetensors"
    if path.exists():
        cached = load_file(str(path))
        return cached["features"], cached["labels"]
    model.eval()
    features, labels = [], []
    # On a CPU the photos are cut on a thread while the model runs: worker processes would take its cores, and
    # forking a process that keeps its freed memory (a training process) copies pages (7.4-7.9 s against 4.7-4.9 s
    # for flowers-mini's 350 photos here).
    workers = 0 if torch.device(device).type == "cpu" else workers
    for view in range(views):
        dataset = ImageDataset(samples, preprocessing, augmentation if view else None, seed=seed, view=view, raw=True)
        loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, num_workers=workers,
                                             generator=torch.Generator())  # leaves the global RNG alone
        ahead = contextlib.closing(prepared_ahead(loader)) if workers == 0 else contextlib.nullcontext(loader)
        with torch.inference_mode(), ahead as batches:
            for pixels, targets in batches:
                features.append(model.forward_features(normalized(pixels.to(device), preprocessing)).float().cpu())
                labels.append(targets)
                if on_batch:
                    on_batch(len(targets))
    result = {"features": torch.cat(features), "labels": torch.cat(labels)}
    with atomic_path(path) as tmp:
        save_file(result, str(tmp))
    return result["features"], result["labels"]


def _cache_key(model, samples, preprocessing, augmentation, views, seed) -> str:
    files = []
    for sample in samples:
        try:
            stat = os.stat(sample.path)
            files.append([sample.path, sample.label, stat.st_size, stat.st_mtime_ns])
        except OSError:
            files.append([sample.path, sample.label, None, None])
    description = json.dumps({"model": type(model).__name__, "backbone": model.feature_key(),
                              "preprocessing": preprocessing.to_dict(), "augmentation": repr(augmentation),
                              "views": views, "seed": seed, "files": files}, sort_keys=True)
    return hashlib.sha1(description.encode()).hexdigest()[:24]


