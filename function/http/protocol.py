"""The gunicorn worker: uvicorn's, answering HTTP/1.1 and cleartext HTTP/2 (h2c, prior knowledge) on the same port,
with the things a public endpoint needs from the server.

Each connection's first bytes choose its protocol (`Protocol`): the HTTP/2 connection preface → `Http2Protocol`
(uvicorn's zttp HTTP/2), anything else → `Http1Protocol` (uvicorn's h11). Cloud Run, with the service's port named
`h2c`, speaks only HTTP/2 to the container, which lifts its 32 MiB cap on HTTP/1 requests and responses; locally and
behind other proxies HTTP/1.1 keeps working.

HTTP/1.1:
1. What the server answers itself (a malformed request, a request line or headers past h11's limit, an unknown
   Transfer-Encoding) is our JSON error with the status h11 names (400, 431, 501), not a bare text line.
2. A request's line and headers must arrive within HEADER_TIMEOUT_S of its first byte (or of the connection opening):
   a client that sends them a byte at a time cannot hold a connection slot for ever. The body's deadline is the
   request's own (REQUEST_TIMEOUT_S, in edge.py); idle keep-alive connections are uvicorn's (timeout_keep_alive).
3. A connection answered before its request body arrived (a refused upload) is closed without reading that body, but
   not abruptly: the answer is sent, the sending side is shut (FIN), and what the client is still sending is discarded
   for at most LINGER_S or LINGER_BYTES. Closing at once would make the kernel reset the connection, and a client
   still uploading would see the reset instead of our 413 (what nginx calls a lingering close).

HTTP/2 (what zttp 0.0.35 and uvicorn's protocol on it lack, added by `Http2Protocol`):
4. The preface and the first request must arrive within HEADER_TIMEOUT_S of the connection opening, and any frame
   other than DATA (a request's HEADERS and CONTINUATIONs above all) within HEADER_TIMEOUT_S of its first byte. A
   connection with no stream open is closed (GOAWAY) timeout_keep_alive after its last stream ended; PING, SETTINGS
   and WINDOW_UPDATE frames do not keep it open (uvicorn's timer restarts on every frame).
5. Bodies stream with the same caps as HTTP/1.1 (edge.py, body.py). zttp advertises the RFC's 64 KiB flow-control
   windows and cannot be told otherwise, so larger ones are announced beside its own (a second SETTINGS frame and a
   connection WINDOW_UPDATE): zttp neither enforces its receive windows nor minds the extra SETTINGS ack, and it
   returns credit as frames are parsed, so the client's windows never grow past what is announced here. Memory is
   bounded as on HTTP/1.1: uvicorn stops reading the socket while a stream holds 64 KiB the app has not taken.
6. Concurrent streams per connection: MAX_CONNECTIONS, up to zttp's fixed 128 (it refuses the 129th itself);
   beyond the limit a stream is refused with REFUSED_STREAM, which clients retry.
7. A stream answered before its request body arrived (a refused upload): what the client still sends is discarded
   for at most LINGER_S or LINGER_BYTES, then the stream is reset with NO_ERROR (RFC 9113 8.1) so it stops sending;
   HTTP/1.1's lingering close, per stream. Not at once: curl (7.88) reports a reset that arrives while it is still
   uploading as an error instead of the answer it already has, and it stops uploading by itself on the answer.
9. A request whose HEADERS end the stream (a POST without a body) has its body complete: zttp sends no EndOfMessage
   after such a HEADERS frame and uvicorn 0.54 waits for one, so the app would wait for a body that never comes.
8. Graceful shutdown: GOAWAY with the last stream taken goes out at once, so clients send nothing new on this
   connection; streams in progress finish (within gunicorn's graceful timeout) and the connection closes after the
   last one. A stream opened after the GOAWAY is refused (REFUSED_STREAM: the client may retry it elsewhere).
"""

from __future__ import annotations

