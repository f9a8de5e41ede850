"""The HTTP edge: a Starlette request in, a response out. Routing, the early refusals, reading the body under its
limits and deadline, the dialect's predict, the structured log line and the metrics — the same for every route."""

from __future__ import annotations

import asyncio
import json
import re
import time
from dataclasses import dataclass
from urllib.parse import parse_qsl

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from .. import metrics
from ..core.service import Service
from ..dialects import Dialect, Incoming, Reply, platform
from ..errors import (
    ClientGone,
    HeadersTooLarge,
    InferenceTimeout,
    RequestTimeout,
    ServiceError,
    UriTooLong,
)
from ..logs import log, trace_fields
from ..settings import DialectSettings
from . import routes
from .auth import ApiKeys
from .body import BodyLimits, BufferBudget, multipart_boundary, parse_urlencoded, read_body, read_multipart

# What a request line and headers may take before the request is refused (414, 431) by us, in our JSON; the server's
# own hard limit (h11) is set above these, so only a grossly oversized request gets the server's bare answer.
MAX_TARGET_BYTES = 8 * 1024
MAX_HEADER_BYTES = 32 * 1024


def body_limits(settings) -> BodyLimits:
    return BodyLimits(
        max_body=settings.max_body_bytes,
        # A file part may be a video: the image cap (MAX_UPLOAD_MB) is applied once the file is known to be an image.
        max_file=max(settings.max_upload_bytes, settings.max_video_bytes),
        max_field=settings.max_field_bytes,
        max_files=settings.max_images,
        file_rule=f"MAX_UPLOAD_MB={settings.max_upload_bytes // 2**20} for an image, "
                  f"MAX_VIDEO_MB={settings.max_video_bytes // 2**20} for a video",
        files_rule=f"MAX_IMAGES={settings.max_images} × MAX_UPLOAD_MB={settings.max_upload_bytes // 2**20}",
    )


@dataclass(frozen=True)
class Edge:
    """What the edge keeps for the process: the core's service, the API keys, the budget of bodies in memory, and the
    few settings a dialect may read."""

    service: Service
    api_keys: ApiKeys
    buffers: BufferBudget
    dialect_settings: DialectSettings

    @classmethod
    def around(cls, service: Service) -> "Edge":
        settings = service.settings
        return cls(service, ApiKeys(settings.api_keys), BufferBudget(settings.max_buffered_bytes), settings.dialects)


class _Exchange:
    """One request's state on its way through: the Starlette request, what was read, when it started."""

    def __init__(self, request: Request, edge: Edge, started: float):
        self.request, self.edge, self.started = request, edge, started
        self.body_read = False
        self.deadline = asyncio.get_running_loop().time() + edge.service.settings.request_timeout_s

    @property
    def service(self) -> Service:
        return self.edge.service

    def incoming(self, path_params: dict) -> Incoming:
        request = self.request
        media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        return Incoming(
            method=request.method,
            path=request.url.path,
            path_params=path_params,
            query=_query_pairs(request.scope.get("query_string", b"")),
            headers={k.decode("latin-1").lower(): v.decode("latin-1") for k, v in request.scope["headers"]},
            content_type=media_type,
            settings=self.edge.dialect_settings,
            authorize=self.edge.api_keys.check,
        )

    def refuse_declared_length(self, limits: BodyLimits) -> None:
        declared = self.request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limits.max_body:
            raise limits.too_large(f"The request body ({int(declared)} bytes)")

    async def read(self, incoming: Incoming, limits: BodyLimits) -> None:
        """Read the body into `incoming` (a form when it is one), under its caps, before the request's deadline."""
        stream = self._chunks()
        try:
            async with asyncio.timeout_at(self.deadline):
                if incoming.content_type == "multipart/form-data":
                    boundary = multipart_boundary(self.request.headers.get("content-type", ""))
                    incoming.form = await read_multipart(stream, boundary, limits, self.edge.buffers)
                else:
                    incoming.body = await read_body(stream, limits, self.edge.buffers)
                    if incoming.content_type == "application/x-www-form-urlencoded":
                        # Off the loop: a 13 MB base64 `source` takes tens of milliseconds to unquote.
                        incoming.form = await self.service.run_cpu(parse_urlencoded, incoming.body, limits)
        except TimeoutError:
            raise RequestTimeout(
                f"The request was not received within REQUEST_TIMEOUT_S={self.service.settings.request_timeout_s:g} s"
            ) from None
        except ClientDisconnect:
            raise ClientGone("the client closed the connection while sending the request") from None

    async def _chunks(self):
        async for chunk in self.request.stream():
            yield chunk
        self.body_read = True


