"""The studio's HTTP API (``/api/...``, documented at ``/docs``) and its page; the page calls this API only.

Every handler works through projects.py and jobs.py; no request names a file on the server: photos, reports and
downloads are found from database records.
"""
from __future__ import annotations

import asyncio
import hmac
import json
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
from fastapi import APIRouter, Body, Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from ..errors import ImageError, MobiclassError
from ..serve.app import ServeSettings, add_json_errors_and_docs, image_pixels, read_uploads
from ..serve.explaining import MAX_EXPLAINED, Explainer
from ..version import __version__
from . import jobs as job_ops
from . import projects as ops
from .cards import ModelCards
from .db import FINISHED, ImageRecord, Job, Label, Project
from .store import ImageStore, zip_members

PAGE_POLICY = ("default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob: mediastream:; "
               "style-src 'self'; script-src 'self'")
STATUS = {"not_found": 404, "exists": 409, "finished": 409, "not_ready": 409, "no_model": 409,
          "zip_too_big": 413}


@dataclass(frozen=True)
class StudioSettings:
    home: Path
    database_url: str
    token: str | None = None        # required on every API call when set (the studio binds beyond 127.0.0.1)
    max_upload_mb: float = 64.0      # one request: photos or a zip
    max_images: int = 200            # photos in one request
    max_pixels: int = 40_000_000     # one decoded photo
    max_zip_members: int = 5000
    max_zip_mb: float = 1024.0       # what a zip may unpack to

    def uploads(self, max_images: int | None = None) -> ServeSettings:
        return ServeSettings(max_upload_mb=self.max_upload_mb, max_images=max_images or self.max_images,
                             max_pixels=self.max_pixels)


