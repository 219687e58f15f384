"""The HTTP API: ``POST /v1/predict``, ``GET /v1/model``, ``/healthz``, ``/metrics`` and the web page at ``/``.

Uploads are read into memory under a hard size bound and parsed there; nothing from a request is
ever written to or read from disk, and no request names a file on the server.
"""
from __future__ import annotations

import dataclasses
import time
from contextlib import asynccontextmanager
from importlib import resources

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from swagger_ui_bundle import swagger_ui_path

from ..runtime import Classifier
from ..version import __version__
from .classifying import Rejected, UploadClassifier
from .explaining import MAX_EXPLAINED, Explainer
from .guard import Guard, host_names
from .schemas import ExplainOut, Health, ModelOut, PredictOut, RejectedOut, errors
from .uploads import ServeSettings, check_pixels, read_uploads

PAGE_POLICY = "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'"
LOCAL = Guard(host_names("127.0.0.1"))
TOKEN_PATHS = ("/v1/", "/docs", "/openapi.json", "/metrics")


class Metrics:
    """Prometheus series of one app (its own registry, so several apps can live in one process)."""

    def __init__(self):
        self.registry = CollectorRegistry()
        self.requests = Counter("mobiclass_requests", "HTTP requests", ["route", "status"], registry=self.registry)
        self.latency = Histogram("mobiclass_request_seconds", "Request latency", ["route"], registry=self.registry,
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
        self.images = Counter("mobiclass_images", "Images received", ["outcome"], registry=self.registry)
        self.batch_size = Histogram("mobiclass_batch_size", "Images per forward pass", registry=self.registry,
                                    buckets=(1, 2, 4, 8, 16, 32, 64, 128))
        self.inference = Histogram("mobiclass_inference_seconds", "Forward pass time per batch",
                                   registry=self.registry, buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                                                    0.25, 0.5, 1))

    def record_batch(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.inference.observe(seconds)


def create_app(classifier: Classifier, settings: ServeSettings = ServeSettings(), title: str = "",
               explainer: Explainer | None = None, guard: Guard = LOCAL) -> FastAPI:
    """A FastAPI app serving `classifier` (shown as `title`: the run's name); the micro-batcher runs while the app
    does. `explainer` answers ``/v1/explain`` (None when only an exported file is served); `guard` says who may call
    (by default: this machine, no token)."""
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.classifying = UploadClassifier(classifier, settings, on_batch=metrics.record_batch)
        yield
        app.state.classifying.close()

    app = FastAPI(title="mobiclass", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  description=f"Image classification with {title or classifier.name} ({classifier.architecture}, "
                              f"{len(classifier.classes)} classes).")
    static = resources.files("mobiclass.serve") / "static"
    page = (static / "index.html").read_text(encoding="utf-8")
    app.mount("/static", StaticFiles(directory=str(static)), name="static")

    @app.middleware("http")
    async def count_requests(request: Request, call_next):
        start = time.perf_counter()
        response = await call_next(request)
        route = getattr(request.scope.get("route"), "path", "unmatched")
        metrics.requests.labels(route, str(response.status_code)).inc()
        metrics.latency.labels(route).observe(time.perf_counter() - start)
        return response

    guard.install(app)
    add_json_errors_and_docs(app, "mobiclass API")

    @app.post("/v1/predict", openapi_extra=_PREDICT_BODY, response_model=PredictOut, response_model_exclude_none=True,
              responses={**errors(400, 401, 403, 413), 415: {"model": RejectedOut}, 422: {"model": RejectedOut}},
              summary="Classify one or several images",
              description="Images as the repeatable multipart field `files`, or one image as the raw body. "
                          "Results come in upload order, as `mobiclass predict --format json` gives them.")
    async def predict(request: Request, top_k: int = Query(settings.top_k, ge=1, le=1000),
                      min_confidence: float = Query(0.0, ge=0.0, le=1.0)):
        start = time.perf_counter()
        uploads = await read_uploads(request, settings)
        try:
            results = await request.app.state.classifying.classify(uploads, top_k, min_confidence)
        except Rejected:
            metrics.images.labels("rejected").inc(len(uploads))
            raise
        classified = sum("error" not in r for r in results)
        metrics.images.labels("classified").inc(classified)
        metrics.images.labels("rejected").inc(len(uploads) - classified)
        return {"model": classifier.name, "latency_ms": round((time.perf_counter() - start) * 1000, 2),
                "results": results}

    @app.post("/v1/explain", openapi_extra=_PREDICT_BODY, response_model=ExplainOut, response_model_exclude_none=True,
              responses={**errors(400, 401, 403, 409, 413, 415), 422: {"model": ExplainOut}},
              summary="Where the model looked: a Grad-CAM heatmap per image",
              description=f"Up to {MAX_EXPLAINED} images, sent as to /v1/predict. Each result has the explained "
                          "class (`label`: the predicted one unless given), `peak` ([x, y] in the photo's pixels) "
                          "and `heatmap`, a PNG data URL of the crop the model saw with the map drawn over it.")
    async def explain(request: Request, label: str | None = Query(None, description="the class to explain")):
        if explainer is None:
            raise HTTPException(409, "explanations need the PyTorch model: serve a run folder or a model name, "
                                     "not an exported file")
        if label is not None and label not in classifier.class_index:
            more = ", ..." if len(classifier.classes) > 20 else ""
            raise HTTPException(422, f"unknown class {label!r}: the model's classes are "
                                     f"{', '.join(classifier.classes[:20])}{more}")
        start = time.perf_counter()
        uploads = await read_uploads(request, dataclasses.replace(settings, max_images=MAX_EXPLAINED))
        check_pixels(uploads, settings)
        results = await run_in_threadpool(explainer.explain, uploads, label, settings.max_pixels)
        if all("error" in r for r in results):
            return JSONResponse({"error": results[0]["error"], "results": results}, status_code=422)
        return {"model": classifier.name, "latency_ms": round((time.perf_counter() - start) * 1000, 2),
                "results": results}

    @app.get("/v1/model", response_model=ModelOut, responses=errors(401, 403),
             summary="The model: architecture, classes, preprocessing, engine, limits")
    async def model():
        return {"name": classifier.name, "title": title, **classifier.describe(), "engine": classifier.engine.name,
                "explain": explainer is not None,
                "version": __version__, "top_k": settings.top_k,
                "batching": {"max_batch_size": settings.max_batch_size, "max_wait_ms": settings.max_wait_ms},
                "limits": {"max_upload_bytes": settings.max_upload_bytes, "max_images": settings.max_images,
                           "max_pixels": settings.max_pixels, "max_request_pixels": settings.max_request_pixels}}

    @app.get("/healthz", response_model=Health, responses=errors(403),
             summary="Liveness: the model is loaded and the batcher runs")
    async def healthz():
        return {"status": "ok"}

    @app.get("/metrics", summary="Prometheus metrics", include_in_schema=False)
    async def prometheus():
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index():
        return HTMLResponse(page, headers={"Content-Security-Policy": PAGE_POLICY})

    return app


def add_json_errors_and_docs(app: FastAPI, title: str) -> None:
    """Errors as ``{"error": ...}`` JSON (never an HTML page), and Swagger UI at /docs from the installed bundle
    rather than a CDN: shared by the service and the studio."""
    app.mount("/docs-assets", StaticFiles(directory=swagger_ui_path), name="docs-assets")

    @app.exception_handler(StarletteHTTPException)
    async def json_error(request: Request, exc: StarletteHTTPException):
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Rejected)
    async def rejected(request: Request, exc: Rejected):
        return JSONResponse(exc.body, status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError):
        return JSONResponse({"error": "; ".join(map(_problem, exc.errors())), "code": "bad_request"},
                            status_code=422)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception):  # the traceback goes to the server's log only
        return JSONResponse({"error": f"internal error ({type(exc).__name__}); the server's log has the details",
                             "code": "internal"}, status_code=500)

    @app.get("/docs", include_in_schema=False)
    async def docs():
        return get_swagger_ui_html(openapi_url=app.openapi_url, title=title,
                                   swagger_js_url="/docs-assets/swagger-ui-bundle.js",
                                   swagger_css_url="/docs-assets/swagger-ui.css",
                                   swagger_favicon_url="/docs-assets/favicon-32x32.png")


