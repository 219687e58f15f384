"""``mobiclass studio``: the app under uvicorn, with the worker process beside it.

On start, jobs the last studio left running are resumed or failed (jobs.JobQueue.recover), then the worker
starts; a worker that dies is restarted the same way. Stopping the studio stops the worker and its job, whose
training resumes at the next start.
"""
from __future__ import annotations

import contextlib
import logging
import os
import secrets
import signal
import subprocess
import sys
import threading
from contextlib import asynccontextmanager
from pathlib import Path

from ..errors import UsageError
from .api import StudioSettings, create_studio_app
from .db import database_url, open_database
from .jobs import JobQueue

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
log = logging.getLogger("mobiclass.studio")


class Worker:
    """The huey consumer in its own process group (so that stopping it stops the job it runs)."""

    def __init__(self, home: Path, url: str, queue: JobQueue, sessions):
        self.home, self.url, self.queue, self.sessions = home, url, queue, sessions
        self.process: subprocess.Popen | None = None
        self.stopping = threading.Event()
        self.watcher: threading.Thread | None = None

    def start(self) -> None:
        self.queue.recover(self.sessions)
        log_file = open(self.home / "worker.log", "ab")
        self.process = subprocess.Popen([sys.executable, "-m", "mobiclass.studio.worker", "--home", str(self.home),
                                         "--database", self.url], stdout=log_file, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        log_file.close()
        if self.watcher is None:
            self.watcher = threading.Thread(target=self._watch, daemon=True, name="mobiclass-worker-watch")
            self.watcher.start()

    def _watch(self) -> None:
        while not self.stopping.wait(2.0):
            if self.process and self.process.poll() is not None and not self.stopping.is_set():
                log.warning("the worker process ended (code %s); restarting it", self.process.returncode)
                self.start()

    def stop(self, timeout: float = 10.0) -> None:
        self.stopping.set()
        if not self.process or self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def build_studio(home: str | os.PathLike | None = None, database: str | None = None, token: str | None = None,
                 start_worker: bool = True, **limits):
    """The app and its worker for a studio home (default ``~/.mobiclass/studio``): tests run it in-process."""
    home = Path(home or Path.home() / ".mobiclass" / "studio").expanduser().resolve()
    try:
        home.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot use {home} as the studio's home: {exc.strerror or exc}", code="bad_home") from None
    url = database_url(home, database)
    sessions = open_database(url)
    queue = JobQueue(home, url)
    worker = Worker(home, url, queue, sessions) if start_worker else None
    app = create_studio_app(StudioSettings(home, url, token, **limits), sessions, queue)

    @asynccontextmanager
    async def lifespan(_):
        if worker:
            worker.start()
        yield
        if worker:
            worker.stop()
    app.router.lifespan_context = lifespan
    return app


def studio(home: str | None = None, host: str = "127.0.0.1", port: int = 8765, token: str | None = None,
           database: str | None = None, log_level: str = "warning", open_browser: bool = False) -> None:
    """Run the studio until interrupted. Beyond 127.0.0.1 a token is required: the one given, or one made now."""
    import uvicorn

    if host not in LOCAL_HOSTS and not token:
        token = secrets.token_urlsafe(24)
    app = build_studio(home, database, token)
    address = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}/"
    print(f"mobiclass studio: {address}{'#token=' + token if token else ''}", flush=True)
    if token:
        print(f"token (needed by every API call): {token}", flush=True)
    if open_browser:
        import webbrowser

        threading.Timer(1.0, lambda: webbrowser.open(address)).start()
    uvicorn.run(app, host=host, port=port, log_level=log_level)