def create_studio_app(settings: StudioSettings, sessions, queue) -> FastAPI:
    """The app over a session factory and a job queue (see server.py, which starts the worker beside it)."""
    store = ImageStore(settings.home / "images", settings.max_pixels)
    cards = ModelCards(settings.home)
    classifiers: dict[tuple, object] = {}
    app = FastAPI(title="mobiclass studio", version=__version__, docs_url=None, redoc_url=None,
                  description="Projects, photos, training, evaluation, export and prediction: everything the studio "
                              "page does. With a token, send it as `Authorization: Bearer TOKEN` (or `?token=`).")
    static = resources.files("mobiclass.studio") / "static"
    app.mount("/studio-static", StaticFiles(directory=str(static)), name="studio-static")
    page = (static / "studio.html").read_text(encoding="utf-8")
    add_json_errors_and_docs(app, "mobiclass studio API")

    @app.middleware("http")
    async def check_token(request: Request, call_next):
        path = request.url.path
        if settings.token and (path.startswith("/api/") or path in ("/docs", "/openapi.json")):
            given = request.headers.get("authorization", "").removeprefix("Bearer ").strip() or \
                request.query_params.get("token", "")
            if not hmac.compare_digest(given.encode(), settings.token.encode()):
                return JSONResponse({"error": "this studio needs its token: send 'Authorization: Bearer TOKEN' (the "
                                              "token was printed when the studio started)", "code": "token"}, 401)
        return await call_next(request)

    @app.exception_handler(MobiclassError)
    async def known_error(request: Request, exc: MobiclassError):
        status = STATUS.get(exc.code, 422)
        return JSONResponse({"error": str(exc), "code": exc.code}, status_code=status)

    def session():
        with sessions() as s:
            yield s

    api = APIRouter(prefix="/api")

    @api.get("/models", summary="Architecture cards: size, latency measured here, expected accuracy")
    def models():
        return cards.cards()

    @api.get("/projects", summary="Every project, with its classes and counts")
    def list_projects(db=Depends(session)):
        return {"projects": [ops.project_json(p) for p in db.scalars(select(Project).order_by(Project.id))]}

    @api.post("/projects", status_code=201, summary="Create a project")
    def create_project(body: dict = Body(..., examples=[{"name": "flowers"}]), db=Depends(session)):
        return ops.project_json(ops.create_project(db, body.get("name")), detail=True)

    @api.get("/projects/{project_id}", summary="One project: classes, dataset check, jobs, trained model")
    def get_project(project_id: int, db=Depends(session)):
        return ops.project_json(ops.get(db, Project, project_id), detail=True)

    @api.patch("/projects/{project_id}", summary="Rename a project")
    def rename_project(project_id: int, body: dict = Body(..., examples=[{"name": "flowers v2"}]),
                       db=Depends(session)):
        return ops.project_json(ops.rename_project(db, ops.get(db, Project, project_id), body.get("name")),
                                detail=True)

    @api.delete("/projects/{project_id}", status_code=204, summary="Delete a project, its photos, runs and exports")
    def delete_project(project_id: int, db=Depends(session)):
        project = ops.get(db, Project, project_id)
        for job in project.jobs:
            if job.state not in FINISHED:
                job_ops.cancel(db, job)
        _wait_for_workers(db, project)
        ops.delete_project(db, store, settings.home, project)
        return Response(status_code=204)

    @api.get("/projects/{project_id}/images", summary="The photos of a project (or of one class)")
    def list_images(project_id: int, label: str | None = Query(None, alias="class"), offset: int = Query(0, ge=0),
                    limit: int = Query(500, ge=1, le=5000), db=Depends(session)):
        project = ops.get(db, Project, project_id)
        query = select(ImageRecord).where(ImageRecord.project_id == project.id)
        if label is not None:
            query = query.join(Label).where(Label.name == label)
        rows = db.scalars(query.order_by(ImageRecord.id).offset(offset).limit(limit))
        return {"images": [ops.image_json(image) for image in rows]}

    @api.post("/projects/{project_id}/images", status_code=201, openapi_extra=_UPLOAD_BODY,
              summary="Add photos to a class (made if new): multipart `files` plus the field `label`")
    async def add_images(project_id: int, request: Request, label: str | None = Query(None)):
        fields: dict = {}
        uploads = await read_uploads(request, settings.uploads(), fields)
        label = fields.get("label") or label
        if not label:
            raise HTTPException(422, "say which class the photos are: the form field 'label'")

        def add():
            with sessions() as db:
                return ops.add_images(db, store, ops.get(db, Project, project_id), label, uploads)
        return await run_in_threadpool(add)

    @api.post("/projects/{project_id}/images:zip", status_code=201, openapi_extra=_ZIP_BODY,
              summary="Add a zip of class folders (daisy/001.jpg, ...): multipart `file`")
    async def add_zip(project_id: int, request: Request):
        data = (await read_uploads(request, settings.uploads(max_images=1)))[0][1]

        def add():
            members, skipped = zip_members(data, settings.max_zip_members, int(settings.max_zip_mb * 2**20))
            by_class: dict[str, list] = {}
            for label, name, content in members:
                by_class.setdefault(label, []).append((name, content))
            with sessions() as db:
                project = ops.get(db, Project, project_id)
                results = [ops.add_images(db, store, project, label, files) for label, files in by_class.items()]
            return {"added": sum(r["added"] for r in results), "classes": results, "skipped": skipped}
        return await run_in_threadpool(add)

    @api.post("/projects/{project_id}/classes", status_code=201, summary="Add an empty class")
    def add_class(project_id: int, body: dict = Body(..., examples=[{"name": "tulips"}]), db=Depends(session)):
        label = ops.label_named(db, ops.get(db, Project, project_id), body.get("name"))
        db.commit()
        return {"id": label.id, "name": label.name, "images": len(label.images)}

    @api.patch("/projects/{project_id}/classes/{class_id}",
               summary="Rename a class; the name of another class merges the two")
    def rename_class(project_id: int, class_id: int, body: dict = Body(..., examples=[{"name": "roses"}]),
                     db=Depends(session)):
        project = ops.get(db, Project, project_id)
        label = ops.rename_label(db, ops.get(db, Label, class_id, project), body.get("name"))
        return {"id": label.id, "name": label.name, "images": len(label.images)}

    @api.delete("/projects/{project_id}/classes/{class_id}", status_code=204, summary="Delete a class and its photos")
    def delete_class(project_id: int, class_id: int, db=Depends(session)):
        ops.delete_label(db, store, ops.get(db, Label, class_id, ops.get(db, Project, project_id)))
        return Response(status_code=204)

    @api.patch("/images/{image_id}", summary="Move a photo to another class (relabel)")
    def move_image(image_id: int, body: dict = Body(..., examples=[{"class": "roses"}]), db=Depends(session)):
        return ops.image_json(ops.move_image(db, ops.get(db, ImageRecord, image_id), body.get("class")))

    @api.delete("/images/{image_id}", status_code=204, summary="Delete a photo")
    def delete_image(image_id: int, db=Depends(session)):
        ops.delete_image(db, store, ops.get(db, ImageRecord, image_id))
        return Response(status_code=204)

    @api.get("/images/{image_id}/thumbnail", summary="A photo's thumbnail (JPEG, at most 192 px)")
    def thumbnail(image_id: int, db=Depends(session)):
        image = ops.get(db, ImageRecord, image_id)
        return FileResponse(store.thumbnail(image.sha256), media_type="image/jpeg",
                            headers={"Cache-Control": "private, max-age=86400"})

    @api.get("/images/{image_id}/file", summary="A photo as uploaded")
    def image_file(image_id: int, db=Depends(session)):
        image = ops.get(db, ImageRecord, image_id)
        return FileResponse(store.path(image.sha256, image.suffix), headers={"Cache-Control": "private"})

    @api.post("/projects/{project_id}/train", status_code=202, summary="Start training (a job)")
    def start_training(project_id: int, body: dict = Body(default={}, examples=[
            {"model": "efficientnet_lite0", "epochs": 8, "image_size": 224, "board": "laptop"}]),
            db=Depends(session)):
        project = ops.get(db, Project, project_id)
        options = job_ops.train_options(body)
        check = ops.dataset_check(project)
        if not check["ready"]:
            raise MobiclassError("the project is not ready to train: " + "; ".join(check["problems"]),
                                 code="not_ready")
        job = Job(project=project, kind="train", options=options, progress={"stage": "queued"})
        db.add(job)
        db.commit()
        queue.submit(job.id)
        return {"job": job.id, **ops.job_json(job)}

    @api.post("/projects/{project_id}/export", status_code=202,
              summary="Export the trained model, verified, as a downloadable zip (a job)")
    def start_export(project_id: int, body: dict = Body(default={}, examples=[{"format": "onnx", "int8": True}]),
                     db=Depends(session)):
        project = ops.get(db, Project, project_id)
        body = dict(body)
        source = _trained_job(db, project, body.pop("job", None))
        job = Job(project=project, kind="export", options=job_ops.export_options(body), source_job_id=source.id,
                  progress={"stage": "queued"})
        db.add(job)
        db.commit()
        queue.submit(job.id)
        return {"job": job.id, **ops.job_json(job)}

    @api.get("/jobs/{job_id}", summary="A job: state, progress, metrics, error")
    def get_job(job_id: int, db=Depends(session)):
        return ops.job_json(ops.get(db, Job, job_id))

    @api.post("/jobs/{job_id}/cancel", summary="Cancel a queued or running job")
    def cancel_job(job_id: int, db=Depends(session)):
        return ops.job_json(job_ops.cancel(db, ops.get(db, Job, job_id)))

    @api.get("/jobs/{job_id}/events", summary="The job's progress as Server-Sent Events, until it ends")
    async def job_events(job_id: int, request: Request):
        from sse_starlette.sse import EventSourceResponse

        def read():
            with sessions() as db:
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

    @api.get("/jobs/{job_id}/report", summary="A training job's evaluation: metrics, confusion, confident mistakes")
    def job_report(job_id: int, db=Depends(session)):
        job = ops.get(db, Job, job_id)
        report_file = settings.home / (job.run_dir or "-") / "evaluation" / "metrics.json"
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

    @api.get("/jobs/{job_id}/download", summary="An export job's zip bundle")
    def download(job_id: int, db=Depends(session)):
        job = ops.get(db, Job, job_id)
        if job.state != "done" or not job.artifact:
            raise MobiclassError(f"job {job_id} has nothing to download (it is a {job.state} {job.kind} job)",
                                 code="not_found")
        path = settings.home / job.artifact
        return FileResponse(path, media_type="application/zip", filename=f"{job.project.name}-{path.name}")

    @api.post("/projects/{project_id}/predict", openapi_extra=_UPLOAD_BODY,
              summary="Classify photos with the project's trained model (the objects /v1/predict answers)")
    async def predict(project_id: int, request: Request, job: int | None = Query(None),
                      top_k: int = Query(5, ge=1, le=1000)):
        start = time.perf_counter()
        uploads = await read_uploads(request, settings.uploads(max_images=32))
        if sum(image_pixels(data) for _, data in uploads) > 4 * settings.max_pixels:
            raise HTTPException(413, "the images of this request hold too many pixels")

        def classify():
            with sessions() as db:
                source = _trained_job(db, ops.get(db, Project, project_id), job)
                run_dir = settings.home / source.run_dir
            classifier = _classifier(classifiers, run_dir)
            prepared = [classifier.prepare(data, max_pixels=settings.max_pixels) for _, data in uploads]
            good = [i for i, item in enumerate(prepared) if isinstance(item, np.ndarray)]
            probabilities = classifier.predict_arrays(np.stack([prepared[i] for i in good])) if good else []
            found = dict(zip(good, probabilities))
            results = [{"path": name, "error": str(item)} if isinstance(item, ImageError) else
                       {"path": name, **classifier.ranked(found[i], top_k)}
                       for i, ((name, _), item) in enumerate(zip(uploads, prepared))]
            return classifier, source.id, results, bool(good)
        classifier, source_id, results, any_good = await run_in_threadpool(classify)
        body = {"model": f"job {source_id}", "engine": classifier.engine.name,
                "latency_ms": round((time.perf_counter() - start) * 1000, 2), "results": results}
        return JSONResponse(body, status_code=200 if any_good else 422)

    @api.post("/projects/{project_id}/explain", openapi_extra=_UPLOAD_BODY,
              summary="Where the trained model looked: a Grad-CAM heatmap per photo (as /v1/explain answers)")
    async def explain(project_id: int, request: Request, job: int | None = Query(None)):
        uploads = await read_uploads(request, settings.uploads(max_images=MAX_EXPLAINED))
        if sum(image_pixels(data) for _, data in uploads) > 4 * settings.max_pixels:
            raise HTTPException(413, "the images of this request hold too many pixels")

        def heatmaps():
            with sessions() as db:
                run_dir = settings.home / _trained_job(db, ops.get(db, Project, project_id), job).run_dir
            return _classifier(classifiers, run_dir, explainer=True).explain(uploads, None, settings.max_pixels)
        results = await run_in_threadpool(heatmaps)
        return JSONResponse({"results": results}, status_code=422 if all("error" in r for r in results) else 200)

    app.include_router(api)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index():
        return HTMLResponse(page, headers={"Content-Security-Policy": PAGE_POLICY})

    @app.get("/healthz", include_in_schema=False)
    async def healthz():
        return {"status": "ok"}

    return app


