"""Cleartext HTTP/2 (h2c, prior knowledge) on uvicorn's zttp protocol. Cloud Run, with the service's port named `h2c`,
speaks only HTTP/2 to the container, which lifts its 32 MiB cap on HTTP/1 requests and responses.

What zttp 0.0.35 and uvicorn's protocol on it lack, added by `Http2Protocol` (numbered after h1.py's):
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

import zttp
from uvicorn.protocols.http.zttp_h2_impl import ZttpH2Protocol

from .h1 import HEADER_TIMEOUT_S, LINGER_BYTES, LINGER_S

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