PROBLEMS = {  # pydantic's error types, said as the rest of mobiclass says them
    "extra_forbidden": "{field} is not an option here",
    "missing": "{field} is required",
    "literal_error": "{field} must be one of {expected}",
    "enum": "{field} must be one of {expected}",
    "greater_than_equal": "{field} must be at least {ge}",
    "greater_than": "{field} must be above {gt}",
    "less_than_equal": "{field} must be at most {le}",
    "less_than": "{field} must be below {lt}",
    "string_too_short": "{field} must have at least {min_length} character(s)",
    "string_too_long": "{field} must have at most {max_length} characters",
    "string_pattern_mismatch": "{field} must match {pattern}",
    "invalid_choice": "{field} must be {choices}",
}


def _problem(error: dict) -> str:
    """One validation error as a sentence: 'epochs must be at least 0', 'board must be one of laptop, phone'."""
    location = [str(part) for part in error.get("loc", ())[1:]]
    field = ".".join(location) or "the request body"
    context = {k: str(v).replace("'", "") for k, v in (error.get("ctx") or {}).items()}
    template = PROBLEMS.get(error.get("type", ""))
    try:
        return template.format(field=field, **context) if template else f"{field}: {error['msg']}"
    except KeyError:
        return f"{field}: {error['msg']}"


_PREDICT_BODY = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {"type": "object", "required": ["files"], "properties": {
        "files": {"type": "array", "items": {"type": "string", "format": "binary"}}}}},
    "image/*": {"schema": {"type": "string", "format": "binary"}},
}}}
