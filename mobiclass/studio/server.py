"""``mobiclass studio``: the app under uvicorn, with the worker process beside it.

At start, what an interrupted upload left is removed (staging folders, photos no record names); the worker then
recovers the jobs the last studio left running (worker.py) and runs the queue. A worker that dies is restarted. The
worker watches a pipe from the studio, so that it stops with the studio however the studio ends; stopping the
studio (Ctrl-C, SIGTERM) stops the worker and its job, whose training resumes at the next start.
"""
from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import logging
import os
import secrets
import socket
import subprocess
import sys
import threading
from contextlib import asynccontextmanager
from pathlib import Path

from ..errors import UsageError
from ..serve.guard import WILDCARD_HOSTS, host_names, is_loopback
from ..serve.server import listening
from .app import StudioSettings, create_studio_app
from .db import database_url, open_database
from .projects import referenced_photos
from .store import ImageStore

log = logging.getLogger("mobiclass.studio")


class WorkerProcess:
    """The worker (worker.py) in a session of its own, so that a Ctrl-C meant for the studio reaches it only
    through the studio, with the write end of its stdin pipe held here: when this process ends, the worker sees
    end of file and stops."""

    def __init__(self, home: Path, url: str):
        self.home, self.url = home, url
        self.process: subprocess.Popen | None = None
        self.stopping = threading.Event()
        self.watcher: threading.Thread | None = None

    def start(self) -> None:
        with open(self.home / "worker.log", "ab") as log_file:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "mobiclass.studio.worker", "--home", str(self.home), "--database", self.url,
                 "--watch-stdin"], stdin=subprocess.PIPE, stdout=log_file, stderr=subprocess.STDOUT,
                start_new_session=True)
        if self.watcher is None:
            self.watcher = threading.Thread(target=self._watch, daemon=True, name="mobiclass-worker-watch")
            self.watcher.start()

    def _watch(self) -> None:
        while not self.stopping.wait(2.0):
            if self.process and self.process.poll() is not None and not self.stopping.is_set():
                log.warning("the worker process ended (code %s); restarting it", self.process.returncode)
                self.start()

    def stop(self, timeout: float = 20.0) -> None:
        self.stopping.set()
        if not self.process or self.process.poll() is not None:
            return
        self.process.terminate()  # the worker ends its job's process tree, then itself
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        with contextlib.suppress(OSError):
            self.process.stdin.close()


def studio_home(home: str | os.PathLike | None) -> Path:
    home = Path(home or Path.home() / ".mobiclass" / "studio").expanduser().resolve()
    try:
        home.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot use {home} as the studio's home: {exc.strerror or exc}", code="bad_home") from None
    return home


def build_studio(home: str | os.PathLike | None = None, database: str | None = None, token: str | None = None,
                 start_worker: bool = True, host: str = "127.0.0.1", allowed_hosts: tuple[str, ...] = (), **limits):
    """The app and its worker for a studio home (default ``~/.mobiclass/studio``): tests run it in-process."""
    home = studio_home(home)
    url = database_url(home, database)
    sessions = open_database(url)
    settings = StudioSettings(home, url, token, hosts=host_names(host, allowed_hosts), **limits)
    with sessions() as session:
        removed = ImageStore(home / "images", settings.max_pixels).clean(referenced_photos(session))
    if removed:
        log.warning("removed %d file(s) an interrupted upload left behind", removed)
    worker = WorkerProcess(home, url) if start_worker else None
    app = create_studio_app(settings, sessions)
    serving = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(running):
        if worker:
            worker.start()
        async with serving(running):
            yield
        if worker:
            worker.stop()
    app.router.lifespan_context = lifespan
    return app


def studio(home: str | None = None, host: str = "127.0.0.1", port: int = 8765, token: str | None = None,
           database: str | None = None, log_level: str = "warning", open_browser: bool = False,
           allowed_hosts: tuple[str, ...] = ()) -> None:
    """Run the studio until interrupted. Beyond loopback a token is required: the one given, or one made now."""
    import uvicorn

    if not is_loopback(host) and not token:
        token = secrets.token_urlsafe(24)
    home_path = studio_home(home)
    with _only_studio(home_path), listening(host, port) as sock:
        phone_url = network_url(host, port)
        app = build_studio(home_path, database, token, host=host, allowed_hosts=allowed_hosts, phone_url=phone_url)
        address = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}/"
        print(f"mobiclass studio: {address}{'#token=' + token if token else ''}", flush=True)
        if token:
            print(f"token (needed by every API call): {token}", flush=True)
        if phone_url:
            print(f"on your network: {phone_url} (phones: the QR code in a project's Collect tab)", flush=True)
        if open_browser:
            import webbrowser

            threading.Timer(1.0, lambda: webbrowser.open(address)).start()
        uvicorn.Server(uvicorn.Config(app, log_level=log_level)).run(sockets=[sock])


def network_url(host: str, port: int) -> str | None:
    """The studio's address for other devices on the network: None when it listens on loopback only; for a wildcard
    address, the address of the interface this machine's default route uses (found without sending anything)."""
    if is_loopback(host):
        return None
    if host not in WILDCARD_HOSTS:
        return f"http://{f'[{host}]' if ':' in host else host}:{port}/"
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("192.0.2.1", 9))  # a documentation address: a UDP connect only chooses the route
        address = probe.getsockname()[0]
        if not ipaddress.ip_address(address).is_loopback and address != "0.0.0.0":
            return f"http://{address}:{port}/"
    return None


@contextlib.contextmanager
def _only_studio(home: Path):
    """One studio per home: a second one would recover and run the first one's jobs."""
    fd = os.open(home / "studio.lock", os.O_CREAT | os.O_RDWR, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UsageError(f"another mobiclass studio is running with {home} as its home: stop it, or give this "
                             f"one another --home", code="home_in_use") from None
        yield
    finally:
        os.close(fd)
