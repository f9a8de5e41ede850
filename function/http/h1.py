"""HTTP/1.1 on uvicorn's h11 protocol, with what a public endpoint needs from the server (the numbers continue in h2.py).

1. What the server answers itself (a malformed request, a request line or headers past h11's limit, an unknown
   Transfer-Encoding) is our JSON error with the status h11 names (400, 431, 501), not a bare text line.
2. A request's line and headers must arrive within HEADER_TIMEOUT_S of its first byte (or of the connection opening):
   a client that sends them a byte at a time cannot hold a connection slot for ever. The body's deadline is the
   request's own (REQUEST_TIMEOUT_S, in edge.py); idle keep-alive connections are uvicorn's (timeout_keep_alive).
3. A connection answered before its request body arrived (a refused upload) is closed without reading that body, but
   not abruptly: the answer is sent, the sending side is shut (FIN), and what the client is still sending is discarded
   for at most LINGER_S or LINGER_BYTES. Closing at once would make the kernel reset the connection, and a client
   still uploading would see the reset instead of our 413 (what nginx calls a lingering close).
"""

from __future__ import annotations

import json
import sys

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from ..errors import from_http_status

HEADER_TIMEOUT_S = 10.0
LINGER_S = 2.0
LINGER_BYTES = 4 * 2**20
# h11's hard limit on a request line plus headers; the app refuses smaller excesses itself (414/431, see edge.py).
MAX_INCOMPLETE_EVENT_BYTES = 64 * 1024


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

    def handle_websocket_upgrade(self, event) -> None:
        # A live stream from here on: its connection is the WebSocket protocol's, not a request waiting for headers.
        self._stop_header_timer()
        super().handle_websocket_upgrade(event)

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