def _trained_job(db, project: Project, job_id: int | None) -> Job:
    """The training job whose model to use: `job_id`, else the project's latest finished one."""
    if job_id is not None:
        job = ops.get(db, Job, int(job_id), project)
        if job.kind != "train" or job.state != "done":
            raise MobiclassError(f"job {job_id} is no finished training job", code="no_model")
        return job
    job = db.scalar(select(Job).where(Job.project_id == project.id, Job.kind == "train", Job.state == "done")
                    .order_by(Job.id.desc()))
    if job is None:
        raise MobiclassError(f"project {project.name!r} has no trained model yet: train it first", code="no_model")
    return job


def _classifier(cache: dict, run_dir: Path, explainer: bool = False):
    """The run's classifier on the fastest engine here (or its Grad-CAM), loaded once per trained model."""
    from ..explain import GradCam
    from ..loading import load_classifier

    key = (str(run_dir), (run_dir / "model.safetensors").stat().st_mtime_ns, explainer)
    if key not in cache:
        if not any(k[:2] == key[:2] for k in cache):
            cache.clear()  # one model at a time in memory
        cache[key] = Explainer(lambda: GradCam(load_classifier(run_dir, engine="torch", progress=False))) \
            if explainer else load_classifier(run_dir, progress=False)
    return cache[key]


def _wait_for_workers(db, project: Project, timeout: float = 15.0) -> None:
    """Deleting a project whose job is running: let the worker stop it before its folder goes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        db.expire_all()
        if all(job.state in FINISHED for job in project.jobs):
            return
        time.sleep(0.2)


_FILES = {"type": "array", "items": {"type": "string", "format": "binary"}}
_UPLOAD_BODY = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["files"], "properties": {"files": _FILES, "label": {"type": "string"}}}}}}}
_ZIP_BODY = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["file"], "properties": {"file": {"type": "string", "format": "binary"}}}}}}}
