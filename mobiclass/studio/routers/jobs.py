"""Jobs: start training or an export, follow a job (record or live events), cancel it, read a training job's
evaluation, download an export's bundle."""
from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Body, Request
from fastapi.responses import FileResponse
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from ...errors import MobiclassError, UsageError
from ...serve.schemas import errors
from .. import jobs as job_ops
from .. import projects as ops
from ..db import FINISHED, ImageRecord, Job, Project
from ..deps import SessionDep, StudioDep
from ..schemas import ExportIn, JobOut, JobStarted, ReportOut, SelectIn, TrainIn

router = APIRouter(tags=["jobs"], responses=errors(401, 403))
TRAIN_EXAMPLE = {"model": "efficientnet_lite0", "epochs": 8, "image_size": 224, "target": "laptop"}
DEFAULT_TRAINING, DEFAULT_EXPORT = TrainIn(), ExportIn()  # no body: the project target's recipe and bundle


@router.post("/projects/{project_id}/train", status_code=202, response_model=JobStarted,
             responses=errors(404, 409, 422, 507), summary="Start training (a job)")
def start_training(project_id: int, db: SessionDep,
                   body: Annotated[TrainIn, Body(examples=[TRAIN_EXAMPLE])] = DEFAULT_TRAINING):
    project = ops.get(db, Project, project_id)
    options = job_ops.train_options(body, project.target, len(project.labels))
    if isinstance(body.model, int):
        source = db.get(Job, body.model) if body.model <= ops.MAX_ID else None
        if source is None or source.project_id != project.id or source.kind != "train" or source.state != "done":
            raise UsageError("model must be an architecture of the catalogue or the id of a finished training job "
                             "of this project", code="bad_option")
    check = ops.dataset_check(project)
    if not check["ready"]:
        raise MobiclassError("the project is not ready to train: " + "; ".join(check["problems"]), code="not_ready")
    return _queued(db, Job(project=project, kind="train", options=options, progress={"stage": "queued"}))


@router.post("/projects/{project_id}/doctor", status_code=202, response_model=JobStarted,
             responses=errors(404, 409), summary="Check the project's photos (a job): suspected label errors, "
                                                 "duplicates and leaks between train and val, outliers, odd files")
def start_doctor(project_id: int, db: SessionDep):
    project = ops.get(db, Project, project_id)
    check = ops.dataset_check(project)
    if not check["ready"]:
        raise MobiclassError("the photos can be checked once training could start: " + "; ".join(check["problems"]),
                             code="not_ready")
    return _queued(db, Job(project=project, kind="doctor", options={}, progress={"stage": "queued"}))


@router.post("/projects/{project_id}/select", status_code=202, response_model=JobStarted,
             responses=errors(404, 409, 422), summary="Pick the photos without a class worth labelling next (a job): "
                                                      "those the latest model is least sure of, spread over the pool; "
                                                      "before any model, the most typical ones")
def start_select(project_id: int, db: SessionDep, body: SelectIn = SelectIn()):
    project = ops.get(db, Project, project_id)
    if not ops.unlabelled_count(project):
        raise MobiclassError("the project has no photos without a class: add some with \"Add photos without a "
                             "class\" first", code="not_ready")
    model = db.scalar(select(Job.id).where(Job.project_id == project.id, Job.kind == "train", Job.state == "done")
                      .order_by(Job.id.desc()))
    return _queued(db, Job(project=project, kind="select", options={"count": body.count, "model": model},
                           progress={"stage": "queued"}))


@router.post("/projects/{project_id}/export", status_code=202, response_model=JobStarted,
             responses=errors(404, 409, 422, 507),
             summary="Export the trained model, verified, as a downloadable zip (a job)")
def start_export(project_id: int, db: SessionDep,
                 body: Annotated[ExportIn, Body(examples=[{"target": "raspberry-pi"},
                                                          {"format": "onnx", "int8": True}])]
                 = DEFAULT_EXPORT):
    project = ops.get(db, Project, project_id)
    source = trained_job(db, project, body.job)
    return _queued(db, Job(project=project, kind="export", options=job_ops.export_options(body, project.target),
                           source_job_id=source.id, progress={"stage": "queued"}))


