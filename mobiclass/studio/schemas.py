"""The studio API's request and response bodies: pydantic models, so that /docs documents every body, FastAPI
refuses a malformed one with 422 before any handler runs, and every answer is checked on the way out."""
from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (AliasChoices, BaseModel, ConfigDict, Field, StrictBool, ValidationError, field_validator,
                      model_validator)
from pydantic_core import PydanticCustomError

from ..models.catalog import CATALOG
from ..targets.catalog import TARGETS
from ..serve.schemas import Result

EXPORT_FORMATS = ("onnx", "tflite", "ncnn", "rknn", "maixcam", "k210")
MODEL_CHOICES = f"an architecture of the catalogue ({', '.join(CATALOG)}) or the id of a finished training job of " \
                "this project"
ModelName = Literal[tuple(CATALOG)]  # type: ignore[valid-type]
TargetName = Literal[tuple(TARGETS)]  # type: ignore[valid-type]
Name = Annotated[str, Field(min_length=1, max_length=100,
                            description="1 to 100 characters, without slashes or control characters")]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NameIn(Body):
    name: Name


class ImageChange(Body):
    """Relabel a photo (which counts as reviewed), or mark it reviewed: kept as it is, whatever the doctor says."""

    label: Name | None = Field(None, alias="class", description="the class to move the photo to")
    reviewed: Literal[True] | None = Field(None, description="true: the doctor stops suspecting this photo")

    @model_validator(mode="after")
    def _says_what(self) -> ImageChange:
        if self.label is None and self.reviewed is None:
            raise ValueError("give the class to move the photo to, or reviewed: true")
        return self


class TrainIn(Body):
    """Training options, as ``mobiclass train`` takes them; those left out keep the default recipe. The data, run
    folder, weights file and device are the studio's to choose: no request names a file on the server."""

    model: ModelName | int | None = Field(  # type: ignore[valid-type]
        None, description="an architecture of the catalogue, or the id of one of the project's finished training "
                          "jobs to go on from its model")
    epochs: int | None = Field(None, ge=0, le=500)
    head_epochs: int | None = Field(None, ge=0, le=1000)
    image_size: int | None = Field(None, ge=32, le=1024)
    batch_size: int | None = Field(None, ge=1, le=512)
    lr: float | None = Field(None, gt=0, le=10)
    head_lr: float | None = Field(None, gt=0, le=10)
    augment: Literal["none", "light", "default", "strong"] | None = None
    unfreeze: str | None = Field(None, pattern=r"^(auto|all|none|\d{1,3})$")
    label_smoothing: float | None = Field(None, ge=0, lt=1)
    seed: int | None = Field(None, ge=0, le=2**31 - 1)
    width_mult: float | None = Field(None, gt=0, le=2)
    class_balance: Literal["auto", "weights", "sampler", "none"] | None = None
    calibrate: StrictBool | None = None
    early_stopping: int | None = Field(None, ge=0, le=100)
    feature_views: int | None = Field(None, ge=0, le=20)
    crop: float | None = Field(None, ge=0.5, le=1)
    dropout: float | None = Field(None, ge=0, lt=1)
    metric: Literal["accuracy", "macro_f1"] | None = None
    cache_images: StrictBool | None = Field(None, description="keep the decoded photos in memory (the default); false "
                                                              "decodes them again at each epoch, in a data-loading "
                                                              "process, for a machine short of memory")
    target: TargetName | None = Field(None, description="the hardware to train for (default: the project's); its "  # type: ignore[valid-type]
                                      "recipe fills in the options left out, and options that cannot fit it are "
                                      "refused")

    @field_validator("model", mode="wrap")
    @classmethod
    def _model_is_known(cls, value, handler):
        """One plain answer for anything else (a path, a name of nothing): the same whether or not it exists."""
        if isinstance(value, bool):
            value = "-"  # true and false are no model
        try:
            return handler(value)
        except ValidationError:
            raise PydanticCustomError("invalid_choice", "must be {choices}", {"choices": MODEL_CHOICES}) from None


class ExportIn(Body):
    target: TargetName | None = Field(None, description="deploy to this hardware: its format, its precisions tried "  # type: ignore[valid-type]
                                      "in order until one verifies (default, when no format is given: the "
                                      "project's target)")
    install_toolchain: StrictBool = Field(False, description="agree to install the board's toolchain on first use "
                                                             "(the answer 409 needs_toolchain says its size)")
    format: Literal[EXPORT_FORMATS] | None = None  # type: ignore[valid-type]
    int8: StrictBool | None = Field(None, description="default: int8 on boards (rknn, maixcam, k210), else float")
    half: StrictBool = False
    chip: Literal["rk3588", "rk3566", "rk3568"] = Field("rk3588", validation_alias=AliasChoices("chip", "device"),
                                                        description="the Rockchip chip of an rknn export (`device`: "
                                                                    "its older name)")
    job: int | None = Field(None, ge=1, le=2**63 - 1, description="the training job to export (default: the latest)")


