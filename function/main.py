"""The HTTP function functions-framework serves: Flask request in, response out; the work is in plain functions."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import flask
import functions_framework
from werkzeug.exceptions import HTTPException

from function.errors import ModelNotFound, ServiceError, TooLarge, from_http_status
from function.logs import log, trace_fields
from function.params import parse_params
from function.service import SERVICE_KEY

STATIC_DIR = Path(__file__).with_name("static")
_MODEL_PREDICT = re.compile(r"^/api/models/(?P<model_id>[^/]+)/predict/?$")


def json_response(body: dict, status: int = 200, headers: dict | None = None) -> flask.Response:
    return flask.Response(json.dumps(body), status=status, mimetype="application/json", headers=headers)


def error_response(error: ServiceError) -> flask.Response:
    headers = {"Retry-After": "1"} if error.status in (429, 503) else None
    if error.status == 401:
        headers = {"WWW-Authenticate": 'Bearer realm="predict"'}
    return json_response(error.body(), error.status, headers)


# Past this much, an oversized body is not read to the end: the connection is closed instead.
_DRAIN_LIMIT = 64 * 2**20
_UNREAD_BODY = "yolo.unread_body"


def refuse_oversized_body(request: flask.Request, settings) -> None:
    """413 before parsing when Content-Length already says the body is too big; the body is drained, not parsed."""
    declared = request.content_length
    if declared is None or declared <= settings.max_body_bytes:
        return
    if declared <= _DRAIN_LIMIT:
        for _ in iter(lambda: request.stream.read(2**16), b""):
            pass
    else:
        request.environ[_UNREAD_BODY] = True
    raise TooLarge(f"Upload is over MAX_UPLOAD_MB={settings.max_upload_bytes // 2**20}")


def read_upload(request: flask.Request, max_bytes: int) -> bytes | None:
    upload = request.files.get("file") or request.files.get("image")
    if upload is None:
        return None
    data = upload.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise TooLarge(f"Upload is over MAX_UPLOAD_MB={max_bytes // 2**20}")
    return data


def predict(request: flask.Request, service, started: float) -> flask.Response:
    service.check_api_key(request.headers.get("Authorization"), request.headers.get("X-Api-Key"))
    match = _MODEL_PREDICT.match(request.path)
    if match and service.settings.model_id and match["model_id"] != service.settings.model_id:
        raise ModelNotFound("Model not found")
    service.require_ready()
    refuse_oversized_body(request, service.settings)
    params = parse_params(request.form, request.args)
    source = request.form.get("source") or request.form.get("url") or request.args.get("source") or request.args.get("url")
    data = service.image_bytes(read_upload(request, service.settings.max_upload_bytes), source)
    return json_response(service.predict(data, params, started))


def healthz(request, service, started) -> flask.Response:
    return json_response({"status": "ok"})


def readyz(request, service, started) -> flask.Response:
    service.require_ready()
    return json_response({"status": "ready", "model": service.model.name, "task": service.model.task})


def page(request, service, started) -> flask.Response:
    return flask.send_from_directory(STATIC_DIR, "index.html", max_age=0)


def static_file(request, service, started) -> flask.Response:
    return flask.send_from_directory(STATIC_DIR, request.path.removeprefix("/static/"), max_age=3600)


ROUTES = {
    "/predict": {"POST": predict},
    "/healthz": {"GET": healthz},
    "/readyz": {"GET": readyz},
    "/": {"GET": page},
}


def route(path: str) -> dict:
    if path in ROUTES:
        return ROUTES[path]
    if _MODEL_PREDICT.match(path):
        return ROUTES["/predict"]
    if path.startswith("/static/"):
        return {"GET": static_file}
    raise from_http_status(404, f"No route for {path}")


def dispatch(request: flask.Request, service, started: float) -> flask.Response:
    handlers = route(request.path)
    method = "GET" if request.method == "HEAD" else request.method
    if method == "OPTIONS":  # a CORS preflight or a client asking; the CORS headers, if on, are added by the app
        return flask.Response(status=204, headers={"Allow": ", ".join([*handlers, "OPTIONS"])})
    if method not in handlers:
        raise from_http_status(405, f"{request.method} is not allowed on {request.path}; use {', '.join(handlers)}")
    return handlers[method](request, service, started)


def log_request(request: flask.Request, response: flask.Response, started: float, project: str | None) -> None:
    latency = time.monotonic() - started
    extra = {
        "httpRequest": {
            "requestMethod": request.method,
            "requestUrl": request.path,
            "status": response.status_code,
            "latency": f"{latency:.6f}s",
            "userAgent": request.headers.get("User-Agent", ""),
            "remoteIp": request.headers.get("X-Forwarded-For", request.remote_addr or "").split(",")[0].strip(),
            "requestSize": str(request.content_length or 0),
            "responseSize": str(response.calculate_content_length() or 0),
            "protocol": request.environ.get("SERVER_PROTOCOL", ""),
        },
        **trace_fields(request.headers.get("X-Cloud-Trace-Context"), project),
    }
    severity = 40 if response.status_code >= 500 else 30 if response.status_code >= 400 else 20
    log.log(severity, f"{request.method} {request.path} {response.status_code} {latency * 1000:.1f} ms", extra=extra)


@functions_framework.http
def endpoint(request: flask.Request) -> flask.Response:
    started = time.monotonic()
    service = flask.current_app.extensions[SERVICE_KEY]
    try:
        response = dispatch(request, service, started)
    except ServiceError as error:
        response = error_response(error)
    except HTTPException as exc:  # raised by Werkzeug while parsing, e.g. a body over MAX_CONTENT_LENGTH
        message = f"Upload is over MAX_UPLOAD_MB={service.settings.max_upload_bytes // 2**20}" if exc.code == 413 else exc.description
        response = error_response(from_http_status(exc.code or 500, message))
    except Exception:
        log.exception("unhandled error while serving a request")
        response = error_response(ServiceError("Internal server error; the request was not completed"))
    if request.environ.get(_UNREAD_BODY):
        # A streamed response is one functions-framework does not drain the body for; the connection just closes.
        response = flask.Response(iter([response.get_data()]), response.status_code, response.headers)
        response.headers["Connection"] = "close"
    log_request(request, response, started, service.settings.project)
    return response