@router.get("/jobs/{job_id}", response_model=JobOut, responses=errors(404),
            summary="A job: state, progress, metrics, error")
def get_job(job_id: int, db: SessionDep):
    return ops.job_json(ops.get(db, Job, job_id))


@router.post("/jobs/{job_id}/cancel", response_model=JobOut, responses=errors(404, 409),
             summary="Cancel a queued or running job")
def cancel_job(job_id: int, db: SessionDep):
    return ops.job_json(job_ops.cancel(db, ops.get(db, Job, job_id)))


@router.get("/jobs/{job_id}/events", responses={**errors(404), 200: {"content": {"text/event-stream": {}}}},
            summary="The job's progress as Server-Sent Events (`job` events: the job's record), until it ends")
async def job_events(job_id: int, request: Request, studio: StudioDep):
    from sse_starlette.sse import EventSourceResponse

    def read():
        with studio.sessions() as db:
            return ops.job_json(ops.get(db, Job, job_id))
    first = await run_in_threadpool(read)  # a 404 before the stream starts

    async def events():
        last, job = None, first
        while True:
            text = json.dumps(job)
            if text != last:
                last = text
                yield {"event": "job", "data": text}
            if job["state"] in FINISHED or await request.is_disconnected():
                return
            await asyncio.sleep(0.4)
            job = await run_in_threadpool(read)
    return EventSourceResponse(events(), ping=15)


@router.get("/jobs/{job_id}/report", response_model=ReportOut, responses=errors(404),
            summary="A training job's evaluation: metrics, confusion, confident mistakes")
def job_report(job_id: int, db: SessionDep, studio: StudioDep):
    job = ops.get(db, Job, job_id)
    report_file = studio.settings.home / (job.run_dir or "-") / "evaluation" / "metrics.json"
    if job.kind != "train" or job.state != "done" or not report_file.is_file():
        raise MobiclassError(f"job {job_id} has no evaluation report (it is a {job.state} {job.kind} job)",
                             code="not_found")
    report = json.loads(report_file.read_text(encoding="utf-8"))
    images = {image.sha256: image for image in db.scalars(select(ImageRecord).where(
        ImageRecord.project_id == job.project_id))}
    mistakes = []
    for mistake in report["mistakes"]:
        image = images.get(Path(mistake["path"]).stem)
        mistakes.append({**{k: mistake[k] for k in ("true", "predicted", "confidence")},
                         "image": ops.image_json(image) if image else None})
    keys = ("accuracy", "macro_f1", "macro_precision", "macro_recall", "log_loss", "per_class", "classes",
            "confusion_matrix", "count", "temperature", "split")
    return {**{k: report.get(k) for k in keys}, "ece": report["calibration"]["ece"], "mistakes": mistakes,
            "history": job.progress.get("history", []), "job": job.id}


@router.get("/jobs/{job_id}/download", response_class=FileResponse, responses=errors(404),
            summary="An export job's zip bundle")
def download(job_id: int, db: SessionDep, studio: StudioDep):
    job = ops.get(db, Job, job_id)
    path = studio.settings.home / job.artifact if job.artifact else None
    if job.state != "done" or path is None or not path.is_file():
        raise MobiclassError(f"job {job_id} has nothing to download (it is a {job.state} {job.kind} job)",
                             code="not_found")
    return FileResponse(path, media_type="application/zip", filename=f"{job.project.name}-{path.name}")


def trained_job(db, project: Project, job_id: int | None) -> Job:
    """The training job whose model to use: `job_id`, else the project's latest finished one."""
    if job_id is not None:
        job = ops.get(db, Job, job_id, project)
        if job.kind != "train" or job.state != "done":
            raise MobiclassError(f"job {job_id} is no finished training job", code="no_model")
        return job
    job = db.scalar(select(Job).where(Job.project_id == project.id, Job.kind == "train", Job.state == "done")
                    .order_by(Job.id.desc()))
    if job is None:
        raise MobiclassError(f"project {project.name!r} has no trained model yet: train it first", code="no_model")
    return job


def _queued(db, job: Job) -> dict:
    """Queue `job`: the worker claims it from the database (the queue is the records)."""
    db.add(job)
    db.commit()
    return {"job": job.id, **ops.job_json(job)}