import asyncio
import json
import sys

import h11
import uvicorn
import zttp
from gunicorn.arbiter import Arbiter
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.zttp_h2_impl import ZttpH2Protocol
from uvicorn_worker import UvicornWorker

from ..errors import from_http_status

HEADER_TIMEOUT_S = 10.0
LINGER_S = 2.0
LINGER_BYTES = 4 * 2**20
# h11's hard limit on a request line plus headers; the app refuses smaller excesses itself (414/431, see edge.py).
MAX_INCOMPLETE_EVENT_BYTES = 64 * 1024

HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
# Flow-control windows announced to HTTP/2 clients: enough for a fast upload over a link with some latency (64 KiB
# per round trip caps a 1 ms link at 64 MB/s); what the server holds does not depend on them (see 5 above).
H2_STREAM_WINDOW = 4 * 2**20
H2_CONNECTION_WINDOW = 16 * 2**20
H2_MAX_STREAMS = 128  # zttp's own fixed limit on concurrent streams
_H2_DEFAULT_WINDOW = 65_535
# RFC 9113: frame types, flags, SETTINGS ids, error codes.
_DATA, _HEADERS, _SETTINGS, _PUSH_PROMISE, _WINDOW_UPDATE, _CONTINUATION = 0x0, 0x1, 0x4, 0x5, 0x8, 0x9
_END_HEADERS = 0x4
_MAX_CONCURRENT_STREAMS, _INITIAL_WINDOW_SIZE = 0x3, 0x4
_NO_ERROR, _REFUSED_STREAM = 0x0, 0x7


class _LingeringTransport:
    """The connection's transport as uvicorn sees it: close() lingers when a request body is still arriving."""

    def __init__(self, transport, protocol: "Http1Protocol"):
        self._transport, self._protocol = transport, protocol

    def __getattr__(self, name):
        return getattr(self._transport, name)

    def close(self) -> None:
        cycle = self._protocol.cycle
        if cycle is not None and cycle.more_body and not self._transport.is_closing():
            self._protocol.linger()
        else:
            self._transport.close()


