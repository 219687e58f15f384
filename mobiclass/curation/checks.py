"""The data doctor's checks, each a free function over what was seen of the photos: suspected label errors
(out-of-fold probabilities fed to cleanlab), exact and near duplicates (and leaks across train and val), outliers,
and odd image files. None of them changes anything.

Measured on flowers-mini with EfficientNet-Lite0 embeddings (see benchmarks/doctor_flowers.py): a photo resized to
2/3 and re-encoded at JPEG quality 70 keeps a 64-bit difference hash within 2 bits of the original, while the
closest two distinct photos are 11 bits apart; the embeddings alone (cosine 0.79 to 0.96 for such copies, up to
0.89 between distinct photos) would confuse them, so the hash decides and a very close embedding adds what the hash
misses (the same scene photographed twice)."""
from __future__ import annotations

from collections import Counter

import numpy as np
from PIL import Image

from ..files import sha256_of

HASH_BITS_SAME = 6        # of 64: a resized, re-encoded copy of the same picture
EMBEDDING_SAME = 0.92     # cosine of mean-centred embeddings: the same scene
EMBEDDING_NEAR = 0.7      # ... and what a hash match needs too (on plain backgrounds, unlike objects hash alike)
OUTLIER_NEIGHBOURS = 5
TINY_SIDE, HUGE_PIXELS = 64, 40_000_000
FIT_BUDGET = 4000         # photos x fold draws for the label check's logistic regressions


