"""Running the app with uvicorn, in one process or several (each worker loads its own engine)."""
from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import os
import secrets
import socket
from pathlib import Path

from ..errors import UsageError
from ..explain import GradCam
from ..loading import DEFAULT_ENGINE, load_classifier
from ..metadata import file_kind
from ..weights import DEFAULT_WEIGHTS
from .app import TOKEN_PATHS, create_app
from .explaining import Explainer
from .guard import Guard, host_names, is_loopback
from .uploads import ServeSettings

ENVIRONMENT_KEY = "MOBICLASS_SERVE"  # how the parent hands the model to worker processes


def serve(model: str, weights: str | None = DEFAULT_WEIGHTS, engine: str = DEFAULT_ENGINE,
          host: str = "127.0.0.1", port: int = 8000, workers: int = 1, settings: ServeSettings = ServeSettings(),
          log_level: str = "info", token: str | None = None, allowed_hosts: tuple[str, ...] = ()) -> None:
    """Serve `model` (a run folder, model name or exported file) until interrupted. Beyond loopback every call
    needs a token: the one given, or one made now and printed.

    Engine threads sleep rather than spin when idle: they share the cores with HTTP handling and decoding.
    """
    import uvicorn

    if workers < 1:
        raise UsageError("the number of server processes must be at least 1")
    if not is_loopback(host) and not token:
        token = secrets.token_urlsafe(24)
    guard = {"hosts": sorted(host_names(host, allowed_hosts)), "token": token}
    threads = max(1, (os.cpu_count() or 1) // workers)
    with listening(host, port) as sock:  # a port in use is said before the model loads
        classifier = load_classifier(model, weights, engine, threads=threads, spin=False)
        shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        print(f"mobiclass serve: http://{shown}:{port}/{'#token=' + token if token else ''}", flush=True)
        if token:
            print(f"token (needed by every API call): {token}", flush=True)
        if workers == 1:
            app = create_app(classifier, settings, Path(model).name, explainer_for(model, weights), guard_from(guard))
            uvicorn.Server(uvicorn.Config(app, log_level=log_level)).run(sockets=[sock])
            return
    # Workers load the file the parent already exported (no export race), on the engine it chose.
    exported = classifier.engine.file
    os.environ[ENVIRONMENT_KEY] = json.dumps({
        "model": str(exported or model), "weights": None if exported else weights, "engine": classifier.engine.name,
        "title": Path(model).name, "source": {"model": model, "weights": weights}, "guard": guard,
        "threads": threads, "settings": dataclasses.asdict(settings)})
    uvicorn.run("mobiclass.serve.server:app_from_environment", factory=True, host=host, port=port,
                workers=workers, log_level=log_level)


def guard_from(config: dict) -> Guard:
    return Guard(frozenset(config["hosts"]), config["token"], TOKEN_PATHS)


def app_from_environment():
    """The app of one worker process, configured by the parent through the environment."""
    import torch

    config = json.loads(os.environ[ENVIRONMENT_KEY])
    torch.set_num_threads(config["threads"])
    classifier = load_classifier(config["model"], config["weights"], config["engine"], progress=False,
                                 threads=config["threads"], spin=False)
    source = config["source"]
    return create_app(classifier, ServeSettings(**config["settings"]), config["title"],
                      explainer_for(source["model"], source["weights"]), guard_from(config["guard"]))


def explainer_for(model: str, weights: str | None) -> Explainer | None:
    """Grad-CAM for `model`, its PyTorch twin loaded on the first request; None for an exported file (no gradients
    to take)."""
    if file_kind(model):
        return None
    return Explainer(lambda: GradCam(load_classifier(model, weights, "torch", progress=False)))


@contextlib.contextmanager
def listening(host: str, port: int):
    """A socket bound to (host, port), or a UsageError saying why not (the port is in use, the address is not this
    machine's), before anything starts."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            reason = "is in use by another program" if exc.errno == errno.EADDRINUSE else \
                f"cannot be used ({exc.strerror or exc})"
            raise UsageError(f"port {port} on {host} {reason}: choose another with --port", code="port") from None
        sock.listen(2048)
        sock.set_inheritable(True)
        yield sock
    finally:
        sock.close()
