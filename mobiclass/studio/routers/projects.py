"""Projects and their classes."""
from __future__ import annotations

import time

from fastapi import APIRouter, Response
from sqlalchemy import select

from ...serve.schemas import errors
from .. import jobs as job_ops
from .. import projects as ops
from ..db import FINISHED, Label, Project
from ..deps import SessionDep, StudioDep
from ..schemas import ClassOut, NameIn, ProjectDetail, ProjectIn, ProjectList

router = APIRouter(tags=["projects"], responses=errors(401, 403))


@router.get("/projects", response_model=ProjectList, summary="Every project, with its classes and counts")
def list_projects(db: SessionDep):
    return {"projects": [ops.project_json(p) for p in db.scalars(select(Project).order_by(Project.id))]}


@router.post("/projects", status_code=201, response_model=ProjectDetail, responses=errors(409, 422, 507),
             summary="Create a project")
def create_project(body: NameIn, db: SessionDep):
    return ops.project_json(ops.create_project(db, body.name), detail=True)


@router.get("/projects/{project_id}", response_model=ProjectDetail, responses=errors(404),
            summary="One project: classes, dataset check, jobs, trained model")
def get_project(project_id: int, db: SessionDep):
    return ops.project_json(ops.get(db, Project, project_id), detail=True)


@router.patch("/projects/{project_id}", response_model=ProjectDetail, responses=errors(404, 409, 422),
              summary="Rename a project, or set the hardware its models are for")
def update_project(project_id: int, body: ProjectIn, db: SessionDep):
    project = ops.get(db, Project, project_id)
    if body.name is not None:
        ops.rename_project(db, project, body.name)
    if body.target is not None:
        project.target = body.target
        db.commit()
    return ops.project_json(project, detail=True)


@router.delete("/projects/{project_id}", status_code=204, responses=errors(404),
               summary="Delete a project, its photos, runs and exports")
def delete_project(project_id: int, db: SessionDep, studio: StudioDep):
    project = ops.get(db, Project, project_id)
    for job in project.jobs:
        if job.state not in FINISHED:
            job_ops.cancel(db, job)
    _wait_for_workers(db, project)
    ops.delete_project(db, studio.store, studio.settings.home, project)
    return Response(status_code=204)


@router.post("/projects/{project_id}/classes", status_code=201, response_model=ClassOut,
             responses=errors(404, 422), summary="Add an empty class")
def add_class(project_id: int, body: NameIn, db: SessionDep):
    label = ops.label_named(db, ops.get(db, Project, project_id), body.name)
    db.commit()
    return {"id": label.id, "name": label.name, "images": len(label.images)}


@router.patch("/projects/{project_id}/classes/{class_id}", response_model=ClassOut, responses=errors(404, 422),
              summary="Rename a class; the name of another class merges the two")
def rename_class(project_id: int, class_id: int, body: NameIn, db: SessionDep):
    project = ops.get(db, Project, project_id)
    label = ops.rename_label(db, ops.get(db, Label, class_id, project), body.name)
    return {"id": label.id, "name": label.name, "images": len(label.images)}


@router.delete("/projects/{project_id}/classes/{class_id}", status_code=204, responses=errors(404),
               summary="Delete a class and its photos")
def delete_class(project_id: int, class_id: int, db: SessionDep, studio: StudioDep):
    ops.delete_label(db, studio.store, ops.get(db, Label, class_id, ops.get(db, Project, project_id)))
    return Response(status_code=204)


def _wait_for_workers(db, project: Project, timeout: float = 15.0) -> None:
    """Deleting a project whose job is running: let the worker stop it before its folder goes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        db.expire_all()
        if all(job.state in FINISHED for job in project.jobs):
            return
        time.sleep(0.2)
