"""The HTTP API: ``POST /v1/predict``, ``GET /v1/model``, ``/healthz``, ``/metrics`` and the web page at ``/``.

Uploads are read into memory under a hard size bound and parsed there; nothing from a request is
ever written to or read from disk, and no request names a file on the server.
"""
from __future__ import annotations

import asyncio
import ctypes
import dataclasses
import io
import threading
import time
from contextlib import asynccontextmanager
from importlib import resources

import numpy as np
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response
from PIL import Image
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from python_multipart.multipart import MultipartParseError, MultipartParser, parse_options_header
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from swagger_ui_bundle import swagger_ui_path

from ..errors import ImageError, NotAnImageError
from ..runtime import Classifier
from ..version import __version__
from .batcher import MicroBatcher
from .explaining import MAX_EXPLAINED, Explainer

MB = 1024 * 1024
UPLOAD_FIELDS = (b"files", b"file")
PAGE_POLICY = "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'"


@dataclasses.dataclass(frozen=True)
class ServeSettings:
    """Batching and the bounds on each request."""

    max_batch_size: int = 8
    max_wait_ms: float = 0.0  # batch what queued while the engine was busy; see benchmarks/serve_load.py
    max_upload_mb: float = 10.0
    max_images: int = 32
    top_k: int = 5
    # A few kilobytes of PNG can decode to gigabytes: each image is bounded, and at most `max_decodes` are decoded
    # at once, whatever the number of requests.
    max_pixels: int = 40_000_000
    max_request_pixels: int = 160_000_000
    max_decodes: int = 2

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * MB)


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
               explainer: Explainer | None = None) -> FastAPI:
    """A FastAPI app serving `classifier` (shown as `title`: the run's name); the micro-batcher runs while the app
    does. `explainer` answers ``/v1/explain`` (None when only an exported file is served)."""
    metrics = Metrics()
    decoding = threading.BoundedSemaphore(settings.max_decodes)

    def prepare(data: bytes):
        with decoding:
            return classifier.prepare(data, max_pixels=settings.max_pixels)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.batcher = MicroBatcher(classifier.predict_arrays, settings.max_batch_size, settings.max_wait_ms,
                                         on_batch=metrics.record_batch)
        yield
        app.state.batcher.close()

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

    add_json_errors_and_docs(app, "mobiclass API")

    @app.post("/v1/predict", openapi_extra=_PREDICT_BODY,
              summary="Classify one or several images",
              description="Images as the repeatable multipart field `files`, or one image as the raw body. "
                          "Results come in upload order, as `mobiclass predict --format json` gives them.")
    async def predict(request: Request, top_k: int = Query(settings.top_k, ge=1, le=1000),
                      min_confidence: float = Query(0.0, ge=0.0, le=1.0)):
        start = time.perf_counter()
        uploads = await read_uploads(request, settings)
        pixels = check_pixels(uploads, settings)
        prepared = await run_in_threadpool(lambda: [prepare(data) for _, data in uploads])
        if pixels > RELEASE_AFTER_PIXELS:
            release_memory()
        pending = {i: asyncio.wrap_future(request.app.state.batcher.submit(item))
                   for i, item in enumerate(prepared) if isinstance(item, np.ndarray)}
        probabilities = dict(zip(pending, await asyncio.gather(*pending.values())))
        results = [{"path": name, "error": str(item)} if isinstance(item, ImageError) else
                   {"path": name, **classifier.ranked(probabilities[i], top_k, min_confidence)}
                   for i, ((name, _), item) in enumerate(zip(uploads, prepared))]
        metrics.images.labels("classified").inc(len(pending))
        metrics.images.labels("rejected").inc(len(uploads) - len(pending))
        if not pending:
            return JSONResponse(_rejection(prepared, results), status_code=_rejection_status(prepared))
        return {"model": classifier.name, "latency_ms": round((time.perf_counter() - start) * 1000, 2),
                "results": results}

    @app.post("/v1/explain", openapi_extra=_PREDICT_BODY,
              summary="Where the model looked: a Grad-CAM heatmap per image",
              description=f"Up to {MAX_EXPLAINED} images, sent as to /v1/predict. Each result has the explained "
                          "class (`label`: the predicted one unless given), `peak` ([x, y] in the photo's pixels) "
                          "and `heatmap`, a PNG data URL of the crop the model saw with the map drawn over it.")
    async def explain(request: Request, label: str | None = Query(None, description="the class to explain")):
        if explainer is None:
            raise HTTPException(409, "explanations need the PyTorch model: serve a run folder or a model name, "
                                     "not an exported file")
        if label is not None and label not in classifier.class_index:
            raise HTTPException(422, f"unknown class {label!r}: the model's classes are "
                                     f"{', '.join(classifier.classes[:20])}{', ...' if len(classifier.classes) > 20 else ''}")
        start = time.perf_counter()
        uploads = await read_uploads(request, dataclasses.replace(settings, max_images=MAX_EXPLAINED))
        check_pixels(uploads, settings)
        results = await run_in_threadpool(explainer.explain, uploads, label, settings.max_pixels)
        if all("error" in r for r in results):
            return JSONResponse({"error": results[0]["error"], "results": results}, status_code=422)
        return {"model": classifier.name, "latency_ms": round((time.perf_counter() - start) * 1000, 2),
                "results": results}

    @app.get("/v1/model", summary="The model: architecture, classes, preprocessing, engine, limits")
    async def model():
        return {"name": classifier.name, "title": title, **classifier.describe(), "engine": classifier.engine.name,
                "explain": explainer is not None,
                "version": __version__, "top_k": settings.top_k,
                "batching": {"max_batch_size": settings.max_batch_size, "max_wait_ms": settings.max_wait_ms},
                "limits": {"max_upload_bytes": settings.max_upload_bytes, "max_images": settings.max_images,
                           "max_pixels": settings.max_pixels, "max_request_pixels": settings.max_request_pixels}}

    @app.get("/healthz", summary="Liveness: the model is loaded and the batcher runs")
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

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError):
        problems = "; ".join(f"{'.'.join(map(str, e['loc'][1:])) or 'request'}: {e['msg']}" for e in exc.errors())
        return JSONResponse({"error": problems}, status_code=422)

    @app.get("/docs", include_in_schema=False)
    async def docs():
        return get_swagger_ui_html(openapi_url=app.openapi_url, title=title,
                                   swagger_js_url="/docs-assets/swagger-ui-bundle.js",
                                   swagger_css_url="/docs-assets/swagger-ui.css",
                                   swagger_favicon_url="/docs-assets/favicon-32x32.png")


