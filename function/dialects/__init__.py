"""Dialects: the request and response shapes of the APIs our clients were written against.

A dialect is one small module at the edge. It says where its clients put the API key and the model id, turns an
`Incoming` request (plain values, no web types) into the core's `PredictRequest`, and turns the core's `Prediction`
(Ultralytics `Results`) or a `ServiceError` into its own `Reply`. Reading bodies, auth, limits, decoding, the model,
errors and logging are the core's; a dialect knows none of them. Routes are in `function/http/routes.py`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Callable, Mapping, Protocol

from ..core.requests import Prediction, PredictRequest
from ..errors import BadParameter, ServiceError
from ..settings import DialectSettings


@dataclass(frozen=True)
class Upload:
    """One file part of a multipart form."""

    field: str
    filename: str
    content_type: str
    data: bytes


@dataclass
class Form:
    """A parsed form: text fields and file parts, each in the order the client sent them."""

    fields: list[tuple[str, str]] = field(default_factory=list)
    files: list[Upload] = field(default_factory=list)

    def values(self, name: str) -> list[str]:
        return [value for key, value in self.fields if key == name]


@dataclass
class Incoming:
    """A request as a dialect sees it."""

    method: str
    path: str
    path_params: dict[str, str] = field(default_factory=dict)
    query: list[tuple[str, str]] = field(default_factory=list)
    headers: Mapping[str, str] = field(default_factory=dict)  # names in lower case
    content_type: str = ""  # the media type only, lower case: "multipart/form-data", "application/json"...
    form: Form | None = None  # a multipart or urlencoded body, parsed
    body: bytes | None = None  # any other body, and the raw bytes of an urlencoded one
    settings: DialectSettings = DialectSettings()  # MODEL_ID and HUB_V1_DATA: all of the configuration a dialect sees
    # The edge's API-key check, for a system route whose key is in the body (Roboflow's /model/add): raises
    # Unauthorized. Predict routes never call it: the edge checks their key before the dialect parses.
    authorize: Callable[[str | None], None] | None = None
    # The loaded model's task, set by the edge before parse: a route made for one task refuses another before inference.
    model_task: str | None = None
    _json: object = field(default=None, repr=False)

    def query_values(self, name: str) -> list[str]:
        return [value for key, value in self.query if key == name]

    def json(self):
        """The body as JSON (parsed once); BadParameter when it is not JSON."""
        if self._json is None:
            try:
                self._json = json.loads(self.body or b"")
            except (ValueError, UnicodeDecodeError):
                raise BadParameter("The request body is not valid JSON") from None
        return self._json


@dataclass
class Reply:
    status: int
    body: dict | list | bytes
    media_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


class Dialect(Protocol):
    name: str
    # True when clients may send the key inside the body (a JSON field): the core then reads the body before auth.
    key_in_body: bool

    def api_key(self, incoming: Incoming) -> str | None: ...

    def model_id(self, incoming: Incoming) -> str | None:
        """The model id the client addressed (checked against MODEL_ID), or None when the route names none."""

    def parse(self, incoming: Incoming) -> PredictRequest: ...

    def encode(self, request: PredictRequest, prediction: Prediction) -> Reply:
        """Runs in the CPU pool, off the event loop: drawing an annotated image is fine here."""

    def error(self, error: ServiceError) -> Reply: ...


def bearer_or_x_api_key(incoming: Incoming) -> str | None:
    """The key as the Platform and HUB clients send it: `Authorization: Bearer KEY`, else `x-api-key: KEY`."""
    authorization = incoming.headers.get("authorization", "")
    if authorization[:7].lower() == "bearer ":
        return authorization[7:].strip()
    return incoming.headers.get("x-api-key") or None


def retry_headers(error: ServiceError) -> dict[str, str]:
    """Retry-After on 429 and 503: when to come back."""
    if error.status in (429, 503):
        return {"Retry-After": str(getattr(error, "retry_after_s", 1))}
    return {}