def _query_pairs(query_string: bytes) -> list[tuple[str, str]]:
    return parse_qsl(query_string.decode("latin-1"), keep_blank_values=True, max_num_fields=256)


async def serve_predict(dialect: Dialect, exchange: _Exchange, incoming: Incoming) -> Reply:
    service, settings = exchange.service, exchange.service.settings
    limits = body_limits(settings)
    key = dialect.api_key(incoming)
    if key is None and dialect.key_in_body:
        exchange.refuse_declared_length(limits)
        await exchange.read(incoming, limits)
        key = dialect.api_key(incoming)
    exchange.edge.api_keys.check(key)
    if dialect.key_in_body:  # its model id is in the body too
        await _read_once(exchange, incoming, limits)
    model_id = service.resolve(dialect.model_id(incoming))
    try:
        async with asyncio.timeout_at(exchange.deadline):
            lease = await service.acquire(model_id)
    except TimeoutError:
        raise InferenceTimeout(f"Model {model_id!r} did not load within REQUEST_TIMEOUT_S={settings.request_timeout_s:g} s") from None
    try:
        incoming.model_task = lease.model.task
        await _read_once(exchange, incoming, limits)
        request = dialect.parse(incoming)
        try:
            async with asyncio.timeout_at(exchange.deadline):
                return await service.predict(request, exchange.started, dialect.encode, lease)
        except TimeoutError:
            raise InferenceTimeout(f"The request did not finish within REQUEST_TIMEOUT_S={settings.request_timeout_s:g} s") from None
    finally:
        _release(lease)


def _release(lease) -> None:
    """The request is over, answered or not: giving its model back is ours to get right, never a reason to turn its
    answer (or its error) into another one. A failure here is logged with its stack."""
    try:
        lease.release()
    except Exception:
        log.exception("releasing a request's model lease failed; its answer stands")


async def _read_once(exchange: _Exchange, incoming: Incoming, limits: BodyLimits) -> None:
    if not exchange.body_read and incoming.form is None and incoming.body is None:
        exchange.refuse_declared_length(limits)
        await exchange.read(incoming, limits)


def _check_request_size(request: Request) -> None:
    target = len(request.scope.get("raw_path", b"")) + len(request.scope.get("query_string", b""))
    if target > MAX_TARGET_BYTES:
        raise UriTooLong(f"The request URL is over {MAX_TARGET_BYTES} bytes")
    headers = sum(len(k) + len(v) + 4 for k, v in request.scope["headers"])
    if headers > MAX_HEADER_BYTES:
        raise HeadersTooLarge(f"The request headers are over {MAX_HEADER_BYTES} bytes")


