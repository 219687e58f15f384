"""Grad-CAM: where in a photo the model found its answer.

captum's LayerGradCam weighs the activations of the model's last convolutional block (``cam_layer()``) by the
gradient of the explained class. The map covers the square the model saw (its centre crop), so it is drawn over
that part of the photo, and its peak is reported in the photo's own pixels.
"""
from __future__ import annotations

import copy
import io
import os
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Sequence

import numpy as np
from PIL import Image

from .data import load_image
from .errors import ImageError, UsageError
from .files import atomic_path
from .runtime import Classifier

OVERLAY_SIDE = 448  # the longest side of a written overlay: enough to see, small to store
CHUNK = 8  # images per backward pass: bounds memory on small machines


@dataclass(frozen=True)
class Explanation:
    """One image's Grad-CAM for class `index`: `heatmap` in [0, 1] over the crop `box` (left, top, right, bottom
    in the photo's pixels)."""

    index: int
    heatmap: np.ndarray
    box: tuple[float, float, float, float]

    @property
    def peak(self) -> tuple[int, int]:
        """The hottest point (x, y) in the photo's pixels."""
        row, column = np.unravel_index(int(np.argmax(self.heatmap)), self.heatmap.shape)
        left, top, right, _ = self.box
        scale = (right - left) / self.heatmap.shape[1]
        return int(left + (column + 0.5) * scale), int(top + (row + 0.5) * scale)

    def overlay(self, image: Image.Image, alpha: float = 0.45, side: int = OVERLAY_SIDE) -> Image.Image:
        """The crop the model saw with the heatmap blended over it (jet colours: red is where it looked)."""
        from matplotlib import colormaps

        left, top, right, bottom = self.box
        size = max(1, min(side, round(right - left)))
        view = image.convert("RGB").resize((size, size), Image.Resampling.BILINEAR, box=self.box)
        heat = Image.fromarray(np.uint8(self.heatmap * 255)).resize((size, size), Image.Resampling.BILINEAR)
        colours = colormaps["jet"](np.asarray(heat, dtype=np.float32) / 255.0)[..., :3]
        blended = (1 - alpha) * np.asarray(view, dtype=np.float32) / 255.0 + alpha * colours
        return Image.fromarray(np.uint8(np.clip(blended, 0, 1) * 255))


class GradCam:
    """Grad-CAM for a classifier that runs on PyTorch (a run folder or model name on the torch engine)."""

    def __init__(self, classifier: Classifier):
        import torch
        from captum.attr import LayerGradCam

        if classifier.engine.module is None:
            raise UsageError(f"explanations need the PyTorch model, and {classifier.source or classifier.name} runs "
                             f"on {classifier.engine.name}: give the run folder or model name instead of an "
                             f"exported file", code="no_torch_model")
        # A private float copy: in-place activations would overwrite the activations Grad-CAM reads.
        self.model = copy.deepcopy(classifier.engine.module).float().eval()
        for module in self.model.modules():
            if hasattr(module, "inplace"):
                module.inplace = False
        self.model.to(memory_format=torch.contiguous_format)
        self.classes = classifier.classes
        self.preprocessing = classifier.preprocessing
        self._cam = LayerGradCam(self.model, self.model.cam_layer())

    def explain(self, images: Sequence[Image.Image], targets: Sequence[int] | None = None) -> list[Explanation]:
        """One explanation per image, of class `targets[i]` (default: the class the model predicts)."""
        explanations = []
        for start in range(0, len(images), CHUNK):
            chunk = list(images[start:start + CHUNK])
            wanted = None if targets is None else list(targets[start:start + CHUNK])
            explanations += self._explain_chunk(chunk, wanted)
        return explanations

    def _explain_chunk(self, images: list[Image.Image], targets: list[int] | None) -> list[Explanation]:
        import torch
        from captum.attr import LayerAttribution

        batch = torch.from_numpy(np.stack([self.preprocessing(image) for image in images]))
        if targets is None:
            with torch.no_grad():
                targets = self.model(batch).argmax(1).tolist()
        if not all(0 <= t < len(self.classes) for t in targets):
            raise UsageError(f"a class to explain must be between 0 and {len(self.classes) - 1}")
        with torch.enable_grad():
            maps = self._cam.attribute(batch, target=list(targets), relu_attributions=True)
        size = self.preprocessing.size
        maps = LayerAttribution.interpolate(maps.detach(), (size, size), interpolate_mode="bilinear")[:, 0].numpy()
        return [Explanation(int(t), _unit(heat), self.preprocessing.crop_box(*image.size))
                for t, heat, image in zip(targets, maps, images)]


def _unit(heatmap: np.ndarray) -> np.ndarray:
    """Scaled to [0, 1]; an all-zero map (the class has no positive evidence) stays zero."""
    heatmap = np.maximum(heatmap, 0)
    top = float(heatmap.max())
    return heatmap / top if top > 0 else heatmap


def overlay_png(explanation: Explanation, image: Image.Image, side: int = OVERLAY_SIDE) -> bytes:
    buffer = io.BytesIO()
    explanation.overlay(image, side=side).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def explain_results(cam: GradCam, results: list[dict], out_dir: str | os.PathLike) -> list[dict]:
    """Write one overlay PNG per predicted image into `out_dir` (named after the photo) and add ``"explanation"``
    (the file) and ``"peak"`` ([x, y] in the photo's pixels) to each result; images that failed stay as they are.
    An "unsure" result is explained for its most likely class."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--explain {out} is a file; give a folder for the heatmaps")
    out.mkdir(parents=True, exist_ok=True)
    taken: set[str] = set()
    explained = list(results)
    usable = [i for i, r in enumerate(results) if "error" not in r]
    for start in range(0, len(usable), CHUNK):
        chunk = usable[start:start + CHUNK]
        images, kept = [], []
        for i in chunk:
            try:
                images.append(load_image(results[i]["path"]))
                kept.append(i)
            except ImageError:
                continue  # changed on disk since it was predicted: nothing to draw
        targets = [results[i]["top_k"][0]["index"] for i in kept]
        for i, image, explanation in zip(kept, images, cam.explain(images, targets)):
            name = _free_name(Path(results[i]["path"]).stem, taken)
            with atomic_path(out / name) as tmp:
                tmp.write_bytes(overlay_png(explanation, image))
            explained[i] = {**results[i], "explanation": str(out / name), "peak": list(explanation.peak)}
    return explained


def _free_name(stem: str, taken: set[str]) -> str:
    """`stem.gradcam.png`, or `stem-2.gradcam.png`, ... when two photos share a name."""
    name, n = f"{stem}.gradcam.png", 1
    while name in taken:
        n += 1
        name = f"{stem}-{n}.gradcam.png"
    taken.add(name)
    return name
