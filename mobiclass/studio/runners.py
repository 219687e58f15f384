"""What a job does, in a child process of the worker: train a project's model, or export one, verified, as a
downloadable zip. Progress goes into the job's record about twice a second; the record says when to stop.

The child leads a process group of its own (its data-loading processes join it), so that cancelling ends the whole
tree, and it ends that tree itself if its worker dies.
"""
from __future__ import annotations

import logging
import multiprocessing
import os
import json
import shutil
import signal
import threading
import traceback
import zipfile
from functools import lru_cache
from pathlib import Path

from ..errors import MobiclassError, UsageError
from ..files import atomic_path, atomic_write_text
from .db import Job, open_database
from .jobs import finish
from .projects import project_folder, write_manifest
from .store import ImageStore

log = logging.getLogger("mobiclass.studio")


@lru_cache(maxsize=4)
def sessions_for(url: str):
    return open_database(url)


def _follow_parent() -> None:
    """Lead a process group, and end it when the worker that started this process is gone (kill -9 included)."""
    os.setpgid(0, 0)
    parent = os.getppid()

    def watch():
        while os.getppid() == parent:
            threading.Event().wait(0.5)
        os.killpg(0, signal.SIGKILL)
    threading.Thread(target=watch, daemon=True, name="mobiclass-parent-watch").start()


def execute(home: str, url: str, job_id: int) -> None:
    """In the child process: run the job and record its result or its error (a message, never a traceback)."""
    _follow_parent()
    # This process was spawned, so its own children (the DataLoader's workers) would be spawned too: a fresh
    # interpreter importing torch at every epoch (about 1 s each). Fork them, as `mobiclass train` does.
    multiprocessing.set_start_method("fork", force=True)
    import torch

    torch.set_num_threads(max(1, torch.get_num_threads()))
    home_path = Path(home)
    sessions = sessions_for(url)
    with sessions() as session:
        job = session.get(Job, job_id)
        if job is None:
            return
        runner = {"train": _train, "export": _export, "doctor": _doctor, "select": _select}[job.kind]
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
            finish(job, "failed", f"internal error ({type(exc).__name__}: {exc}); details in the studio's "
                                  f"{log_file.relative_to(home_path)}")
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
    from ..train.config import TrainConfig
    from ..train.loops import keep_freed_memory

    keep_freed_memory()  # this job's process trains and ends: it may keep its peak memory

    options = {k: v for k, v in job.options.items() if k not in ("board", "resume")}
    if isinstance(options.get("model"), int):
        options.update(_continued_model(session, home, job, options["model"]))
    store = ImageStore(home / "images", 10**9)

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
    trained = result.metrics
    job.metrics = {"val": {"accuracy": report["accuracy"], "macro_f1": report["macro_f1"], "count": report["count"]},
                   "best_epoch": trained["best_epoch"], "epochs_run": trained["epochs_run"],
                   "stopped_early": trained["stopped_early"], "ending": trained["ending"],
                   "train_seconds": trained["train_seconds"], "temperature": report["temperature"],
                   "ece": report["calibration"]["ece"]}
    writer.step({"stage": "done", "eta_s": 0})


def _doctor(session, home: Path, job: Job) -> None:
    """The data doctor on the project's photos, its findings by photo id for the Review queue: what a person kept
    as it is (``reviewed``) is not suspected again; a duplicate group whose photos were all reviewed is left out."""
    from ..curation import doctor

    store = ImageStore(home / "images", 10**9)
    folder = project_folder(home, job.project_id) / "doctor" / f"job-{job.id}"
    manifest = write_manifest(store, job.project, folder.with_suffix(".csv"))
    photos = {image.sha256: image for label in job.project.labels for image in label.images}
    job.progress = {"stage": f"looking at {len(photos)} photos"}
    session.commit()
    found = doctor(manifest, folder, allow_outside=True, workers=1)

    def image_of(path: str):
        return photos.get(Path(path).stem)
    suspects = [{"image": image.id, "given": s["given"], "suggested": s["suggested"], "score": s["score"],
                 "split": s["split"]} for s in found["label_issues"]
                if (image := image_of(s["path"])) is not None and not image.reviewed]
    groups, proposed = [], {f["path"] for f in found["fixes"] if f["action"] == "delete"}
    for group in found["duplicates"]:
        members = [image_of(p) for p in group["paths"]]
        if any(m is None for m in members) or all(m.reviewed for m in members):
            continue
        groups.append({"images": [m.id for m in members], "splits": group["splits"], "kind": group["kind"],
                       "leak": group["leak"], "delete": [m.id for m, p in zip(members, group["paths"])
                                                          if p in proposed]})
    unusual = [(o["path"], "unlike any other photo of the project") for o in found["outliers"]] + \
        [(f["path"], "; ".join(f["problems"])) for f in found["image_problems"]]
    others = [{"image": image.id, "what": what} for path, what in unusual
              if (image := image_of(path)) is not None and not image.reviewed]
    job.metrics = {"photos": found["photos"], "label_issues": suspects, "duplicates": groups, "others": others}
    job.progress = {"stage": "done"}