class Http1Protocol(H11Protocol):
    def __init__(self, *args, opened_at: float | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self._opened_at = opened_at  # loop time the connection opened, when another protocol read its first bytes

    def connection_made(self, transport) -> None:
        self._lingering = False
        self._discarded = 0
        self._header_timer = None
        super().connection_made(_LingeringTransport(transport, self))
        self._await_headers(self._opened_at)

    def connection_lost(self, exc) -> None:
        self._stop_header_timer()
        super().connection_lost(exc)

    def _between_requests(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _await_headers(self, since: float | None = None) -> None:
        if self._header_timer is None:
            delay = HEADER_TIMEOUT_S if since is None else since + HEADER_TIMEOUT_S - self.loop.time()
            self._header_timer = self.loop.call_later(max(delay, 0), self._headers_too_slow)

    def _stop_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if self._between_requests():
            self.transport._transport.close()

    def data_received(self, data: bytes) -> None:
        if self._lingering:
            self._discarded += len(data)
            if self._discarded > LINGER_BYTES:
                self.transport._transport.close()
            return
        if self._between_requests():
            self._await_headers()  # these bytes begin the next request
        super().data_received(data)
        if not self._between_requests():
            self._stop_header_timer()  # its headers are complete

    def linger(self) -> None:
        raw = self.transport._transport
        self._lingering = True
        try:
            raw.write_eof()
        except (OSError, RuntimeError):
            raw.close()
            return
        raw.resume_reading()
        self.loop.call_later(LINGER_S, raw.close)

    def send_400_response(self, msg: str) -> None:
        # Called by uvicorn inside its `except h11.RemoteProtocolError`, so the error (and h11's status hint) is here.
        error = sys.exc_info()[1]
        status = getattr(error, "error_status_hint", 400)
        detail = {431: "The request line or headers are too large", 501: "Unsupported Transfer-Encoding"}
        body = json.dumps(from_http_status(status, detail.get(status, "Malformed HTTP request")).body()).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                   (b"connection", b"close")]
        try:
            self.transport.write(self.conn.send(h11.Response(status_code=status, headers=headers)))
            self.transport.write(self.conn.send(h11.Data(data=body)))
            self.transport.write(self.conn.send(h11.EndOfMessage()))
        except h11.LocalProtocolError:  # h11 cannot answer in this state: just close
            pass
        self.transport._transport.close()


def _frame(kind: int, flags: int, stream_id: int, payload: bytes) -> bytes:
    return len(payload).to_bytes(3, "big") + bytes((kind, flags)) + stream_id.to_bytes(4, "big") + payload


class _FrameClock:
    """Follows the client's HTTP/2 frame boundaries (9-byte headers, then `length` bytes) to tell whether it is part
    way through a frame other than DATA, or through a header block (HEADERS … CONTINUATION with END_HEADERS)."""

    def __init__(self):
        self._skip = len(HTTP2_PREFACE)
        self._head = b""
        self._left = 0
        self._kind = _DATA
        self._in_block = False

    @property
    def waiting(self) -> bool:
        return self._in_block or bool(self._head) or (self._left > 0 and self._kind != _DATA)

    def feed(self, data: bytes) -> bool:
        """Account for `data`; True when a frame we were waiting on ended in it."""
        ended, at, size = False, 0, len(data)
        while at < size:
            if self._skip:
                step = min(self._skip, size - at)
                self._skip -= step
            elif self._left:
                step = min(self._left, size - at)
                self._left -= step
                ended |= not self._left and self._kind != _DATA
            else:
                step = min(9 - len(self._head), size - at)
                self._head += data[at:at + step]
                if len(self._head) == 9:
                    self._left, self._kind = int.from_bytes(self._head[:3], "big"), self._head[3]
                    if self._kind in (_HEADERS, _PUSH_PROMISE, _CONTINUATION):
                        self._in_block = not self._head[4] & _END_HEADERS
                    self._head = b""
                    ended |= not self._left and self._kind != _DATA
            at += step
        return ended


class Http2Protocol(ZttpH2Protocol):
    """uvicorn's HTTP/2 protocol on zttp, with the timeouts, windows, stream limit, early-answer reset and graceful
    GOAWAY described in this module's docstring (4–8)."""

    def __init__(self, *args, opened_at: float | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self._opened_at = opened_at
        self._frames = _FrameClock()
        self._frame_timer: asyncio.TimerHandle | None = None
        self._last_stream_id = 0
        self._goaway_sent = False
        self._draining: dict[int, int] = {}  # streams answered before their body arrived: bytes discarded since
        self.max_streams = min(self.limit_concurrency or H2_MAX_STREAMS, H2_MAX_STREAMS)

    def connection_made(self, transport) -> None:
        super().connection_made(transport)  # zttp's SETTINGS (the server preface) goes out first
        settings = b"".join(key.to_bytes(2, "big") + value.to_bytes(4, "big") for key, value in (
            (_MAX_CONCURRENT_STREAMS, self.max_streams), (_INITIAL_WINDOW_SIZE, H2_STREAM_WINDOW)))
        increment = (H2_CONNECTION_WINDOW - _H2_DEFAULT_WINDOW).to_bytes(4, "big")
        transport.write(_frame(_SETTINGS, 0, 0, settings) + _frame(_WINDOW_UPDATE, 0, 0, increment))
        # Until its first request, a connection has what an HTTP/1.1 one has for its first request line and headers.
        since = self.loop.time() if self._opened_at is None else self._opened_at
        delay = max(since + HEADER_TIMEOUT_S - self.loop.time(), 0)
        self.timeout_keep_alive_task = self.loop.call_later(delay, self.timeout_keep_alive_handler)

    def connection_lost(self, exc) -> None:
        self._stop_frame_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        # uvicorn's, except for the keep-alive timer: it is stopped when a stream opens (handle_request) and started
        # when the last one ends (on_stream_closed), never by frames alone.
        ended = self._frames.feed(data)
        try:
            self.conn.receive_data(data)
            self.handle_events()
        except zttp.RemoteProtocolError as exc:
            self.logger.warning("Invalid HTTP/2 frame received: %s", exc)
            self.flush()
            self.transport.close()
            return
        self.flush()
        if ended:
            self._stop_frame_timer()
        if not self._frames.waiting:
            self._stop_frame_timer()
        elif self._frame_timer is None and not self.transport.is_closing():
            self._frame_timer = self.loop.call_later(HEADER_TIMEOUT_S, self._frame_too_slow)

    def _stop_frame_timer(self) -> None:
        if self._frame_timer is not None:
            self._frame_timer.cancel()
            self._frame_timer = None

    def _frame_too_slow(self) -> None:
        self._frame_timer = None
        if self.flow.read_paused:  # we stopped reading, not the client: give it its time once we read again
            self._frame_timer = self.loop.call_later(HEADER_TIMEOUT_S, self._frame_too_slow)
            return
        self._close_connection()

    def handle_request(self, event) -> None:
        self._unset_keepalive_if_required()
        self._last_stream_id = max(self._last_stream_id, event.stream_id)
        if self._goaway_sent or len(self.cycles) >= self.max_streams:
            self.conn.stream(event.stream_id).reset(_REFUSED_STREAM)
            self.flush()
            self.on_stream_closed()
            return
        super().handle_request(event)
        if event.end_stream:  # a request without a body: zttp sends no EndOfMessage after it, and uvicorn waits for one
            cycle = self.cycles[event.stream_id]
            cycle.more_body = False
            cycle.message_event.set()

    def on_response_complete(self, stream_id: int) -> None:
        cycle = self.cycles.get(stream_id)
        if cycle is not None and cycle.more_body and not cycle.disconnected and not self.transport.is_closing():
            # Answered before its request body arrived: what still comes is discarded, for a while (see 7 above).
            self._draining[stream_id] = 0
            self.loop.call_later(LINGER_S, self._stop_draining, stream_id)
        super().on_response_complete(stream_id)

    def events(self):
        for event in super().events():
            if isinstance(event, zttp.Data) and event.stream_id in self._draining:
                self._draining[event.stream_id] += len(event.data)
                if self._draining[event.stream_id] > LINGER_BYTES:
                    self._stop_draining(event.stream_id)
            elif isinstance(event, (zttp.EndOfMessage, zttp.RstStream)):
                self._draining.pop(event.stream_id, None)  # the client finished or gave up by itself
            yield event

    def _stop_draining(self, stream_id: int) -> None:
        if self._draining.pop(stream_id, None) is None or self.transport.is_closing():
            return
        try:
            self.conn.stream(stream_id).reset(_NO_ERROR)
        except zttp.LocalProtocolError:  # the stream closed meanwhile
            return
        self.flush()

    def timeout_keep_alive_handler(self) -> None:
        self.timeout_keep_alive_task = None
        if not self.cycles:
            self._close_connection()

    def _send_goaway(self) -> None:
        if not self._goaway_sent:
            self._goaway_sent = True
            self.conn.close(_NO_ERROR, self._last_stream_id)
            self.flush()

    def _close_connection(self) -> None:
        if self.transport.is_closing():
            return
        self._send_goaway()
        self.transport.close()

    def shutdown(self) -> None:
        self.shutdown_requested = True
        if self.transport.is_closing():
            return
        self._send_goaway()
        if not self.cycles:
            self.transport.close()


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
        # HTTP/1.1 and h2c on one port, chosen per connection (Protocol above).
        "http": Protocol,
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