def out_of_fold_probabilities(embeddings: np.ndarray, labels: np.ndarray, folds: int,
                              repeats: int | None = None) -> np.ndarray:
    """Each photo's class probabilities from logistic regressions that never saw it: stratified folds on the cached,
    mean-centred embeddings (seconds, not trainings), averaged over `repeats` different fold draws, which steadies
    the ranking (a nearest-neighbour vote added to it ranked the flips of benchmarks/doctor_flowers.py worse). By
    default as many draws as FIT_BUDGET photos allow, 3 to 10: on a few hundred photos, where one draw's luck moves
    a flip in or out of the top suspects, 10 draws cost about 10 s here."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    repeats = repeats or max(3, min(10, FIT_BUDGET // len(labels)))
    centred = embeddings - embeddings.mean(axis=0)
    centred /= np.maximum(np.linalg.norm(centred, axis=1, keepdims=True), 1e-12)
    splits = max(2, min(folds, min(Counter(labels.tolist()).values())))
    return np.mean([cross_val_predict(LogisticRegression(max_iter=3000, C=2.0), centred, labels, method="predict_proba",
                                      cv=StratifiedKFold(n_splits=splits, shuffle=True, random_state=seed))
                    for seed in range(repeats)], axis=0)


def label_issues(labels: np.ndarray, probabilities: np.ndarray) -> tuple[list[dict], list[dict]]:
    """(cleanlab's suspected label errors, every photo), both most suspect first: index, suggested class index,
    and a score in [0, 1] (1 - the out-of-fold probability of the given label: how unlikely that label looks)."""
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    quality = get_label_quality_scores(labels, probabilities, method="self_confidence")

    def issue(i) -> dict:
        return {"index": int(i), "suggested": int(probabilities[i].argmax()), "score": round(1 - float(quality[i]), 4)}
    flagged = find_label_issues(labels, probabilities, return_indices_ranked_by="self_confidence")
    return [issue(i) for i in flagged], [issue(i) for i in np.argsort(quality, kind="stable")]


def difference_hash(path: str, size: int = 8) -> np.ndarray:
    """64 bits: whether each pixel of a 9x8 grey thumbnail is brighter than its right neighbour."""
    with Image.open(path) as image:  # no draft decoding: its scale depends on the file's size, and copies differ
        grey = np.asarray(image.convert("L").resize((size + 1, size), Image.Resampling.LANCZOS), dtype=np.int16)
    return (grey[:, 1:] > grey[:, :-1]).ravel()


def duplicate_groups(paths: list[str], splits: list[str], embeddings: np.ndarray) -> list[dict]:
    """Groups of the same picture: identical files, resized or re-encoded copies (difference hash), or the same
    scene (embeddings); each group says its kind, whether it crosses train and val (a leak), and which of its
    photos are direct copies of each other (``pairs``, positions in ``paths``: a group may chain several)."""
    digests = [sha256_of(p) for p in paths]
    hashes = np.array([difference_hash(p) for p in paths])
    centred = embeddings - embeddings.mean(axis=0)
    centred /= np.maximum(np.linalg.norm(centred, axis=1, keepdims=True), 1e-12)
    parent = list(range(len(paths)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    pairs = set()
    for start in range(0, len(paths), 512):  # blocks of rows: memory stays bounded on large sets
        block = slice(start, start + 512)
        distance = (hashes[block, None, :] != hashes[None, :, :]).sum(axis=2)
        similar = centred[block] @ centred.T
        same = ((distance <= HASH_BITS_SAME) & (similar >= EMBEDDING_NEAR)) | (similar >= EMBEDDING_SAME)
        for i, j in zip(*np.nonzero(same)):
            i, j = int(i) + start, int(j)
            if i < j:
                pairs.add((i, j))
                parent[root(i)] = root(j)
    members: dict[int, list[int]] = {}
    for i in range(len(paths)):
        members.setdefault(root(i), []).append(i)
    groups = []
    for indices in (m for m in members.values() if len(m) > 1):
        kind = "exact" if len({digests[i] for i in indices}) == 1 else "near"
        in_splits = sorted({splits[i] for i in indices})
        local = {i: n for n, i in enumerate(indices)}
        groups.append({"paths": [paths[i] for i in indices], "splits": [splits[i] for i in indices], "kind": kind,
                       "leak": "train" in in_splits and len(in_splits) > 1,
                       "pairs": sorted([local[i], local[j]] for i, j in pairs if i in local)})
    return sorted(groups, key=lambda g: (not g["leak"], g["paths"][0]))


def outliers(embeddings: np.ndarray) -> list[dict]:
    """Photos unlike any other: mean cosine similarity to their 5 nearest photos, flagged under the low Tukey fence
    of the set (first quartile - 1.5 x interquartile range), least typical first."""
    if len(embeddings) <= OUTLIER_NEIGHBOURS:
        return []
    nearest = np.empty(len(embeddings))
    for start in range(0, len(embeddings), 512):
        similar = embeddings[start:start + 512] @ embeddings.T
        for row, i in enumerate(range(start, min(start + 512, len(embeddings)))):
            similar[row, i] = -1.0
        nearest[start:start + 512] = np.sort(similar, axis=1)[:, -OUTLIER_NEIGHBOURS:].mean(axis=1)
    first, third = np.quantile(nearest, [0.25, 0.75])
    fence = first - 1.5 * (third - first)
    return [{"index": int(i), "similarity": round(float(nearest[i]), 4), "fence": round(float(fence), 4)}
            for i in np.argsort(nearest) if nearest[i] < fence]


def image_problems(path: str) -> list[str]:
    """What is odd about one image file: tiny, huge, grey, an unusual mode, several frames."""
    problems = []
    with Image.open(path) as image:
        width, height = image.size
        if min(width, height) < TINY_SIDE:
            problems.append(f"tiny ({width}x{height}: under {TINY_SIDE} px a side)")
        if width * height > HUGE_PIXELS:
            problems.append(f"huge ({width}x{height}: {width * height / 1e6:.0f} megapixels)")
        if getattr(image, "n_frames", 1) > 1:
            problems.append(f"{image.n_frames} frames (only the first is used)")
        if image.mode in ("CMYK", "I", "I;16", "F"):
            problems.append(f"unusual colour mode {image.mode}")
        if image.mode in ("L", "LA", "1", "I", "I;16", "F"):
            problems.append("greyscale")
        elif image.mode in ("RGB", "RGBA", "P", "CMYK"):
            image.draft("RGB", (64, 64))
            small = np.asarray(image.convert("RGB").resize((32, 32)), dtype=np.int16)
            if np.abs(small - small.mean(axis=2, keepdims=True)).max() <= 3:
                problems.append("greyscale (colour file, grey content)")
    return problems
