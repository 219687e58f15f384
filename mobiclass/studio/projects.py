"""What a person does to a project: classes, photos, the dataset check, and the manifest training reads.

Functions take an open session and raise MobiclassError with a `code` the API turns into a status; the API and
the page only call these.
"""
from __future__ import annotations

import re
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..errors import ImageError, MobiclassError, UsageError
from ..files import write_csv
from .db import ImageRecord, Job, Label, Project
from .store import ImageStore

MIN_IMAGES = 2        # a class needs one training and one validation photo
ADVISED_IMAGES = 10   # below this, accuracy figures are mostly noise
IMBALANCE_WARNING = 3.0
VAL_EVERY = 5         # every 5th photo of a class (by content hash) validates: a stable 20% split
_NAME = re.compile(r"^[^\x00-\x1f/\\]{1,100}$")


class NotFound(MobiclassError):
    """A project, class, image or job that does not exist (any more)."""


def clean_name(name: object, what: str) -> str:
    text = str(name or "").strip()
    if not _NAME.match(text) or text in (".", ".."):
        raise UsageError(f"a {what} name must be 1 to 100 characters, without slashes or control characters; "
                         f"got {str(name)[:40]!r}", code="bad_name")
    return text


MAX_ID = 2**63 - 1  # the largest key a database stores; a larger one names nothing


def get(session: Session, kind: type, ident: int, project: Project | None = None):
    row = session.get(kind, ident) if 0 < ident <= MAX_ID else None
    if row is None or (project is not None and row.project_id != project.id):
        raise NotFound(f"no {kind.__name__.lower().replace('record', '')} {ident}", code="not_found")
    return row


def create_project(session: Session, name: str) -> Project:
    name = clean_name(name, "project")
    if session.scalar(select(Project).where(Project.name == name)):
        raise UsageError(f"a project named {name!r} exists already", code="exists")
    project = Project(name=name)
    session.add(project)
    session.commit()
    return project


def rename_project(session: Session, project: Project, name: str) -> Project:
    name = clean_name(name, "project")
    if name != project.name and session.scalar(select(Project).where(Project.name == name)):
        raise UsageError(f"a project named {name!r} exists already", code="exists")
    project.name = name
    session.commit()
    return project


def delete_project(session: Session, store: ImageStore, home: Path, project: Project) -> None:
    """The project, its records, its runs and exports, and each photo no other project holds."""
    folder = project_folder(home, project.id)
    with store.locked():
        images = [(i.sha256, i.suffix) for i in session.scalars(
            select(ImageRecord).where(ImageRecord.project_id == project.id))]
        session.delete(project)
        session.commit()
        _remove_unreferenced(session, store, images)
    shutil.rmtree(folder, ignore_errors=True)


def project_folder(home: Path, project_id: int) -> Path:
    return home / "projects" / str(project_id)


def label_named(session: Session, project: Project, name: str, create: bool = True) -> Label:
    name = clean_name(name, "class")
    label = session.scalar(select(Label).where(Label.project_id == project.id, Label.name == name))
    if label is None:
        if not create:
            raise NotFound(f"project {project.name!r} has no class {name!r}", code="not_found")
        label = Label(project=project, name=name)
        session.add(label)
        session.flush()
    return label


def rename_label(session: Session, label: Label, name: str) -> Label:
    """Rename a class; renaming it to another class's name merges the two."""
    name = clean_name(name, "class")
    other = session.scalar(select(Label).where(Label.project_id == label.project_id, Label.name == name,
                                               Label.id != label.id))
    if other is None:
        label.name = name
        session.commit()
        return label
    for image in list(label.images):
        image.label = other
    session.flush()
    session.delete(label)
    session.commit()
    return other


def delete_label(session: Session, store: ImageStore, label: Label) -> None:
    with store.locked():
        images = [(i.sha256, i.suffix) for i in label.images]
        session.delete(label)
        session.commit()
        _remove_unreferenced(session, store, images)


@dataclass(frozen=True)
class Upload:
    """One uploaded file for class `label` (None: a photo to label later): its bytes or its staged file, or why it
    was refused already."""

    label: str | None
    name: str
    source: bytes | Path | None
    error: str | None = None


