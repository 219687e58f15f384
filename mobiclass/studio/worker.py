"""The studio's worker process: claims queued jobs one at a time and runs each in a child process
(``python -m mobiclass.studio.worker --home HOME --database URL``).

One worker per studio home: it holds ``worker.lock`` in the home while it lives, and a second one waits for it (the
worker of a studio killed a moment ago finishes stopping first). Started by the studio with ``--watch-stdin``, it
stops when the studio's end of that pipe closes, however the studio ended (kill -9 included). Stopping ends the
running job's whole process tree and leaves the job to the next worker, which resumes a training job from its last
completed epoch.
"""
from __future__ import annotations

import argparse
import contextlib
import fcntl
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
import uuid
from pathlib import Path

from .db import Job
from .jobs import LEASE_SECONDS, claim_next, finish, home_key, recover, renew
from .runners import execute, sessions_for

log = logging.getLogger("mobiclass.studio.worker")
POLL_SECONDS = 0.5
GRACE_SECONDS = 5.0
LOCK_WAIT_SECONDS = float(os.environ.get("MOBICLASS_WORKER_LOCK_WAIT", 60))  # a stopping worker's time to go


@contextlib.contextmanager
def home_lock(path: Path, wait: float):
    """Hold an exclusive lock on `path` (waiting up to `wait` seconds for it); SystemExit when it stays taken."""
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise SystemExit(f"another worker holds {path}: one worker per studio home") from None
                time.sleep(0.2)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)


class Worker:
    def __init__(self, home: Path, url: str):
        self.home, self.url = home, url
        self.sessions = sessions_for(url)
        self.prefix = home_key(home)
        self.owner = f"{self.prefix}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.stop = threading.Event()

    def run(self) -> None:
        """Recover what a dead worker left, then run queued jobs until told to stop."""
        recover(self.sessions, self.home, self.prefix)
        last_recovery = time.monotonic()
        while not self.stop.is_set():
            job_id = claim_next(self.sessions, self.owner)
            if job_id is not None:
                self.run_job(job_id)
            elif time.monotonic() - last_recovery > LEASE_SECONDS:  # jobs of workers elsewhere that died
                recover(self.sessions, self.home)
                last_recovery = time.monotonic()
            else:
                self.stop.wait(POLL_SECONDS)

    def run_job(self, job_id: int) -> None:
        """Run one claimed job in a child process; cancel it when asked, keep its lease, record how it ended."""
        child = multiprocessing.get_context("spawn").Process(target=execute, args=(str(self.home), self.url, job_id),
                                                             name=f"mobiclass-job-{job_id}")
        child.start()
        renewed = time.monotonic()
        try:
            while child.is_alive():
                child.join(POLL_SECONDS)
                if self.stop.is_set():
                    return  # stopping: the job stays running for the next worker to resume or fail
                with self.sessions() as session:
                    job = session.get(Job, job_id)
                    if job is None or job.cancel_requested:
                        end_tree(child)
                        if job is not None:
                            finish(job, "cancelled")
                            session.commit()
                        return
                if time.monotonic() - renewed > LEASE_SECONDS / 4:
                    if not renew(self.sessions, job_id, self.owner):
                        return  # the claim lapsed and another worker took the job over: it runs there, not here
                    renewed = time.monotonic()
            with self.sessions() as session:
                job = session.get(Job, job_id)
                if job is not None and job.state == "running":
                    reason = " (out of memory?)" if child.exitcode == -signal.SIGKILL else ""
                    finish(job, "failed", f"the job's process ended unexpectedly (exit code {child.exitcode})"
                                          f"{reason}")
                    session.commit()
        finally:
            end_tree(child)


def end_tree(child) -> None:
    """End the job's process group (the job and its data-loading processes): SIGTERM, then SIGKILL for whatever
    is left."""
    _signal_tree(child, signal.SIGTERM)
    child.join(GRACE_SECONDS)
    _signal_tree(child, signal.SIGKILL)
    child.join()


def _signal_tree(child, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(child.pid, sig)
    if child.exitcode is None:  # not reaped yet: the pid is still the child's (it may not lead its group yet)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(child.pid, sig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m mobiclass.studio.worker")
    parser.add_argument("--home", required=True)
    parser.add_argument("--database", required=True)
    parser.add_argument("--watch-stdin", action="store_true", help="stop when standard input closes (the studio)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s worker %(levelname)s %(message)s")
    home = Path(args.home)
    worker = Worker(home, args.database)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: worker.stop.set())
    if args.watch_stdin:
        def watch():
            sys.stdin.buffer.read()  # returns at end of file: the studio is gone
            worker.stop.set()
        threading.Thread(target=watch, daemon=True, name="mobiclass-studio-watch").start()
    with home_lock(home / "worker.lock", LOCK_WAIT_SECONDS):
        if not worker.stop.is_set():
            worker.run()


if __name__ == "__main__":
    main()
