"""Training augmentation and the torch Dataset behind the DataLoaders.

Randomness comes from a generator seeded by (seed, epoch, sample index), so an epoch's
augmentations do not depend on worker count or on whether the run was interrupted and resumed.
"""
from __future__ import annotations

import contextlib
import math
import queue
import random
import threading
from collections.abc import Generator, Iterable
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

    def __call__(self, image: Image.Image, rng: random.Random, preprocessing: Preprocessing) -> Image.Image:
        """A random view of `image` at the training size."""
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
        return image

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
    """Samples -> (image tensor, label). With an augmentation, set ``epoch`` before each epoch. With `raw`, the
    tensor is the crop's bytes (height, width, RGB; uint8), which :func:`normalized` turns into the model's input
    for a whole batch at once: a quarter of the floats' bytes to collate and to move, and one tensor operation in
    place of one array operation per photo."""

    def __init__(self, samples: list[Sample], preprocessing: Preprocessing, augmentation: Augmentation | None = None,
                 seed: int = 0, view: int = 0, raw: bool = False):
        self.samples = samples
        self.preprocessing = preprocessing
        self.augmentation = augmentation
        self.seed = seed
        self.epoch = view
        self.raw = raw
        self.decoded: list[Image.Image | None] | None = None

    def preload(self, max_bytes: int = PRELOAD_BYTES, threads: int = 2) -> bool:
        """Decode every photo once and keep it in memory: each epoch then crops and flips from there instead of
        decoding JPEGs again (which competes with the model for the cores of a small machine). Kept reduced to
        1.5x the training size for random crops, or as the final center crop without augmentation. Skipped,
        returning False, when the set would take more than `max_bytes`."""
        size = self.preprocessing.size
        side = size if self.augmentation is None else round(PRELOAD_SCALE * max(size, self.preprocessing.resize))
        if len(self.samples) * side * side * 3 * 4 // 3 > max_bytes:
            return False

        def decode(sample: Sample) -> Image.Image | None:
            try:
                image = load_image(sample.path, min_size=self.preprocessing.resize if self.augmentation is None
                                   else side)
            except ImageError:
                return None
            if self.augmentation is None:
                return self.preprocessing.crop(image)
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
            if self.augmentation is not None:
                rng = random.Random((self.seed * 1_000_003 + self.epoch) * 1_000_003 + index)
                image = self.augmentation(image, rng, self.preprocessing)
            elif self.decoded is None:
                image = self.preprocessing.crop(image)  # a preloaded photo is kept cropped
            pixels = np.array(image) if self.raw else self.preprocessing.normalize(image)
            return torch.from_numpy(pixels), sample.label
        raise ImageError("no image of the dataset can be read any more")


def normalized(pixels: torch.Tensor, preprocessing: Preprocessing) -> torch.Tensor:
    """A batch of crops' bytes (N, H, W, RGB; uint8) -> the model's input (N, 3, H, W) in channels_last: the very
    memory order of the bytes, so no copy transposes it. The same values as :meth:`Preprocessing.normalize`."""
    images = pixels.permute(0, 3, 1, 2).float()  # keeps the strides: channels_last
    scale, offset = (torch.from_numpy(v).to(pixels.device).view(1, 3, 1, 1) for v in preprocessing.scale_offset())
    return images.mul_(scale).sub_(offset)


def prepared_ahead(batches: Iterable, depth: int = 1) -> Generator:
    """`batches`, each made on a thread while the one before it is used (Pillow lets go of the GIL while it crops).
    An error of the thread is raised here; closing the generator stops the thread."""
    ready: queue.Queue = queue.Queue(maxsize=depth)
    stop, done = threading.Event(), object()

    def offer(item: object) -> bool:
        while not stop.is_set():
            with contextlib.suppress(queue.Full):
                ready.put(item, timeout=0.1)
                return True
        return False

    def produce() -> None:
        try:
            for batch in batches:
                if not offer(batch):
                    return
            offer(done)
        except BaseException as exc:  # noqa: BLE001 -- raised again in the consuming thread
            offer(exc)

    thread = threading.Thread(target=produce, name="mobiclass-batches", daemon=True)
    thread.start()
    try:
        while (item := ready.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()