def add_images(session: Session, store: ImageStore, project: Project, uploads: list[Upload]) -> list[dict]:
    """Store every upload under its class (made if new), all or nothing: per class, the photos added, those the
    project already holds, and each file that is no usable image with the reason. Class names are checked before
    anything is stored; the photos are staged, then committed with their records in one transaction. A photo the
    project holds without a class joins the class it is uploaded to (it counts as added)."""
    if not uploads:
        raise UsageError("no files in the upload: send photos as the multipart field 'files'", code="no_files")
    names = {upload.label: None if upload.label is None else clean_name(upload.label, "class") for upload in uploads}
    summaries = {name: {"class": name, "added": 0, "duplicates": [], "errors": []} for name in names.values()}
    with store.staging() as stage:
        staged = []
        for upload in uploads:
            summary = summaries[names[upload.label]]
            if upload.error is not None:
                summary["errors"].append({"file": upload.name, "error": upload.error})
                continue
            try:
                staged.append((summary, upload.name, store.prepare(upload.source, stage)))
            except ImageError as exc:
                summary["errors"].append({"file": upload.name, "error": str(exc)})
        with store.locked():
            labels = {name: label_named(session, project, name) for name in summaries if name is not None}
            labels[None] = None
            known = {record.sha256: record for record in session.scalars(
                select(ImageRecord).where(ImageRecord.project_id == project.id))}
            added = []
            for summary, name, image in staged:
                if image.sha256 in known:
                    record = known[image.sha256]
                    if record.label is None and summary["class"] is not None:
                        record.label = labels[summary["class"]]  # labelled by uploading it to a class
                        summary["added"] += 1
                    else:
                        summary["duplicates"].append({"file": name, "class": record.label and record.label.name})
                    continue
                known[image.sha256] = record = ImageRecord(
                    project_id=project.id, label=labels[summary["class"]], sha256=image.sha256,
                    suffix=image.suffix, width=image.width, height=image.height, source=name[:255])
                session.add(record)
                summary["added"] += 1
                added.append(image)
            placed = store.commit(stage, added)
            try:
                session.commit()
            except BaseException:
                session.rollback()
                store.discard(placed)
                raise
    return list(summaries.values())


def move_image(session: Session, image: ImageRecord, label_name: str) -> ImageRecord:
    """Relabel a photo (or label one that had no class): a person decided, so the doctor stops suspecting it."""
    image.label = label_named(session, session.get(Project, image.project_id), label_name)
    image.reviewed = True
    session.commit()
    return image


def mark_reviewed(session: Session, image: ImageRecord) -> ImageRecord:
    image.reviewed = True
    session.commit()
    return image


def delete_image(session: Session, store: ImageStore, image: ImageRecord) -> None:
    with store.locked():
        key = (image.sha256, image.suffix)
        session.delete(image)
        session.commit()
        _remove_unreferenced(session, store, [key])


def _remove_unreferenced(session: Session, store: ImageStore, images: list[tuple[str, str]]) -> None:
    """Remove the files of photos no record names any more (under the store's lock, after the commit)."""
    for sha256, suffix in images:
        if not session.scalar(select(func.count()).select_from(ImageRecord).where(ImageRecord.sha256 == sha256)):
            store.remove(sha256, suffix)


def unlabelled(session: Session, project: Project) -> list[ImageRecord]:
    """The project's photos without a class, oldest first."""
    return list(session.scalars(select(ImageRecord).where(ImageRecord.project_id == project.id,
                                                          ImageRecord.label_id.is_(None)).order_by(ImageRecord.id)))


def unlabelled_count(project: Project) -> int:
    from sqlalchemy.orm import object_session

    return object_session(project).scalar(select(func.count()).select_from(ImageRecord).where(
        ImageRecord.project_id == project.id, ImageRecord.label_id.is_(None)))


def referenced_photos(session: Session) -> set[str]:
    return set(session.scalars(select(ImageRecord.sha256).distinct()))


