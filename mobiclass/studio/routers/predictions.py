"""The Try page: the model cards, and classifying or explaining photos with a project's trained model through the
same path as the service's /v1/predict."""
from __future__ import annotations

import time

from pathlib import Path

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from ...errors import MobiclassError
from ...run_folder import provisional_note
from ...serve.explaining import MAX_EXPLAINED
from ...serve.schemas import ExplainOut, RejectedOut, errors
from ...serve.uploads import check_pixels, read_uploads
from .. import projects as ops
from ..db import Job, Project
from ..deps import StudioDep
from ..schemas import ModelCards, PredictOut, TargetList, TargetName
from .jobs import trained_job

router = APIRouter(tags=["models"], responses=errors(401, 403))
UPLOAD_BODY = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["files"], "properties": {
        "files": {"type": "array", "items": {"type": "string", "format": "binary"}}}}}}}}


@router.get("/models", response_model=ModelCards,
            summary="Architecture cards: size, latency measured here, expected accuracy; with target, the fit there")
def models(studio: StudioDep, target: TargetName | None = None,  # type: ignore[valid-type]
           image_size: int | None = Query(None, ge=32, le=1024), classes: int = Query(2, ge=2, le=10_000)):
    return studio.cards.cards(target, image_size, classes)


@router.get("/targets", response_model=TargetList, summary="The hardware catalogue: budgets, formats, recipes")
def targets():
    from ...export.toolchains import TOOLCHAINS
    from ...targets import TARGETS

    return {"targets": [{
        "name": t.name, "kind": t.kind, "description": t.description, "format": t.format,
        "precisions": list(t.precisions), "ram_kb": t.ram_kb, "flash_kb": t.flash_kb, "memory": t.memory_note,
        "recipe": {"model": t.recipes[0].model, "width_mult": t.recipes[0].width_mult,
                   "image_size": t.recipes[0].image_size},
        "toolchain": TOOLCHAINS[t.format].announcement() if t.format in TOOLCHAINS and
        not TOOLCHAINS[t.format].installed else None} for t in TARGETS.values()]}


@router.post("/projects/{project_id}/predict", response_model=PredictOut, response_model_exclude_none=True,
             openapi_extra=UPLOAD_BODY,
             responses={**errors(400, 404, 409, 413), 415: {"model": RejectedOut}, 422: {"model": RejectedOut}},
             summary="Classify photos with the project's trained model (the objects /v1/predict answers)")
async def predict(project_id: int, request: Request, studio: StudioDep,
                  job: int | None = Query(None, ge=1, le=2**63 - 1), top_k: int = Query(5, ge=1, le=1000),
                  min_confidence: float = Query(0.0, ge=0.0, le=1.0)):
    start = time.perf_counter()
    uploads = await read_uploads(request, studio.settings.uploads(max_images=32))
    source, run_dir, provisional = await run_in_threadpool(_trained_run, studio, project_id, job)
    classifying = await run_in_threadpool(studio.models.classifying_for, run_dir)
    results = await classifying.classify(uploads, top_k, min_confidence)
    return {"model": f"job {source}" + (" (provisional: the best model so far, still training)" if provisional else ""),
            "engine": classifying.classifier.engine.name,
            "latency_ms": round((time.perf_counter() - start) * 1000, 2), "results": results}


@router.post("/projects/{project_id}/explain", response_model=ExplainOut, response_model_exclude_none=True,
             openapi_extra=UPLOAD_BODY, responses={**errors(400, 404, 409, 413, 415), 422: {"model": ExplainOut}},
             summary="Where the trained model looked: a Grad-CAM heatmap per photo (as /v1/explain answers)")
async def explain(project_id: int, request: Request, studio: StudioDep,
                  job: int | None = Query(None, ge=1, le=2**63 - 1)):
    settings = studio.settings.uploads(max_images=MAX_EXPLAINED)
    uploads = await read_uploads(request, settings)
    check_pixels(uploads, settings)
    _, run_dir, _ = await run_in_threadpool(_trained_run, studio, project_id, job)
    explainer = await run_in_threadpool(studio.models.explainer_for, run_dir)
    results = await run_in_threadpool(explainer.explain, uploads, None, settings.max_pixels)
    return JSONResponse({"results": results}, status_code=422 if all("error" in r for r in results) else 200)


def _trained_run(studio, project_id: int, job: int | None) -> tuple[int, Path, bool]:
    """The model Try uses: the latest finished training's, else (before any training ended) the best model so far
    of the training running now, provisional."""
    with studio.sessions() as db:
        project = ops.get(db, Project, project_id)
        try:
            source = trained_job(db, project, job)
        except MobiclassError:
            running = None if job is not None else db.scalar(
                select(Job).where(Job.project_id == project.id, Job.kind == "train", Job.state == "running")
                .order_by(Job.id.desc()))
            run_dir = studio.settings.home / running.run_dir if running is not None and running.run_dir else None
            if run_dir is None or provisional_note(run_dir) is None or not (run_dir / "model.safetensors").is_file():
                raise
            return running.id, run_dir, True
        return source.id, studio.settings.home / source.run_dir, False
