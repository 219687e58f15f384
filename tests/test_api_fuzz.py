"""The studio's and the service's APIs fuzzed from their own OpenAPI schemas (schemathesis, property-based): over real
HTTP, every operation gets generated requests, valid and not; none may answer 5xx, and every answer must have a
status the schema documents and match the schema given for it."""
from __future__ import annotations

import io

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (content_type_conformance, response_schema_conformance,
                                               status_code_conformance)

from helpers import BackgroundServer
from mobiclass.studio.server import build_studio

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
PROGRAM = {"X-Mobiclass": "1"}
FUZZ = settings(max_examples=6, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def studio_schema(tmp_path_factory):
    """The schema of a studio holding one project (two classes of three photos, a queued training job), whose ids
    half of the generated requests use, so that they reach past the 404s."""
    home = tmp_path_factory.mktemp("fuzzed-studio")
    with BackgroundServer(build_studio(home, start_worker=False)) as server, \
            httpx.Client(base_url=server.url, headers=PROGRAM) as http:
        project = http.post("/api/projects", json={"name": "seed"}).json()["id"]
        for n, label in enumerate(("red", "blue")):
            http.post(f"/api/projects/{project}/images", data={"label": label},
                      files=[("files", (f"{i}.png", png((90 * n, 20 * i, 9)), "image/png")) for i in range(3)])
        seeded = http.get(f"/api/projects/{project}").json()
        known = {"project_id": project, "class_id": seeded["classes"][0]["id"],
                 "image_id": http.get(f"/api/projects/{project}/images").json()["images"][0]["id"],
                 "job_id": http.post(f"/api/projects/{project}/train", json={"epochs": 1}).json()["job"]}
        yield schemathesis.openapi.from_url(f"{server.url}/openapi.json"), known


@pytest.fixture(scope="module")
def service_schema():
    from mobiclass import load_classifier
    from mobiclass.serve import create_app

    with BackgroundServer(create_app(load_classifier("efficientnet_lite0", engine="onnxruntime"))) as server:
        yield schemathesis.openapi.from_url(f"{server.url}/openapi.json"), {}


def png(colour, size=(32, 32)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, "PNG")
    return buffer.getvalue()


def fuzz(schema, known: dict[str, int], headers: dict | None = None) -> list[str]:
    """Run every operation of `schema` with generated requests, half of them on the `known` ids; the failures, as
    text (none expected)."""
    failures = []
    operations = [result.ok() for result in schema.get_all_operations()]
    for operation in sorted(operations, key=lambda o: o.method.upper() == "DELETE"):  # the known ids last long

        @FUZZ
        @given(case=operation.as_strategy(), on_known=st.booleans())
        def call(case, on_known):
            if on_known:
                case.path_parameters = {k: known.get(k, v) for k, v in (case.path_parameters or {}).items()}
            case.call_and_validate(headers=headers, checks=CHECKS)
        try:
            call()
        except Exception as exc:  # noqa: BLE001 - collect every operation's failure, then report them all
            failures.append(f"{operation.label}: {exc}")
    return failures


def test_the_studio_api_never_fails_on_generated_requests(studio_schema):
    schema, known = studio_schema
    schema = schema.exclude(path_regex=r"/events$")  # a stream that lasts as long as its job
    assert len(list(schema.get_all_operations())) >= 20
    assert fuzz(schema, known, PROGRAM) == []


def test_the_service_api_never_fails_on_generated_requests(service_schema):
    assert fuzz(*service_schema) == []
