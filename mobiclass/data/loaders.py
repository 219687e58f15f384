"""Training augmentation and the torch Dataset behind the DataLoaders.

Randomness comes from a generator seeded by (seed, epoch, sample index), so an epoch's
augmentations do not depend on worker count or on whether the run was interrupted and resumed.
"""
from __future__ import annotations

import math
import random
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageEnhance

from ..errors import ImageError
from .dataset import Sample
from .images import load_image
from .transforms import INTERPOLATIONS, Preprocessing

PRELOAD_SCALE = 1.5          # decoded photos kept at 1.5x the training size: random crops keep their detail
PRELOAD_BYTES = 2 * 1024**3  # about 4,000 photos at 224 px


@dataclass(frozen=True)
class Augmentation:
    """Random resized crop, horizontal flip, colour jitter and (strong) rotation."""

    scale: tuple[float, float] = (0.25, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip: bool = True
    jitter: float = 0.2  # brightness, contrast and saturation factors drawn from [1 - j, 1 + j]
    rotate: float = 0.0  # degrees

    @classmethod
    def preset(cls, name: str) -> Augmentation | None:
        return {
            "none": None,
            "light": cls(scale=(0.5, 1.0), jitter=0.0),
            "default": cls(),
            "strong": cls(scale=(0.08, 1.0), jitter=0.4, rotate=15.0),
        }[name]

    def __call__(self, image: Image.Image, rng: random.Random, preprocessing: Preprocessing) -> np.ndarray:
        if self.rotate:
            image = image.rotate(rng.uniform(-self.rotate, self.rotate), Image.Resampling.BILINEAR,
                                 fillcolor=(128, 128, 128))
        box = self._crop_box(image.size, rng)
        size = preprocessing.size
        image = image.resize((size, size), INTERPOLATIONS[preprocessing.interpolation], box=box, reducing_gap=3.0)
        if self.flip and rng.random() < 0.5:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        if self.jitter:
            for enhance in rng.sample([ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color], 3):
                image = enhance(image).enhance(rng.uniform(1 - self.jitter, 1 + self.jitter))
        return preprocessing.normalize(image)

    def _crop_box(self, size: tuple[int, int], rng: random.Random) -> tuple[float, float, float, float]:
        width, height = size
        area = width * height
        for _ in range(10):
            target = area * rng.uniform(*self.scale)
            aspect = math.exp(rng.uniform(math.log(self.ratio[0]), math.log(self.ratio[1])))
            w, h = math.sqrt(target * aspect), math.sqrt(target / aspect)
            if w <= width and h <= height:
                left, top = rng.uniform(0, width - w), rng.uniform(0, height - h)
                return left, top, left + w, top + h
        side = min(width, height)  # fall back to the central square
        return (width - side) / 2, (height - side) / 2, (width + side) / 2, (height + side) / 2


class ImageDataset(torch.utils.data.Dataset):
    """Samples -> (image tensor, label). With an augmentation, set ``epoch`` before each epoch."""

    def __init__(self, samples: list[Sample], preprocessing: Preprocessing, augmentation: Augmentation | None = None,
                 seed: int = 0, view: int = 0):
        self.samples = samples
        self.preprocessing = preprocessing
        self.augmentation = augmentation
        self.seed = seed
        self.epoch = view
        self.decoded: list[Image.Image | None] | None = None

    def preload(self, max_bytes: int = PRELOAD_BYTES, threads: int = 2) -> bool:
        """Decode every photo once, reduced to 1.5x the training size, and keep it in memory: each epoch then
        crops and flips from there instead of decoding JPEGs again (which competes with the model for the cores
        of a small machine). Skipped, returning False, when the set would take more than `max_bytes`."""
        side = round(PRELOAD_SCALE * max(self.preprocessing.size, self.preprocessing.resize))
        if len(self.samples) * side * side * 3 * 4 // 3 > max_bytes:
            return False

        def decode(sample: Sample) -> Image.Image | None:
            try:
                image = load_image(sample.path, min_size=side)
            except ImageError:
                return None
            scale = side / min(image.size)
            if scale < 1:
                image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                                     Image.Resampling.BILINEAR, reducing_gap=3.0)
            return image
        with ThreadPoolExecutor(max(1, threads)) as pool:  # Pillow decodes without the GIL
            self.decoded = list(pool.map(decode, self.samples))
        return True

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        # A file that became unreadable after the scan must not crash an epoch: use the next one.
        for offset in range(len(self.samples)):
            position = (index + offset) % len(self.samples)
            sample = self.samples[position]
            try:
                image = self.decoded[position] if self.decoded is not None else \
                    load_image(sample.path, min_size=self.preprocessing.resize)
            except ImageError:
                continue
            if image is None:
                continue
            if self.augmentation is None:
                return torch.from_numpy(self.preprocessing(image)), sample.label
            rng = random.Random((self.seed * 1_000_003 + self.epoch) * 1_000_003 + index)
            return torch.from_numpy(self.augmentation(image, rng, self.preprocessing)), sample.label
        raise ImageError("no image of the dataset can be read any more")
