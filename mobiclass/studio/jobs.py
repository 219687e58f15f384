"""Jobs: training and export, one at a time, in a worker.

The queue is huey on its SQLite storage (``queue.db`` in the studio's home); the job's record in the database is
the truth the page reads. A worker thread takes a job and runs it in a child process, so that cancelling is
immediate for any kind of job (the child is terminated) and memory goes back after each job. The child writes its
progress into the record about twice a second. When the studio restarts, a training job that was running resumes
from its last completed epoch (the run folder resumes); any other job that was running is marked failed with the
reason, so that nothing stays "running" forever.
"""
from __future__ import annotations

import logging
import multiprocessing
import shutil
import signal
import traceback
import zipfile
from functools import lru_cache
from pathlib import Path

from sqlalchemy import select

from ..errors import MobiclassError, UsageError
from ..files import atomic_path, atomic_write_text
from .db import FINISHED, Job, now, open_database
from .projects import project_folder, write_manifest
from .store import ImageStore

log = logging.getLogger("mobiclass.studio")

# Training options a request may set; the data, run folder, weights file and device are the studio's to choose.
TRAIN_FIELDS = ("model", "epochs", "head_epochs", "image_size", "batch_size", "lr", "head_lr", "augment", "unfreeze",
                "label_smoothing", "seed", "width_mult", "class_balance", "calibrate", "early_stopping",
                "feature_views", "crop", "dropout", "metric")
EXPORT_FORMATS = ("onnx", "tflite", "ncnn", "rknn", "maixcam", "k210")
BOARDS = {"laptop": "onnx", "phone": "tflite", "maixcam": "maixcam", "k210": "k210", "rockchip": "rknn",
          "raspberry-pi": "ncnn"}
RESTART_ERROR = "the studio stopped while this job ran; start it again"


def train_options(values: dict) -> dict:
    """The request's training options, checked as `mobiclass train` checks them; `board` is kept for deployment."""
    from ..train.config import TrainConfig

    values = dict(values or {})
    board = values.pop("board", None) or "laptop"
    if board not in BOARDS:
        raise UsageError(f"board must be one of {', '.join(BOARDS)}, got {board!r}", code="bad_option")
    unknown = sorted(set(values) - set(TRAIN_FIELDS))
    if unknown:
        raise UsageError(f"unknown training option(s): {', '.join(unknown)}; the studio takes: "
                         f"{', '.join(TRAIN_FIELDS)}, board", code="bad_option")
    config = TrainConfig.from_dict({k: v for k, v in values.items() if v is not None})
    config.validate()
    return {**{k: getattr(config, k) for k in values if values[k] is not None}, "board": board}


def export_options(values: dict) -> dict:
    values = dict(values or {})
    fmt = values.pop("format", "onnx")
    int8 = values.pop("int8", fmt in ("rknn", "maixcam", "k210"))
    half = values.pop("half", False)
    device = values.pop("device", "rk3588")
    if values:
        raise UsageError(f"unknown export option(s): {', '.join(sorted(values))}; the studio takes: format, int8, "
                         f"half, device", code="bad_option")
    if fmt not in EXPORT_FORMATS:
        raise UsageError(f"format must be one of {', '.join(EXPORT_FORMATS)}, got {fmt!r}", code="bad_option")
    if not isinstance(int8, bool) or not isinstance(half, bool):
        raise UsageError("int8 and half must be true or false", code="bad_option")
    return {"format": fmt, "int8": int8, "half": half, "device": str(device)}


class JobQueue:
    """The huey queue of one studio home; the server submits, the worker process consumes."""

    def __init__(self, home: Path, url: str):
        from huey import SqliteHuey

        self.home, self.url = home, url
        self.huey = SqliteHuey("mobiclass-studio", filename=str(home / "queue.db"))
        self.task = self.huey.task(name="run_job")(run_job)

    def submit(self, job_id: int) -> None:
        self.task(str(self.home), self.url, job_id)

    def recover(self, sessions) -> list[int]:
        """After a restart: training that was running resumes, other running jobs fail with the reason; every
        queued job is submitted again in order (the database, not the queue file, says what is pending)."""
        with sessions() as session:
            for job in session.scalars(select(Job).where(Job.state == "running")):
                resumable = (job.kind == "train" and job.run_dir and not job.cancel_requested
                             and (self.home / job.run_dir / "state.pt").is_file())
                if resumable:
                    job.state, job.options = "queued", {**job.options, "resume": True}
                    job.progress = {**(job.progress or {}), "stage": "waiting to resume after a restart"}
                else:
                    finish(job, "cancelled" if job.cancel_requested else "failed",
                           None if job.cancel_requested else RESTART_ERROR)
            session.commit()
            queued = list(session.scalars(select(Job.id).where(Job.state == "queued").order_by(Job.id)))
        self.huey.flush()
        for job_id in queued:
            self.submit(job_id)
        return queued


