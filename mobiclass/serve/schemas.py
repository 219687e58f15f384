"""The bodies the service answers (and the studio's Try page answers the same): documented in OpenAPI, checked by
FastAPI on the way out, fuzzed by the test suite (schemathesis)."""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class ErrorOut(BaseModel):
    """Every error: a message fit for a person, and for known situations a `code` to act on."""

    error: str
    code: str | None = None


class Ranked(BaseModel):
    label: str
    index: int
    confidence: float


class Result(BaseModel):
    """One image: its classes (top first), ``unsure`` under the asked minimum confidence, or its error."""

    model_config = ConfigDict(extra="forbid")
    path: str
    label: str | None = None
    index: int | None = None
    confidence: float | None = None
    top_k: list[Ranked] | None = None
    unsure: bool | None = None
    error: str | None = None


class PredictOut(BaseModel):
    model: str
    latency_ms: float
    results: list[Result]
    engine: str | None = None


class RejectedOut(ErrorOut):
    """No image of the request could be used; each one's reason is in `results`."""

    results: list[Result]


class Explained(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str
    label: str | None = None
    index: int | None = None
    peak: list[int] | None = Field(None, description="[x, y] of the hottest point, in the photo's pixels")
    heatmap: str | None = Field(None, description="a PNG data URL: the crop the model saw, the map drawn over it")
    error: str | None = None


class ExplainOut(BaseModel):
    results: list[Explained]
    model: str | None = None
    latency_ms: float | None = None
    error: str | None = None


class Limits(BaseModel):
    max_upload_bytes: int
    max_images: int
    max_pixels: int
    max_request_pixels: int


class ModelOut(BaseModel):
    name: str
    title: str
    architecture: str
    width_mult: float
    padding: str
    num_classes: int
    classes: list[str]
    preprocessing: dict[str, Any]
    source: str
    temperature: float
    engine: str
    explain: bool
    version: str
    top_k: int
    batching: dict[str, float]
    limits: Limits


class Health(BaseModel):
    status: str


def errors(*statuses: int) -> dict:
    """The `responses` of a route for these error statuses, each with the error object."""
    return {status: {"model": ErrorOut} for status in statuses}