def _select(session, home: Path, job: Job) -> None:
    """The photos without a class worth labelling next, by image id: with the model of the training job the
    request found (if its run folder is still there) the least certain ones spread over the pool, else the most
    typical ones."""
    from ..curation import select
    from ..run_folder import is_run_folder
    from .projects import unlabelled

    store = ImageStore(home / "images", 10**9)
    photos = {image.sha256: image for image in unlabelled(session, job.project)}
    if not photos:
        raise UsageError("the project has no photos without a class any more", code="not_ready")
    model_job = session.get(Job, job.options["model"]) if job.options.get("model") else None
    model = home / model_job.run_dir if model_job is not None and model_job.run_dir else None
    if model is not None and not is_run_folder(model):
        model, model_job = None, None
    folder = project_folder(home, job.project_id) / "select"
    listing = folder / f"job-{job.id}.txt"
    atomic_write_text(listing, "".join(f"{store.path(i.sha256, i.suffix)}\n" for i in photos.values()))
    job.progress = {"stage": f"looking at {len(photos)} photos without a class"}
    session.commit()
    picks = select(model, listing, min(job.options["count"], len(photos)), workers=1)
    job.metrics = {"strategy": "diverse" if model is not None else "typical",
                   "model": model_job.id if model_job is not None else None, "pool": len(photos),
                   "picks": [{"image": photos[Path(p["path"]).stem].id, "guess": p["guess"],
                              "confidence": p["confidence"], "margin": p["margin"]} for p in picks]}
    job.progress = {"stage": "done"}


def _continued_model(session, home: Path, job: Job, source_id: int) -> dict:
    """The training options that go on from the model of the project's finished training job `source_id`."""
    from ..run_folder import RunFolder

    source = session.get(Job, source_id)
    if source is None or source.project_id != job.project_id or source.kind != "train" or source.state != "done":
        raise UsageError(f"job {source_id} is no finished training job of this project", code="no_model")
    run = RunFolder(home / source.run_dir)
    manifest = run.read_manifest()
    return {"model": manifest["architecture"], "width_mult": manifest.get("width_mult", 1.0),
            "weights": str(run / "model.safetensors")}


def _export(session, home: Path, job: Job) -> None:
    """Export the training job's model, verified, then zip the bundle for download. An export for a target whose
    every precision failed verification still offers its bundle, marked unverified, with the figures."""
    from ..export import VerificationError, export
    from ..export.boards import BOARD_FORMATS
    from ..export.bundles import write as write_bundle
    from ..export.toolchains import TOOLCHAINS, install
    from ..runtime import load_torch_classifier
    from ..targets import get_target

    source = session.get(Job, job.source_job_id)
    if source is None or source.state != "done" or not source.run_dir:
        raise UsageError("the training job to export is gone or did not finish", code="no_model")
    run_dir = home / source.run_dir
    options = job.options
    out = project_folder(home, job.project_id) / "exports" / f"job-{job.id}"
    shutil.rmtree(out, ignore_errors=True)
    target = options.get("target")
    format_name = get_target(target).format if target else options["format"]
    chain = TOOLCHAINS.get(format_name)
    if chain is not None and not chain.installed:  # agreed to when the job was asked for; its steps are the progress
        def step(text: str) -> None:
            job.progress = {"stage": text}
            session.commit()
        install(chain.name, log=step)
    job.progress = {"stage": f"exporting for {target} ({format_name}) and verifying it" if target else
                    f"exporting {format_name} and verifying it"}
    session.commit()
    problem = None
    if target:
        try:
            card = export(run_dir, out, target=target, progress=False)
        except VerificationError as exc:
            card, problem = json.loads((out / "model-card.json").read_text(encoding="utf-8")), exc
        bundle = out / format_name
    else:
        settings = dict(int8=options["int8"], formats=tuple(dict.fromkeys(("onnx", format_name))), progress=False,
                        half=options["half"], chip=options.get("chip", options.get("device", "rk3588")))
        try:
            card = export(run_dir, out, **settings)
        except VerificationError as exc:
            if not exc.facts.get("int8_retry"):
                raise
            # As `mobiclass export` advises: keep the first and last layers in float, which often recovers the loss.
            job.progress = {"stage": "int8 lost accuracy: exporting again with the first and last layers in float"}
            session.commit()
            card = export(run_dir, out, exclude_first_last=True, **settings)
        bundle = out / format_name if format_name in BOARD_FORMATS else out
        if format_name not in BOARD_FORMATS:  # the file formats get the labels, a README and a script too
            precision = "int8" if options["int8"] else "fp32"
            write_bundle(format_name, load_torch_classifier(run_dir), out, [], precision)
        atomic_write_text(bundle / "model-card.json", (out / "model-card.json").read_text(encoding="utf-8"))
    zip_path = out.with_suffix(".zip")
    with atomic_path(zip_path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as archive:
        for file in sorted(p for p in bundle.rglob("*") if p.is_file() and not p.name.startswith(".")):
            if bundle == out and (file.parent != out or (format_name == "tflite" and file.suffix == ".onnx")):
                continue  # the top folder of a file format: only that format's files
            archive.write(file, f"{Path(source.run_dir).name}-{format_name}/{file.relative_to(bundle)}")
    job.artifact = str(zip_path.relative_to(home))
    keys = ("accuracy", "top1_agreement", "size_mb", "file", "precision", "verified", "target", "ram_kb", "ram_how",
            "flash_kb", "fits", "fit_note", "latency_ms", "latency_source", "precision_reason")
    job.metrics = {"verified": problem is None and card["verified"], "verified_on": card["verified_on"],
                   "unreadable": card.get("unreadable", 0), "formats": {
        name: {k: v for k, v in figures.items() if k in keys} for name, figures in card["formats"].items()}}
    if target:
        job.metrics.update(target=target, kept=card["targets"][target])
    if problem is not None:  # the numbers and what to try, never a server path
        job.metrics["problem"] = (f"{'; '.join(card['problems'])}. The bundle is offered, marked unverified: test it "
                                  f"on the device, or retrain (more photos, another architecture) and export again")
    job.progress = {"stage": "done"}