def finish(job: Job, state: str, error: str | None = None) -> None:
    job.state, job.error, job.finished_at = state, error, now()


@lru_cache(maxsize=4)
def _sessions(url: str):
    return open_database(url)


def run_job(home: str, url: str, job_id: int) -> None:
    """The queue's task: run job `job_id` in a child process, cancel it when asked, record how it ended."""
    sessions = _sessions(url)
    with sessions() as session:
        job = session.get(Job, job_id)
        if job is None or job.state != "queued":
            return  # cancelled while queued, or deleted with its project
        job.state, job.started_at, job.attempts, job.error = "running", now(), job.attempts + 1, None
        session.commit()
    child = multiprocessing.get_context("spawn").Process(target=execute, args=(home, url, job_id),
                                                         name=f"mobiclass-job-{job_id}")
    child.start()
    while child.is_alive():
        child.join(0.5)
        with sessions() as session:
            job = session.get(Job, job_id)
            if job is None or job.cancel_requested:
                child.terminate()
                child.join()
                if job is not None:
                    finish(job, "cancelled")
                    session.commit()
                return
    if child.exitcode == -signal.SIGTERM:
        return  # the studio is stopping (its process group got SIGTERM): the next start resumes or fails the job
    with sessions() as session:
        job = session.get(Job, job_id)
        if job is not None and job.state == "running":
            reason = " (out of memory?)" if child.exitcode == -signal.SIGKILL else ""
            finish(job, "failed", f"the job's process ended unexpectedly (exit code {child.exitcode}){reason}")
            session.commit()


def execute(home: str, url: str, job_id: int) -> None:
    """In the child process: run the job and record its result or its error (a message, never a traceback)."""
    import torch

    torch.set_num_threads(max(1, torch.get_num_threads()))
    home_path = Path(home)
    sessions = _sessions(url)
    with sessions() as session:
        job = session.get(Job, job_id)
        if job is None:
            return
        runner = {"train": _train, "export": _export}[job.kind]
        try:
            runner(session, home_path, job)
            finish(job, "done")
        except MobiclassError as exc:
            session.rollback()
            job = session.get(Job, job_id)
            if exc.code == "cancelled":
                finish(job, "cancelled")
            else:
                finish(job, "failed", str(exc))
        except Exception as exc:  # noqa: BLE001 - the page shows a reason; the traceback goes to the log file
            session.rollback()
            job = session.get(Job, job_id)
            log_file = home_path / "logs" / f"job-{job_id}.log"
            log_file.parent.mkdir(parents=True, exist_ok=True)
            log_file.write_text(traceback.format_exc(), encoding="utf-8")
            finish(job, "failed", f"internal error ({type(exc).__name__}: {exc}); details in {log_file}")
        session.commit()


class ProgressWriter:
    """Writes training progress into the job's record: the current step, every epoch, an estimate of the end."""

    def __init__(self, session, job: Job, epochs: int):
        self.session, self.job, self.epochs = session, job, epochs
        self.history = list((job.progress or {}).get("history", []))

    def step(self, update: dict) -> None:
        progress = {**(self.job.progress or {}), **update, "history": self.history, "epochs": self.epochs}
        progress["job_eta_s"] = self._job_eta(progress)
        self._save(progress)

    def epoch(self, row: dict) -> None:
        self.history.append({k: round(row[k], 4) if isinstance(row[k], float) else row[k] for k in
                             ("epoch", "stage", "train_loss", "train_accuracy", "val_loss", "val_accuracy",
                              "val_macro_f1", "images_per_s", "seconds")})
        self.step({"epoch": row["epoch"]})

    def _job_eta(self, progress: dict) -> float | None:
        step_eta = progress.get("eta_s")
        finetune = [r["seconds"] for r in self.history if r["stage"] == "finetune"]
        done = max([r["epoch"] for r in self.history], default=0)
        per_epoch = sum(finetune) / len(finetune) if finetune else None
        if step_eta is None or per_epoch is None:
            return step_eta
        remaining = max(self.epochs - done - 1, 0)  # the epoch running now is in step_eta
        return step_eta + remaining * per_epoch

    def _save(self, progress: dict) -> None:
        self.job.progress = progress
        self.session.commit()
        self.session.refresh(self.job)
        if self.job.cancel_requested:
            raise UsageError("cancelled", code="cancelled")


