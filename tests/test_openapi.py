"""`GET /openapi.json` is kept true: schemathesis generates requests for every operation from the server's own
document, sends them to the real server and fails on any 5xx, any status the document does not list, any undocumented
content type, and any response body that breaks the document's schema."""

from __future__ import annotations


import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from function.http.openapi import document

pytestmark = pytest.mark.integration

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
EXAMPLES_PER_OPERATION = 12


@pytest.fixture(scope="module")
def server(start_server, weights):
    # No keys: the generated requests reach the parsers and the model. URLs time out fast (there is no internet here).
    return start_server({"MODEL": str(weights["detect"]), "URL_TIMEOUT_S": "1", "MAX_VIDEO_FRAMES": "5"})


def test_the_document_describes_every_route_of_every_dialect(server):
    from function.http.routes import ROUTES

    document = requests.get(server.url + "/openapi.json", timeout=10).json()
    served = {route.template.replace(":int", "").replace(":path", "") for route in ROUTES}
    undocumented = served - set(document["paths"]) - {"/", "/static/{path}"}  # the page and its files are not an API
    assert not undocumented
    for path, methods in document["paths"].items():
        route = next(route for route in ROUTES if route.template.replace(":int", "") == path)
        assert {m.upper() for m in methods} == set(route.methods), path


def test_the_documented_parameter_ranges_are_the_parsers():
    """Each bounded number the document lists for /predict is accepted at its bounds and refused just outside them by
    the Platform dialect's parser (a video upload, so that `vid_stride` is read too)."""
    from function.dialects import Form, Incoming, Upload, platform
    from function.errors import BadParameter

    video = Upload("file", "walk.mp4", "video/mp4", b"\x00\x00\x00\x18ftypmp42" + bytes(64))
    # The slice_* fields are read beside slice_size, whose maximum is 4 × imgsz.
    beside = {"slice_size": [("imgsz", "1280")], "slice_overlap": [("slice_size", "640")],
              "slice_threshold": [("slice_size", "640")]}

    def parse(name: str, value) -> None:
        fields = [(name, str(value)), *beside.get(name, [])]
        platform.parse(Incoming(method="POST", path="/predict", form=Form(fields=fields, files=[video])))

    fields = document()["paths"]["/predict"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]["properties"]
    bounded = {name: field for name, field in fields.items() if "minimum" in field and "maximum" in field}
    assert {"conf", "iou", "imgsz", "vid_stride"} <= set(bounded), sorted(fields)
    for name, field in bounded.items():
        step = 1 if field["type"] == "integer" else 1e-3
        for inside in (field["minimum"], field["maximum"]):
            parse(name, inside)
        for outside in (field["minimum"] - step, field["maximum"] + step):
            with pytest.raises(BadParameter, match=name):
                parse(name, outside)


def _operations() -> list[tuple[str, str]]:
    """Every operation the router answers (http/routes.py, the table requests are dispatched by: not the document),
    as the document names its path; the page and its files are not an API."""
    from function.http.routes import ROUTES

    return [(route.template.replace(":int", ""), method) for route in ROUTES
            if route.template not in ("/", "/static/{path:path}") for method in route.methods]


OPERATIONS = _operations()


@pytest.fixture(scope="module")
def served(server) -> dict:
    """The document as the server serves it: what clients and schemathesis read."""
    return requests.get(server.url + "/openapi.json", timeout=10).json()


@pytest.mark.parametrize("path, method", OPERATIONS, ids=[f"{m} {p}" for p, m in OPERATIONS])
def test_the_server_keeps_its_own_document(server, served, path, method):
    assert method.lower() in served["paths"].get(path, {}), f"{method} {path} is served but not documented"
    operation = schemathesis.openapi.from_dict(served)[path][method]

    # schemathesis' pytest plugin does not run on this pytest; its strategies and checks are used directly.
    @given(case=operation.as_strategy())
    @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    def calls(case):
        case.call_and_validate(base_url=server.url, checks=CHECKS, timeout=60)

    calls()
