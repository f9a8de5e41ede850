"""The gunicorn worker: uvicorn's, answering HTTP/1.1 and cleartext HTTP/2 (h2c, prior knowledge) on the same port,
and WebSocket upgrades of HTTP/1.1 for live streams, with the things a public endpoint needs from the server.

Each connection's first bytes choose its protocol (`Protocol`): the HTTP/2 connection preface → `Http2Protocol`
(uvicorn's zttp HTTP/2), anything else → `Http1Protocol` (uvicorn's h11). Cloud Run, with the service's port named
`h2c`, speaks only HTTP/2 to the container, which lifts its 32 MiB cap on HTTP/1 requests and responses; locally and
behind other proxies HTTP/1.1 keeps working.

HTTP/1.1 is `h1.py`, HTTP/2 `h2.py`; this module picks one per connection and is the gunicorn worker, which also tells
the service the moment SIGTERM arrives.
"""

from __future__ import annotations

import asyncio
import sys

import uvicorn
from gunicorn.arbiter import Arbiter
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn_worker import UvicornWorker

from .h1 import HEADER_TIMEOUT_S, MAX_INCOMPLETE_EVENT_BYTES, Http1Protocol
from .h2 import HTTP2_PREFACE, Http2Protocol


class Protocol(asyncio.Protocol):
    """A new connection: its first bytes choose HTTP/2 (the connection preface) or HTTP/1.1 (anything else), and the
    connection is handed to that protocol with those bytes. Both must hear from the client within HEADER_TIMEOUT_S."""

    def __init__(self, config, server_state, app_state, _loop: asyncio.AbstractEventLoop | None = None):
        if not config.loaded:
            config.load()
        self.config, self.server_state, self.app_state = config, server_state, app_state
        self.loop = _loop or asyncio.get_event_loop()
        self.connections = server_state.connections
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.opened_at = 0.0
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.opened_at = self.loop.time()
        self.connections.add(self)  # counted against MAX_CONNECTIONS, and told to shut down like any connection
        self._timer = self.loop.call_later(HEADER_TIMEOUT_S, transport.close)

    def connection_lost(self, exc) -> None:
        self._stop()

    def eof_received(self) -> None:
        return None  # the transport closes

    def shutdown(self) -> None:
        self.transport.close()

    def _stop(self) -> None:
        self.connections.discard(self)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) < len(HTTP2_PREFACE) and HTTP2_PREFACE.startswith(self.buffer):
            return
        self._stop()
        chosen = Http2Protocol if self.buffer.startswith(HTTP2_PREFACE) else Http1Protocol
        protocol = chosen(self.config, self.server_state, self.app_state, _loop=self.loop, opened_at=self.opened_at)
        self.transport.set_protocol(protocol)
        protocol.connection_made(self.transport)
        protocol.data_received(self.buffer)


class StreamProtocol(WebSocketsSansIOProtocol):
    """A live stream's connection (uvicorn's WebSocket protocol on `websockets`). At shutdown uvicorn would close it
    at once with 1012; the stream instead finishes the frame in progress and closes with 1001 itself (the service's
    `shutting_down`), within the graceful timeout."""

    def shutdown(self) -> None:
        if self.handshake_complete and not self.close_sent:
            self.stop_keepalive()
            return
        super().shutdown()

    async def send(self, message) -> None:
        await super().send(message)
        if message["type"] == "websocket.http.response.body" and not message.get("more_body", False):
            # A refused handshake is answered: uvicorn 0.54 would log an error for the handshake it never completed.
            self.handshake_complete = True


class _Server(uvicorn.Server):
    """uvicorn's server, telling the service the moment SIGTERM arrives (before uvicorn stops listening), so that work
    which cannot finish in the grace period is answered 503 at once instead of being cut when the period ends."""

    def __init__(self, config, on_exit) -> None:
        super().__init__(config)
        self._on_exit = on_exit

    def handle_exit(self, sig, frame) -> None:
        if not self.should_exit:  # a signal handler: the service's part runs on the event loop
            asyncio.get_event_loop().call_soon_threadsafe(self._on_exit)
        super().handle_exit(sig, frame)


class _Worker(UvicornWorker):
    async def _serve(self) -> None:  # UvicornWorker._serve, with _Server
        self.config.app = self.wsgi
        server = _Server(self.config, self.wsgi.state.service.begin_shutdown)
        self._install_sigquit_handler()
        await server.serve(sockets=self.sockets)
        if not server.started:
            sys.exit(Arbiter.WORKER_BOOT_ERROR)


def worker_class(settings) -> type:
    """Gunicorn's worker class, configured from the settings (uvicorn reads its options from the class)."""
    return type("YoloWorker", (_Worker,), {"CONFIG_KWARGS": {
        "loop": "asyncio",
        # HTTP/1.1 and h2c on one port, chosen per connection (Protocol above); HTTP/1.1 upgrades to WebSocket for
        # live streams (GET /stream). A frame is one message: past twice MAX_UPLOAD_MB the connection is closed
        # (1009); up to that, one over MAX_UPLOAD_MB is answered with a 413 and the stream goes on. JPEG frames
        # do not compress: no per-message deflate.
        "http": Protocol,
        "ws": StreamProtocol,
        "ws_max_size": 2 * settings.max_upload_bytes + 64 * 1024,
        "ws_per_message_deflate": False,
        "lifespan": "off",
        # Where the caller is comes from X-Forwarded-For, counted from the right (web.client_ip), never the left.
        "proxy_headers": False,
        "h11_max_incomplete_event_size": MAX_INCOMPLETE_EVENT_BYTES,
        # Connections plus requests in progress; past it, uvicorn answers 503 itself. Idle or slow connections cost a
        # coroutine each, so this can be generous.
        "limit_concurrency": settings.max_connections,
        # In-flight requests finish within Cloud Run's 10 s after SIGTERM; gunicorn kills the worker one second later.
        "timeout_graceful_shutdown": max(settings.graceful_timeout_s - 1, 1),
    }})
