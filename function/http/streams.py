"""GET /stream and GET /api/models/{model_id}/stream: live frames over a WebSocket (an HTTP/1.1 upgrade on the same
port as everything else); docs/streams.md is the protocol.

The handshake is checked as a predict request is, before anything is upgraded: the API key (`Authorization: Bearer`,
`x-api-key`, or the `api_key` query parameter, since a browser cannot set headers on a WebSocket), the model, the
parameters (/predict's names, ranges and messages, plus `track` and `tracker`) and the instance's MAX_STREAMS. A
refusal is the same JSON error with the same status (400, 401, 404, 429 with Retry-After, 503), as the handshake's
HTTP response. Then core/streams.py answers the frames; one JSON log line per stream when it closes, without the key.
"""

from __future__ import annotations

import asyncio
import json
import time
from functools import partial
from urllib.parse import parse_qsl

from starlette.responses import Response
from starlette.websockets import WebSocket, WebSocketDisconnect

from ..core.streams import Stream
from ..core.tracking import check_trackable
from ..dialects import Incoming, bearer_or_x_api_key, platform
from ..dialects.params import SLICE_FIELDS, parse_params, parse_tracking
from ..errors import BadParameter, InferenceTimeout, NotFound, ServiceError
from ..logs import log

PATHS = ("/stream", "/api/models/{model_id}/stream")


async def serve(websocket: WebSocket) -> None:
    edge = websocket.app.state.edge
    service, settings = edge.service, edge.service.settings
    started = time.monotonic()
    path = websocket.url.path
    query = parse_qsl(websocket.scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True,
                      max_num_fields=256)
    slot = lease = None
    try:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in websocket.scope["headers"]}
        given = bearer_or_x_api_key(Incoming("GET", path, headers=headers)) or dict(query).get("api_key") or None
        edge.api_keys.check(given)
        service.require_ready()
        model_id = service.resolve(websocket.path_params.get("model_id"))
        params = parse_params(query)
        track, params = parse_tracking(query, params=params)
        if sliced := next((name for name, _ in query if name in SLICE_FIELDS), None):
            raise BadParameter(f"'{sliced}': a stream's frames are not sliced (sliced inference is POST /predict's)")
        service.streams.take()
        slot = service.streams
        try:
            async with asyncio.timeout(settings.request_timeout_s):
                lease = await service.acquire(model_id)
        except TimeoutError:
            raise InferenceTimeout(f"Model {model_id!r} did not load within REQUEST_TIMEOUT_S") from None
        model = lease.model
        if track is not None:
            check_trackable(model.task)
        params = service.resolve_classes(params, model)
    except ServiceError as error:
        if slot is not None:
            slot.give_back()
        if lease is not None:
            lease.release()
        await _refuse(websocket, error, path, started)
        return
    closed = None
    try:
        await websocket.accept()
        finish = partial(platform.encode_result, params=params, task=model.task)
        stream = Stream(service, lease, params, track, finish, model_id or service.models.default_id,
                        settings.stream_idle_s)
        closed = await stream.run(partial(_receive, websocket), partial(_send, websocket))
        if closed.code is not None:
            try:
                await websocket.close(closed.code, closed.reason)
            except (RuntimeError, OSError):  # the client went as we closed
                pass
    finally:
        slot.give_back()
        lease.release()
    if closed is None:
        return
    log.info(f"stream {path} closed ({closed.code or 'by the client'}): {closed.answered} frames answered, "
             f"{closed.dropped} dropped, {closed.seconds:.1f} s",
             extra={"fields": {"stream": {"path": path, "model": model.name, "tracker": track, "received": closed.received,
                                          "answered": closed.answered, "dropped": closed.dropped,
                                          "seconds": round(closed.seconds, 3), "close_code": closed.code,
                                          "reason": closed.reason}}})


async def _receive(websocket: WebSocket) -> bytes | str | None:
    message = await websocket.receive()
    if message["type"] == "websocket.disconnect":
        return None
    return message["bytes"] if message.get("bytes") is not None else message.get("text") or ""


async def _send(websocket: WebSocket, answer: dict) -> None:
    try:
        await websocket.send_text(json.dumps(answer))
    except (WebSocketDisconnect, RuntimeError, OSError):  # the client has gone: its receive says so next
        pass


async def _refuse(websocket: WebSocket, error: ServiceError, path: str, started: float) -> None:
    """The handshake's answer: the Platform's JSON error with its status, instead of an upgrade."""
    reply = platform.error(error)
    await websocket.send_denial_response(Response(json.dumps(reply.body), reply.status, headers=reply.headers,
                                                  media_type="application/json"))
    severity = 20 if error.status < 500 else 40
    log.log(severity, f"GET {path} {error.status} {(time.monotonic() - started) * 1000:.1f} ms (stream refused)",
            extra={"httpRequest": {"requestMethod": "GET", "requestUrl": path, "status": error.status,
                                   "latency": f"{time.monotonic() - started:.6f}s",
                                   "protocol": "websocket"}})


async def not_found(websocket: WebSocket) -> None:
    await _refuse(websocket, NotFound(f"No stream at {websocket.url.path}: streams are at {' and '.join(PATHS)}"),
                  websocket.url.path, time.monotonic())