async def read_uploads(request: Request, settings: ServeSettings,
                       fields: dict | None = None) -> list[tuple[str, bytes]]:
    """(name, bytes) of each uploaded image, read within the size bound; HTTP errors for anything else.

    Short text fields of a multipart body go into `fields` when given (the studio's ``label``)."""
    limit = settings.max_upload_bytes
    too_large = f"the request is over the upload limit of {settings.max_upload_mb:g} MB"
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, too_large)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise HTTPException(413, too_large)
    content_type, options = parse_options_header(request.headers.get("content-type", ""))
    if content_type == b"multipart/form-data":
        uploads = _parse_multipart(bytes(body), options.get(b"boundary"), settings.max_images, fields)
    elif content_type.startswith(b"image/") or content_type in (b"", b"application/octet-stream"):
        uploads = [("body", bytes(body))] if body else []
    else:
        raise HTTPException(415, f"unsupported content type {content_type.decode(errors='replace')!r}: send images "
                                 f"as the multipart/form-data field 'files', or one image as the raw body")
    if not uploads:
        raise HTTPException(400, "no image in the request: send images as the multipart/form-data field 'files', "
                                 "or one image as the raw body")
    return uploads


def _parse_multipart(body: bytes, boundary: bytes | None, max_images: int,
                     fields: dict | None = None) -> list[tuple[str, bytes]]:
    """The file parts named `files` of a multipart body, parsed in memory (nothing spooled to disk); other parts
    of at most 1 kB go into `fields` as text when it is given."""
    if not boundary:
        raise HTTPException(400, "multipart/form-data without a boundary")
    uploads: list[tuple[str, bytes]] = []
    part = {"headers": {}, "field": b"", "value": b"", "data": bytearray()}

    def begin():
        part.update(headers={}, field=b"", value=b"", data=bytearray())

    def header_end():
        part["headers"][bytes(part["field"]).lower()] = bytes(part["value"])
        part.update(field=b"", value=b"")

    def end():
        _, options = parse_options_header(part["headers"].get(b"content-disposition", b""))
        if options.get(b"name") not in UPLOAD_FIELDS:
            if fields is not None and b"filename" not in options and len(part["data"]) <= 1024:
                fields[options.get(b"name", b"").decode(errors="replace")] = part["data"].decode(errors="replace")
            return
        uploads.append((options.get(b"filename", b"").decode(errors="replace")[:255] or f"image {len(uploads) + 1}",
                        bytes(part["data"])))
        if len(uploads) > max_images:
            raise HTTPException(413, f"too many images in one request: the limit is {max_images}")

    callbacks = {
        "on_part_begin": begin, "on_header_end": header_end, "on_part_end": end,
        "on_header_field": lambda data, start, stop: part.update(field=part["field"] + data[start:stop]),
        "on_header_value": lambda data, start, stop: part.update(value=part["value"] + data[start:stop]),
        "on_part_data": lambda data, start, stop: part["data"].extend(data[start:stop]),
    }
    try:
        parser = MultipartParser(boundary, callbacks)
        parser.write(body)
        parser.finalize()
    except MultipartParseError as exc:
        raise HTTPException(400, f"malformed multipart body ({exc})") from None
    return uploads


def check_pixels(uploads: list[tuple[str, bytes]], settings: ServeSettings) -> int:
    """The pixels a request would decode, read from the headers before anything is decoded; 413 over the bound."""
    pixels = sum(image_pixels(data) for _, data in uploads)
    if pixels > settings.max_request_pixels:
        raise HTTPException(413, f"the images of this request hold {pixels:,} pixels, over the limit of "
                                 f"{settings.max_request_pixels:,} per request")
    return pixels


def image_pixels(data: bytes) -> int:
    """Width x height from an image's header (0 for bytes that are no image: they get their own error later)."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.width * image.height
    except Exception:  # noqa: BLE001 - anything Pillow cannot identify is judged when it is decoded
        return 0


RELEASE_AFTER_PIXELS = 4_000_000  # decoded buffers this large are worth handing back at once


def release_memory() -> None:
    """Hand freed decoding buffers back to the system (glibc keeps them otherwise), so that one burst of large
    images does not leave the server holding gigabytes."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to do
        pass


def _rejection_status(prepared: list) -> int:
    """415 when nothing sent is an image at all; 422 when an image was sent but cannot be decoded."""
    return 415 if all(isinstance(item, NotAnImageError) for item in prepared) else 422


def _rejection(prepared: list, results: list[dict]) -> dict:
    error = str(prepared[0]) if len(prepared) == 1 else f"none of the {len(prepared)} images could be used"
    return {"error": error, "results": results}


_PREDICT_BODY = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {"type": "object", "required": ["files"], "properties": {
        "files": {"type": "array", "items": {"type": "string", "format": "binary"}}}}},
    "image/*": {"schema": {"type": "string", "format": "binary"}},
}}}