def _train(session, home: Path, job: Job) -> None:
    from ..evaluate import evaluate
    from ..run_folder import next_run_folder
    from ..train import resume, train

    options = {k: v for k, v in job.options.items() if k not in ("board", "resume")}
    store = ImageStore(home / "images", 10**9)
    from ..train.config import TrainConfig

    writer = ProgressWriter(session, job, options.get("epochs", TrainConfig.epochs))
    if job.options.get("resume") and job.run_dir:
        run_dir = home / job.run_dir
        writer.step({"stage": "resuming from the last completed epoch", "resumed": True})
        result = resume(run_dir, progress=False, on_epoch=writer.epoch, on_progress=writer.step)
    else:
        runs = project_folder(home, job.project_id) / "runs"
        run_dir = next_run_folder(runs / "train")
        manifest = write_manifest(store, job.project, run_dir.with_name(run_dir.name + ".csv"))
        job.run_dir = str(run_dir.relative_to(home))
        writer.step({"stage": "checking the photos"})
        result = train(manifest, run_dir, allow_outside=True, progress=False, workers=1, on_epoch=writer.epoch,
                       on_progress=writer.step, **options)
    writer.step({"stage": "evaluating", "done": 0, "total": 0, "eta_s": None})
    report = evaluate(run_dir, run_dir.with_name(run_dir.name + ".csv"), run_dir / "evaluation", split="val",
                      allow_outside=True)
    job.metrics = {"val": {"accuracy": report["accuracy"], "macro_f1": report["macro_f1"]},
                   "best_epoch": result.metrics["best_epoch"], "train_seconds": result.metrics["train_seconds"],
                   "temperature": report["temperature"], "ece": report["calibration"]["ece"]}
    writer.step({"stage": "done", "eta_s": 0})


def _export(session, home: Path, job: Job) -> None:
    """Export the training job's model, verified, then zip the bundle for download."""
    from ..export import VerificationError, export
    from ..export.boards import BOARD_FORMATS
    from ..export.bundles import write as write_bundle
    from ..runtime import load_torch_classifier

    source = session.get(Job, job.source_job_id)
    if source is None or source.state != "done" or not source.run_dir:
        raise UsageError("the training job to export is gone or did not finish", code="no_model")
    run_dir = home / source.run_dir
    options = job.options
    out = project_folder(home, job.project_id) / "exports" / f"job-{job.id}"
    shutil.rmtree(out, ignore_errors=True)
    job.progress = {"stage": f"exporting {options['format']} and verifying it"}
    session.commit()
    settings = dict(int8=options["int8"], formats=tuple(dict.fromkeys(("onnx", options["format"]))), progress=False,
                    half=options["half"], device=options["device"])
    try:
        card = export(run_dir, out, **settings)
    except VerificationError as exc:
        if not exc.facts.get("int8_retry"):
            raise
        # As `mobiclass export` advises: keep the first and last layers in float, which often recovers the loss.
        job.progress = {"stage": "int8 lost accuracy: exporting again with the first and last layers in float"}
        session.commit()
        card = export(run_dir, out, exclude_first_last=True, **settings)
    bundle = out / options["format"] if options["format"] in BOARD_FORMATS else out
    if options["format"] not in BOARD_FORMATS:  # the file formats get the labels, a README and a script too
        precision = "int8" if options["int8"] else "fp32"
        write_bundle(options["format"], load_torch_classifier(run_dir), out, [], precision)
    atomic_write_text(bundle / "model-card.json", (out / "model-card.json").read_text(encoding="utf-8"))
    zip_path = out.with_suffix(".zip")
    with atomic_path(zip_path) as tmp:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as archive:
            for file in sorted(p for p in bundle.rglob("*") if p.is_file() and not p.name.startswith(".")):
                if bundle == out and (file.parent != out or (options["format"] == "tflite" and
                                                             file.suffix == ".onnx")):
                    continue  # the top folder of a file format: only that format's files
                archive.write(file, f"{Path(source.run_dir).name}-{options['format']}/{file.relative_to(bundle)}")
    job.artifact = str(zip_path.relative_to(home))
    job.metrics = {"verified": card["verified"], "formats": {
        name: {k: v for k, v in figures.items() if k in ("accuracy", "top1_agreement", "size_mb", "file")}
        for name, figures in card["formats"].items()}}
    job.progress = {"stage": "done"}


def cancel(session, job: Job) -> Job:
    """Cancel a queued job at once; ask a running one to stop (its worker terminates it within a second)."""
    if job.state in FINISHED:
        raise UsageError(f"job {job.id} is {job.state} already", code="finished")
    job.cancel_requested = True
    if job.state == "queued":
        finish(job, "cancelled")
    session.commit()
    return job
