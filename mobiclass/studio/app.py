"""The studio's HTTP API (``/api/...``, documented at ``/docs``) and its page; the page calls this API only.

Routes live in routers/, one module per resource, and work through projects.py and jobs.py. No request names a
file on the server: photos, reports and downloads are found from database records. Every request passes the guard
(serve/guard.py) first: the Host header, the token when one is set, and for state changes the proof that the
studio's own page (or a program) sent it.
"""
from __future__ import annotations

import errno
from contextlib import asynccontextmanager
from importlib import resources

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy.exc import OperationalError
from starlette.concurrency import run_in_threadpool

from ..errors import MobiclassError
from ..serve.app import add_json_errors_and_docs
from ..serve.guard import Guard
from ..version import __version__
from .deps import Studio, StudioSettings
from .routers import images, jobs, predictions, projects

PAGE_POLICY = ("default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob: mediastream:; "
               "style-src 'self'; script-src 'self'")
TOKEN_PATHS = ("/api/", "/docs", "/openapi.json")
STATUS = {"not_found": 404, "exists": 409, "finished": 409, "not_ready": 409, "no_model": 409,
          "needs_toolchain": 409, "model_does_not_fit": 409,
          "zip_too_big": 413, "zip_too_slow": 413}
NO_SPACE = "no space left on the device: free some space and try again (nothing was stored)"


def create_studio_app(settings: StudioSettings, sessions) -> FastAPI:
    """The app over a session factory (see server.py, which starts the worker beside it)."""
    studio = Studio(settings, sessions)

    @asynccontextmanager
    async def lifespan(_):
        studio.start()
        yield
        await run_in_threadpool(studio.close)

    app = FastAPI(title="mobiclass studio", version=__version__, docs_url=None, redoc_url=None, lifespan=lifespan,
                  description="Projects, photos, training, evaluation, export and prediction: everything the studio "
                              "page does. With a token, send it as `Authorization: Bearer TOKEN` (or `?token=`). "
                              "A POST that changes something sends JSON or the header `X-Mobiclass: 1`.")
    app.state.studio = studio
    static = resources.files("mobiclass.studio") / "static"
    app.mount("/studio-static", StaticFiles(directory=str(static)), name="studio-static")
    page = (static / "studio.html").read_text(encoding="utf-8")
    capture_page = (static / "capture.html").read_text(encoding="utf-8")
    Guard(settings.hosts, settings.token, TOKEN_PATHS, page_proof=True).install(app)
    add_json_errors_and_docs(app, "mobiclass studio API")

    @app.exception_handler(MobiclassError)
    async def known_error(request: Request, exc: MobiclassError):
        return JSONResponse({"error": str(exc), "code": exc.code}, status_code=STATUS.get(exc.code, 422))

    @app.exception_handler(OSError)
    async def disk_error(request: Request, exc: OSError):
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return JSONResponse({"error": NO_SPACE, "code": "no_space"}, status_code=507)
        raise exc

    @app.exception_handler(OperationalError)
    async def database_error(request: Request, exc: OperationalError):
        if "full" in str(exc.orig):  # SQLite: "database or disk is full"
            return JSONResponse({"error": NO_SPACE, "code": "no_space"}, status_code=507)
        return JSONResponse({"error": "the database is busy or unavailable; try again", "code": "database"},
                            status_code=503)

    for router in (projects.router, images.router, jobs.router, predictions.router):
        app.include_router(router, prefix="/api")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index():
        return HTMLResponse(page, headers={"Content-Security-Policy": PAGE_POLICY})

    @app.get("/capture", response_class=HTMLResponse, include_in_schema=False)
    async def capture():  # a phone's page from the QR code: photos into a class (the token is in its fragment)
        return HTMLResponse(capture_page, headers={"Content-Security-Policy": PAGE_POLICY})

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon():
        return Response((static / "favicon.svg").read_bytes(), media_type="image/svg+xml")

    @app.get("/healthz", include_in_schema=False)
    async def healthz():
        return {"status": "ok"}

    return app
