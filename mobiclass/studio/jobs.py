"""Jobs: training and export, queued in the database and run one at a time by the worker process (worker.py).

The job's record is both the queue and the truth the page reads. The worker claims the oldest queued job in one
atomic update (queued -> running, with a lease it renews while the job runs), so a job runs at most once at a time
whatever the number of workers. When a worker starts, the jobs a dead worker left running are recovered: a training
job resumes from its last completed epoch (the run folder resumes); any other job fails with the reason, so that
nothing stays "running" forever.
"""
from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

from sqlalchemy import or_, select, update

from ..errors import UsageError
from .db import FINISHED, Job, now
from .schemas import ExportIn, TrainIn

LEASE_SECONDS = 30.0
RESTART_ERROR = "the studio stopped while this job ran; start it again"


def train_options(body: TrainIn, project_target: str, classes: int) -> dict:
    """The request's training options, checked as `mobiclass train` checks them (the ranges and choices are the
    schema's), for the request's target or else the project's: options that cannot fit it are refused now."""
    from ..targets import choose_recipe, get_target
    from ..train.config import TrainConfig

    given = {"target": project_target, **body.model_dump(exclude_none=True)}
    config_values = {k: v for k, v in given.items() if not (k == "model" and isinstance(v, int))}
    TrainConfig.from_dict(config_values)  # cross-field rules (the ranges of the distillation options, ...)
    recipe_options = {k: v for k, v in config_values.items() if k in ("model", "width_mult", "image_size")}
    choose_recipe(get_target(given["target"]), recipe_options, max(classes, 2))
    return given


def export_options(body: ExportIn, project_target: str) -> dict:
    """A format (with its precision options), or a target (default: the project's) whose precisions are tried in
    order. A board toolchain that is not installed yet is installed only when the request agrees to it."""
    from ..export.toolchains import TOOLCHAINS
    from ..targets import get_target

    if body.format is None:
        target = get_target(body.target or project_target)
        options, format_name = {"target": target.name}, target.format
    else:  # on a board, int8 is the board model's precision (unticked: its half precision), never a side file
        board = body.format in ("ncnn", "rknn", "maixcam", "k210")
        int8 = body.int8 if body.int8 is not None else body.format in ("rknn", "maixcam", "k210")
        if body.format == "k210" and not int8:
            raise UsageError("the K210 runs uint8 models only: keep int8", code="bad_option")
        if body.format == "ncnn" and int8:
            raise UsageError("ncnn bundles are fp32, or fp16 with half", code="bad_option")
        options, format_name = {"format": body.format, "int8": int8 and not board,
                                "half": body.half or (board and body.format != "ncnn" and not int8),
                                "chip": body.chip}, body.format
    chain = TOOLCHAINS.get(format_name)
    if chain is not None and not chain.installed and not body.install_toolchain:
        raise UsageError(chain.announcement().replace("first use of", "exporting needs", 1), code="needs_toolchain",
                         size=chain.size, minutes=chain.minutes)
    return options


def home_key(home: Path) -> str:
    """A short name for a studio home, the prefix of its workers' lease owners."""
    return hashlib.sha256(str(home.resolve()).encode()).hexdigest()[:12]


def claim_next(sessions, owner: str) -> int | None:
    """Claim the oldest queued job for `owner`: its id, or None when nothing waits. Two workers never claim the same
    job: the claim is one UPDATE guarded by the state."""
    with sessions() as session:
        waiting = session.execute(select(Job.id, Job.progress).where(Job.state == "queued").order_by(Job.id).limit(8))
        for job_id, progress in waiting.all():
            claimed = session.execute(  # "starting" with the state: never "running" with a "queued" stage
                update(Job).where(Job.id == job_id, Job.state == "queued").values(
                    state="running", started_at=now(), attempts=Job.attempts + 1, error=None, lease_owner=owner,
                    lease_expires=_lease_end(), progress={**(progress or {}), "stage": "starting"}))
            session.commit()
            if claimed.rowcount == 1:
                return job_id
    return None


def renew(sessions, job_id: int, owner: str) -> bool:
    """Extend `owner`'s lease on a running job; False when the job is no longer its to run."""
    with sessions() as session:
        renewed = session.execute(update(Job).where(Job.id == job_id, Job.lease_owner == owner,
                                                    Job.state == "running").values(lease_expires=_lease_end()))
        session.commit()
        return renewed.rowcount == 1


def recover(sessions, home: Path, orphaned_prefix: str | None = None) -> list[int]:
    """Jobs left running by a worker that is gone: those whose lease expired, and those of this home's workers
    (`orphaned_prefix`, when the caller holds the home's worker lock, so none of them runs). Training resumes;
    anything else fails with the reason. Returns the ids queued again."""
    with sessions() as session:
        orphaned = [Job.lease_expires.is_(None), Job.lease_expires < now()]
        if orphaned_prefix:
            orphaned.append(Job.lease_owner.startswith(orphaned_prefix + ":"))
        queued = []
        for job in session.scalars(select(Job).where(Job.state == "running", or_(*orphaned))):
            resumable = (job.kind == "train" and job.run_dir and not job.cancel_requested
                         and (home / job.run_dir / "state.pt").is_file())
            if resumable:
                job.state, job.options = "queued", {**job.options, "resume": True}
                job.progress = {**(job.progress or {}), "stage": "waiting to resume after a restart"}
                queued.append(job.id)
            else:
                finish(job, "cancelled" if job.cancel_requested else "failed",
                       None if job.cancel_requested else RESTART_ERROR)
            job.lease_owner = job.lease_expires = None
        session.commit()
    return queued


def finish(job: Job, state: str, error: str | None = None) -> None:
    job.state, job.error, job.finished_at = state, error, now()
    job.lease_owner = job.lease_expires = None


def cancel(session, job: Job) -> Job:
    """Cancel a queued job at once; ask a running one to stop (its worker ends it within a second)."""
    if job.state in FINISHED:
        raise UsageError(f"job {job.id} is {job.state} already", code="finished")
    job.cancel_requested = True
    if job.state == "queued":
        finish(job, "cancelled")
    session.commit()
    return job


def _lease_end() -> dt.datetime:
    return now() + dt.timedelta(seconds=LEASE_SECONDS)