def dataset_check(project: Project) -> dict:
    """Per class: photos, training/validation counts and what is wrong; plus whether training can start."""
    counts = {label.name: len(label.images) for label in project.labels}
    problems, warnings = [], []
    if len([n for n in counts.values() if n]) < 2:
        problems.append("add photos to at least two classes")
    for name, n in counts.items():
        if n < MIN_IMAGES:
            problems.append(f"class {name!r} has {n} photo(s): it needs at least {MIN_IMAGES}")
        elif n < ADVISED_IMAGES:
            warnings.append(f"class {name!r} has only {n} photos; {ADVISED_IMAGES} or more give figures you can "
                            f"trust")
    filled = [n for n in counts.values() if n]
    imbalance = max(filled) / min(filled) if filled else 1.0
    if imbalance > IMBALANCE_WARNING:
        warnings.append(f"class imbalance: the largest class is {imbalance:.1f}x the smallest (training weights "
                        f"classes to balance them)")
    classes = [{"name": name, "images": n, "val": _val_count(n), "train": n - _val_count(n)}
               for name, n in counts.items()]
    return {"classes": classes, "images": sum(counts.values()), "imbalance": round(imbalance, 2),
            "ready": not problems, "problems": problems, "warnings": warnings}


def _val_count(n: int) -> int:
    return len(range(0, n, VAL_EVERY)) if n >= MIN_IMAGES else 0


def write_manifest(store: ImageStore, project: Project, path: Path) -> Path:
    """The project as a CSV manifest (path, label, split) at `path`, which training and evaluation read; refused
    with the dataset check's problems when training could not start."""
    check = dataset_check(project)
    if not check["ready"]:
        raise UsageError("the project is not ready to train: " + "; ".join(check["problems"]), code="not_ready")
    rows = []
    for label in project.labels:
        for i, image in enumerate(sorted(label.images, key=lambda r: r.sha256)):
            rows.append([str(store.path(image.sha256, image.suffix)), label.name, "val" if i % VAL_EVERY == 0 else
                         "train"])
    return write_csv(path, ["path", "label", "split"], rows)


def image_json(image: ImageRecord) -> dict:
    return {"id": image.id, "class": image.label and image.label.name, "sha256": image.sha256, "width": image.width,
            "height": image.height, "source": image.source, "reviewed": image.reviewed,
            # The content in the URL: a browser caches a thumbnail a day, and SQLite may give a deleted photo's id to
            # the next one.
            "thumbnail": f"/api/images/{image.id}/thumbnail?v={image.sha256[:16]}",
            "file": f"/api/images/{image.id}/file?v={image.sha256[:16]}"}


def project_json(project: Project, detail: bool = False) -> dict:
    jobs = [job_json(job) for job in project.jobs]
    summary = {"id": project.id, "name": project.name, "target": project.target,
               "created_at": project.created_at.isoformat() + "Z",
               "classes": [{"id": label.id, "name": label.name, "images": len(label.images)}
                           for label in project.labels],
               "images": sum(len(label.images) for label in project.labels),
               "unlabelled": unlabelled_count(project),
               "jobs": Counter(job.state for job in project.jobs)}
    if detail:
        summary["check"] = dataset_check(project)
        summary["job_list"] = jobs
        trained = [j for j in jobs if j["kind"] == "train" and j["state"] == "done"]
        summary["model"] = trained[-1] if trained else None
    return summary


def job_json(job: Job) -> dict:
    return {"id": job.id, "project": job.project_id, "kind": job.kind, "state": job.state, "options": job.options,
            "progress": job.progress, "metrics": job.metrics, "error": job.error,
            "cancel_requested": job.cancel_requested, "source_job": job.source_job_id,
            "created_at": job.created_at.isoformat() + "Z",
            "started_at": job.started_at and job.started_at.isoformat() + "Z",
            "finished_at": job.finished_at and job.finished_at.isoformat() + "Z",
            "download": f"/api/jobs/{job.id}/download" if job.artifact and job.state == "done" else None,
            "report": f"/api/jobs/{job.id}/report" if job.kind == "train" and job.state == "done" else None}
