"""Photos: uploads (files to a class or without one, or a zip of class folders, all or nothing), listing, labelling,
deleting, and their files and thumbnails."""
from __future__ import annotations

from fastapi import APIRouter, HTTPException, Query, Request, Response
from fastapi.responses import FileResponse
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from ...errors import MobiclassError
from ...serve.schemas import errors
from ...serve.uploads import read_uploads
from .. import projects as ops
from ..archive import read_class_zip
from ..db import ImageRecord, Label, Project
from ..deps import SessionDep, StudioDep
from ..schemas import ImageChange, ImageList, ImageOut, PhoneLinkOut, UploadOut, ZipUploadOut

router = APIRouter(tags=["photos"], responses=errors(401, 403))
UPLOAD_ERRORS = errors(400, 404, 413, 415, 422, 507)
LOOPBACK_ONLY = ("a phone cannot reach this studio: it listens on this machine only. Start it for your network with "
                 "`mobiclass studio --host 0.0.0.0` (it then asks for a token, which the QR code carries)")


@router.get("/projects/{project_id}/images", response_model=ImageList, responses=errors(404),
            summary="The photos of a project (or of one class, or those without a class)")
def list_images(project_id: int, db: SessionDep, label: str | None = Query(None, alias="class", max_length=100),
                unlabelled: bool = Query(False, description="only the photos without a class"),
                offset: int = Query(0, ge=0, le=2**31), limit: int = Query(500, ge=1, le=5000)):
    project = ops.get(db, Project, project_id)
    query = select(ImageRecord).where(ImageRecord.project_id == project.id)
    if label is not None:
        query = query.join(Label).where(Label.name == label)
    if unlabelled:
        query = query.where(ImageRecord.label_id.is_(None))
    rows = db.scalars(query.order_by(ImageRecord.id).offset(offset).limit(limit))
    return {"images": [ops.image_json(image) for image in rows]}


@router.post("/projects/{project_id}/images", status_code=201, response_model=UploadOut, responses=UPLOAD_ERRORS,
             openapi_extra={"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
                 "type": "object", "required": ["files", "label"], "properties": {
                     "files": {"type": "array", "items": {"type": "string", "format": "binary"}},
                     "label": {"type": "string", "minLength": 1, "maxLength": 100}}}}}}},
             summary="Add photos to a class (made if new): multipart `files` plus the field `label`")
async def add_images(project_id: int, request: Request, studio: StudioDep,
                     label: str | None = Query(None, max_length=100)):
    fields: dict = {}
    uploads = await read_uploads(request, studio.settings.uploads(), fields)
    label = fields.get("label") or label
    if not label:
        raise HTTPException(422, "say which class the photos are: the form field 'label'")

    def add():
        with studio.sessions() as db:
            return ops.add_images(db, studio.store, ops.get(db, Project, project_id),
                                  [ops.Upload(label, name, data) for name, data in uploads])[0]
    return await run_in_threadpool(add)


@router.post("/projects/{project_id}/images:unlabelled", status_code=201, response_model=UploadOut,
             responses=UPLOAD_ERRORS,
             openapi_extra={"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
                 "type": "object", "required": ["files"], "properties": {
                     "files": {"type": "array", "items": {"type": "string", "format": "binary"}}}}}}}},
             summary="Add photos without a class, to label later (\"label these next\" picks from them): multipart "
                     "`files`")
async def add_unlabelled(project_id: int, request: Request, studio: StudioDep):
    uploads = await read_uploads(request, studio.settings.uploads())

    def add():
        with studio.sessions() as db:
            return ops.add_images(db, studio.store, ops.get(db, Project, project_id),
                                  [ops.Upload(None, name, data) for name, data in uploads])[0]
    return await run_in_threadpool(add)


@router.post("/projects/{project_id}/images:zip", status_code=201, response_model=ZipUploadOut,
             responses=UPLOAD_ERRORS,
             openapi_extra={"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
                 "type": "object", "required": ["file"], "properties": {
                     "file": {"type": "string", "format": "binary"}}}}}}},
             summary="Add a zip of class folders (daisy/001.jpg, ...): multipart `file`; all or nothing")
async def add_zip(project_id: int, request: Request, studio: StudioDep):
    data = (await read_uploads(request, studio.settings.uploads(max_images=1)))[0][1]

    def add():
        with studio.sessions() as db:
            project = ops.get(db, Project, project_id)  # a 404 before unpacking anything
            with studio.store.staging() as stage:
                members, skipped = read_class_zip(data, studio.settings.zip_limits(), stage)
                results = ops.add_images(db, studio.store, project, [
                    ops.Upload(m.label, m.name, m.file, m.error) for m in members])
        return {"added": sum(r["added"] for r in results), "classes": results, "skipped": skipped}
    return await run_in_threadpool(add)


@router.patch("/images/{image_id}", response_model=ImageOut, responses=errors(404, 422),
              summary="Move a photo to a class (relabel, or label a photo without one), or keep it as it is after "
                      "review")
def change_image(image_id: int, body: ImageChange, db: SessionDep):
    image = ops.get(db, ImageRecord, image_id)
    if body.label is not None:
        return ops.image_json(ops.move_image(db, image, body.label))
    return ops.image_json(ops.mark_reviewed(db, image))


@router.delete("/images/{image_id}", status_code=204, responses=errors(404), summary="Delete a photo")
def delete_image(image_id: int, db: SessionDep, studio: StudioDep):
    ops.delete_image(db, studio.store, ops.get(db, ImageRecord, image_id))
    return Response(status_code=204)


@router.get("/images/{image_id}/thumbnail", response_class=FileResponse, responses=errors(404),
            summary="A photo's thumbnail (JPEG, at most 192 px)")
def thumbnail(image_id: int, db: SessionDep, studio: StudioDep):
    image = ops.get(db, ImageRecord, image_id)
    return _file(studio.store.thumbnail(image.sha256), media_type="image/jpeg",
                 headers={"Cache-Control": "private, max-age=86400"})


@router.get("/images/{image_id}/file", response_class=FileResponse, responses=errors(404),
            summary="A photo as uploaded")
def image_file(image_id: int, db: SessionDep, studio: StudioDep):
    image = ops.get(db, ImageRecord, image_id)
    return _file(studio.store.path(image.sha256, image.suffix), headers={"Cache-Control": "private"})


def _file(path, **options) -> FileResponse:
    if not path.is_file():
        raise MobiclassError("the photo's file is missing from the studio's store", code="not_found")
    return FileResponse(path, **options)


@router.get("/projects/{project_id}/phone", response_model=PhoneLinkOut, responses=errors(404),
            summary="A link (and its QR code) that opens a capture page for this project on a phone")
def phone_link(project_id: int, db: SessionDep, studio: StudioDep):
    project = ops.get(db, Project, project_id)
    base, token = studio.settings.phone_url, studio.settings.token
    if base is None or token is None:
        return {"available": False, "why": LOOPBACK_ONLY}
    import segno

    url = f"{base.rstrip('/')}/capture#project={project.id}&token={token}"
    return {"available": True, "url": url, "qr": segno.make(url, error="m").svg_data_uri(scale=5, border=2)}
