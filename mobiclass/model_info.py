"""A model's identity, written once: what to build (architecture, width, padding), what it answers (its classes),
how it is fed (preprocessing), how its confidence is scaled (temperature), where it comes from, and the hardware it
was trained for. :class:`~mobiclass.weights.Weights` and :class:`~mobiclass.runtime.Classifier` both hold one;
every exported file and the service carry its :meth:`ModelInfo.metadata`."""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .data.transforms import Preprocessing


@dataclass(frozen=True)
class ModelInfo:
    architecture: str
    classes: Sequence[str]  # kept as a tuple
    preprocessing: Preprocessing
    width_mult: float = 1.0
    padding: str = "torch"
    temperature: float = 1.0  # logits are divided by it before softmax: fitted after training (calibration)
    source: str = ""
    target: str | None = None  # the hardware a trained model's recipe was chosen for (train --target)

    def __post_init__(self) -> None:
        object.__setattr__(self, "classes", tuple(self.classes))  # a list given is kept as the tuple it freezes to

    def replace(self, **changes: Any) -> ModelInfo:
        return dataclasses.replace(self, **changes)

    def metadata(self) -> dict:
        """The JSON-ready record weights files, run folders and exported files carry."""
        return {"architecture": self.architecture, "width_mult": self.width_mult, "padding": self.padding,
                "preprocessing": self.preprocessing.to_dict(), "classes": list(self.classes), "source": self.source,
                "temperature": self.temperature, "target": self.target}

    @classmethod
    def from_metadata(cls, metadata: dict, source: str | None = None) -> ModelInfo:
        """The identity a file's metadata records (`source`, when given, says where it was read from)."""
        return cls(architecture=metadata["architecture"], classes=metadata["classes"],
                   preprocessing=Preprocessing.from_dict(metadata["preprocessing"]),
                   width_mult=metadata.get("width_mult", 1.0), padding=metadata.get("padding", "torch"),
                   temperature=float(metadata.get("temperature", 1.0)),
                   source=source if source is not None else metadata.get("source", ""),
                   target=metadata.get("target"))
