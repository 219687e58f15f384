"""Evaluation preprocessing: resize the shorter side, center crop, normalise; as stored with weights and runs."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# TensorFlow's MobileNets and EfficientNet-Lite scale pixels to about [-1, 1].
TF_MEAN = (0.5, 0.5, 0.5)
TF_STD = (0.5, 0.5, 0.5)
INTERPOLATIONS = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC,
                  "nearest": Image.Resampling.NEAREST, "lanczos": Image.Resampling.LANCZOS}


@dataclass(frozen=True)
class Preprocessing:
    """How pixels must be prepared for a model: `size` is the square crop, `resize` the shorter side before it."""

    size: int = 224
    resize: int = 256
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    interpolation: str = "bilinear"
    _scale: np.ndarray = field(init=False, repr=False, compare=False)
    _offset: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {sorted(INTERPOLATIONS)}, got {self.interpolation!r}")
        if not 0 < self.size <= self.resize:
            raise ValueError(f"need 0 < size <= resize, got size={self.size}, resize={self.resize}")
        std = np.asarray(self.std, dtype=np.float32)
        object.__setattr__(self, "_scale", (1.0 / (255.0 * std)).astype(np.float32))
        object.__setattr__(self, "_offset", (np.asarray(self.mean, dtype=np.float32) / std).astype(np.float32))

    @classmethod
    def for_size(cls, size: int, crop: float = 0.875, **kwargs) -> Preprocessing:
        """Resize the shorter side to size / crop and keep the middle `size` (ImageNet's usual crop is 0.875)."""
        return cls(size=size, resize=int(round(size / crop)), **kwargs)

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items() if not k.startswith("_")}

    @classmethod
    def from_dict(cls, data: dict) -> Preprocessing:
        return cls(size=int(data["size"]), resize=int(data["resize"]), mean=tuple(data["mean"]),
                   std=tuple(data["std"]), interpolation=data.get("interpolation", "bilinear"))

    def crop_box(self, width: int, height: int) -> tuple[float, float, float, float]:
        """The square (left, top, right, bottom) of a width x height image that the model sees."""
        crop = self.size * min(width, height) / self.resize
        left, top = (width - crop) / 2, (height - crop) / 2
        return left, top, left + crop, top + crop

    def crop(self, image: Image.Image) -> Image.Image:
        """Resize so the shorter side is `resize`, then take the central `size` square, in one resampling."""
        return image.resize((self.size, self.size), INTERPOLATIONS[self.interpolation],
                            box=self.crop_box(*image.size), reducing_gap=3.0)

    def normalize(self, image: Image.Image) -> np.ndarray:
        """RGB image -> float32 array (3, H, W) with the mean and std applied."""
        pixels = np.ascontiguousarray(np.asarray(image).transpose(2, 0, 1), dtype=np.float32)
        pixels *= self._scale[:, None, None]  # in place: half the time of the expression, the same values
        pixels -= self._offset[:, None, None]
        return pixels

    def scale_offset(self) -> tuple[np.ndarray, np.ndarray]:
        """Per channel, what `normalize` multiplies the bytes by and then subtracts (float32)."""
        return self._scale, self._offset

    def __call__(self, image: Image.Image) -> np.ndarray:
        return self.normalize(self.crop(image))