class ClassOut(BaseModel):
    id: int
    name: str
    images: int


class CheckClass(BaseModel):
    name: str
    images: int
    val: int
    train: int


class CheckOut(BaseModel):
    classes: list[CheckClass]
    images: int
    imbalance: float
    ready: bool
    problems: list[str]
    warnings: list[str]


class JobOut(BaseModel):
    id: int
    project: int
    kind: Literal["train", "export", "doctor", "select"]
    state: Literal["queued", "running", "done", "failed", "cancelled"]
    options: dict[str, Any]
    progress: dict[str, Any]
    metrics: dict[str, Any]
    error: str | None
    cancel_requested: bool
    source_job: int | None
    created_at: str
    started_at: str | None
    finished_at: str | None
    download: str | None
    report: str | None


class JobStarted(JobOut):
    job: int


class ProjectIn(Body):
    """What to change: either may be left out, neither may be null."""

    name: Name = None  # type: ignore[assignment]
    target: TargetName = Field(None, description="the hardware this project's models are for")  # type: ignore[valid-type]


class ProjectOut(BaseModel):
    id: int
    name: str
    target: str
    created_at: str
    classes: list[ClassOut]
    images: int = Field(description="the photos with a class, which training uses")
    unlabelled: int = Field(description="the photos without a class, waiting to be labelled")
    jobs: dict[str, int] = Field(description="the number of jobs in each state")


class ProjectDetail(ProjectOut):
    check: CheckOut
    job_list: list[JobOut]
    model: JobOut | None = Field(description="the latest finished training job: the model Try it and Deploy use")


class ProjectList(BaseModel):
    projects: list[ProjectOut]


class ImageOut(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    id: int
    label: str | None = Field(alias="class", description="null: a photo waiting to be labelled")
    sha256: str
    width: int
    height: int
    source: str
    reviewed: bool = Field(description="kept as it is after the data doctor suspected it, or relabelled by hand")
    thumbnail: str
    file: str


class ImageList(BaseModel):
    images: list[ImageOut]


class FileProblem(BaseModel):
    file: str
    error: str


class Duplicate(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    file: str
    label: str | None = Field(alias="class", description="the class that holds the same photo already (null: the "
                                                          "project holds it without a class)")


class UploadOut(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    label: str | None = Field(alias="class", description="null: photos added without a class")
    added: int
    duplicates: list[Duplicate]
    errors: list[FileProblem]


class SelectIn(Body):
    """How many photos without a class to pick for labelling next."""

    count: int = Field(12, ge=1, le=200)


class ZipUploadOut(BaseModel):
    added: int
    classes: list[UploadOut]
    skipped: list[str] = Field(description="members outside class folders: READMEs, macOS metadata, ...")


class Mistake(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    true: str
    predicted: str
    confidence: float
    image: ImageOut | None


class ReportOut(BaseModel):
    accuracy: float
    macro_f1: float
    macro_precision: float
    macro_recall: float
    log_loss: float | None
    per_class: dict[str, dict[str, float]]
    classes: list[str]
    confusion_matrix: list[list[int]]
    count: int
    temperature: float | None
    split: str | None
    ece: float | None
    mistakes: list[Mistake]
    history: list[dict[str, Any]]
    job: int


class PredictOut(BaseModel):
    model: str
    engine: str
    latency_ms: float
    results: list[Result]


class TargetFit(BaseModel):
    target: str
    image_size: int
    fits: bool
    reason: str | None = None
    precision: str
    ram_kb: float
    flash_kb: float
    latency_ms: float | None
    latency_source: str
    ram_source: str


class TargetOut(BaseModel):
    name: str
    kind: str
    description: str
    format: str
    precisions: list[str]
    ram_kb: int
    flash_kb: int
    memory: str
    recipe: dict[str, Any] = Field(description="its best recipe: model, width_mult, image_size")
    toolchain: str | None = Field(description="what its first export installs, when it is not installed yet")


class TargetList(BaseModel):
    targets: list[TargetOut]


class ModelCard(BaseModel):
    name: str
    description: str
    resolution: int
    params: int
    macs: int
    size_mb: dict[str, float]
    ready: bool = Field(description="its pretrained weights are on this machine")
    choosable: bool = Field(description="it can be trained: its weights are here or download on first use")
    why_not: str | None = Field(description="why it is not ready, in words")
    latency_ms: float | None
    expected_accuracy: dict[str, float]
    fit: TargetFit | None = Field(description="with ?target=: whether it fits that hardware, and its costs there")


class ModelCards(BaseModel):
    models: list[ModelCard]
    accuracy_source: str
    accuracy_note: str
    latency_source: str
    measuring: bool


class PhoneLinkOut(BaseModel):
    """Where a phone adds photos: the capture page's link with the token, as a QR code to scan."""

    available: bool = Field(description="false when the studio listens on this machine only")
    url: str | None = None
    qr: str | None = Field(None, description="the link as a QR code (an SVG data URI)")
    why: str | None = Field(None, description="why no link, and what to do")