async def handle(request: Request, edge: Edge) -> Response:
    started = time.monotonic()
    service = edge.service
    exchange = _Exchange(request, edge, started)
    route_name, dialect = routes.UNMATCHED, platform
    try:
        _check_request_size(request)
        route, handler, path_params = routes.match(request.method, request.url.path)
        route_name = route.template
        incoming = exchange.incoming(path_params)
        if handler is None:  # OPTIONS: a CORS preflight or a client asking
            reply = Reply(204, b"", headers={"Allow": ", ".join([*route.methods, "OPTIONS"])})
        elif callable(handler):
            if getattr(handler, "reads_body", False):  # a system route with a small body (Roboflow's /model/add)
                limits = body_limits(service.settings)
                exchange.refuse_declared_length(limits)
                await exchange.read(incoming, limits)
            reply = await handler(incoming, service)
        else:
            dialect = handler
            reply = await serve_predict(dialect, exchange, incoming)
    except ClientGone as gone:
        reply = Reply(gone.status, b"")
    except ServiceError as error:
        reply = dialect.error(error)
    except Exception:
        log.exception("unhandled error while serving a request")
        reply = dialect.error(ServiceError("Internal server error; the request was not completed"))
    response = _response(reply, request, service.settings.cors_origins)
    if not exchange.body_read and _has_body(request):
        # Answered before the body was read (refused early): close rather than read the rest; the server lingers
        # briefly so the client still sees this answer.
        response.headers["Connection"] = "close"
    _log_and_count(request, reply, response, route_name, started, service.settings)
    return response


def _has_body(request: Request) -> bool:
    length = request.headers.get("content-length")
    return (length is not None and length != "0") or "chunked" in request.headers.get("transfer-encoding", "").lower()


def _response(reply: Reply, request: Request, cors_origins: tuple[str, ...]) -> Response:
    body = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
    response = Response(body, reply.status, headers=reply.headers, media_type=reply.media_type if body or reply.status != 204 else None)
    origin = request.headers.get("origin", "")
    if origin and cors_origins and ("*" in cors_origins or origin in cors_origins):
        response.headers["Access-Control-Allow-Origin"] = "*" if "*" in cors_origins else origin
        response.headers.append("Vary", "Origin")
        if request.method == "OPTIONS":
            response.headers["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
            response.headers["Access-Control-Allow-Headers"] = "Authorization, X-Api-Key, Content-Type"
            response.headers["Access-Control-Max-Age"] = "3600"
    return response


_TRACE = re.compile(r"[0-9a-fA-F]{32}(/[0-9]{1,20})?(;o=[0-9])?")


def client_ip(request: Request, hops: int) -> str:
    """The caller's address: with `hops` proxies in front (Google's front end is one), the entry the outermost one
    appended to X-Forwarded-For, counted from the right; never the leftmost entries, which the client writes."""
    peer = request.client.host if request.client else ""
    if hops <= 0:
        return peer
    entries = [e.strip() for e in request.headers.get("x-forwarded-for", "").split(",") if e.strip()]
    return entries[-hops] if len(entries) >= hops else peer


def _log_and_count(request: Request, reply: Reply, response: Response, route: str, started: float, settings) -> None:
    latency = time.monotonic() - started
    status = reply.status
    metrics.REQUESTS.labels(route, request.method, str(status)).inc()
    metrics.REQUEST_SECONDS.labels(route).observe(latency)
    trace = request.headers.get("x-cloud-trace-context", "")
    extra = {
        "httpRequest": {
            "requestMethod": request.method,
            "requestUrl": request.url.path,
            "status": status,
            "latency": f"{latency:.6f}s",
            "userAgent": request.headers.get("user-agent", ""),
            "remoteIp": client_ip(request, settings.forwarded_hops),
            "requestSize": request.headers.get("content-length", "0") if request.headers.get("content-length", "").isdigit() else "0",
            "responseSize": str(len(response.body)),
            "protocol": f"HTTP/{request.scope.get('http_version', '1.1')}",
        },
        **(trace_fields(trace, settings.project) if _TRACE.fullmatch(trace) else {}),
    }
    if status == 499:
        severity, message = 30, f"{request.method} {request.url.path}: the client went away ({latency * 1000:.1f} ms)"
    else:
        quiet = status == 503 and route in ("/readyz", "/healthz")  # polled while the model loads: expected
        severity = 20 if status < 400 or quiet else 40 if status == 500 else 30
        message = f"{request.method} {request.url.path} {status} {latency * 1000:.1f} ms"
    log.log(severity, message, extra=extra)
