"""Live streams: one connection's frames through the shared model, the newest frame first, with no web types.

A stream is two loops and a mailbox. The receiving loop puts each frame in a one-frame mailbox: a frame that arrives
while another waits replaces it (that one is never answered), so a client faster than the model gets bounded latency
instead of a growing queue. The answering loop takes the waiting frame, runs it through the model exactly as an image
request runs (`Service.predict_frame`: admission, the pixel budget, the model's queue and batching, shared with
/predict), then through the stream's own tracker, and sends the answer. One frame is answered at a time, so answers
go out in frame order and the tracker sees only the frames it answers, in order.

Each answer says which frame it is (`frame`: its index among the binary messages received, from 0) and how many
frames since the previous answer were never answered (`dropped`): over a stream, answered + dropped = received.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Awaitable, Callable

from .. import metrics
from ..errors import ServiceError
from .tracking import Sequence, counted

if TYPE_CHECKING:
    from ..models.params import PredictParams
    from ..models.registry import Lease
    from .service import Service

# WebSocket close codes (RFC 6455 7.4.1)
NORMAL, GOING_AWAY, UNSUPPORTED_DATA = 1000, 1001, 1003


@dataclass(frozen=True)
class Frame:
    index: int
    data: bytes


class Mailbox:
    """The one frame waiting to be answered: a newer one replaces it."""

    def __init__(self):
        self._frame: Frame | None = None
        self._ready = asyncio.Event()
        self._closed = False

    def put(self, frame: Frame) -> None:
        self._frame = frame
        self._ready.set()

    def close(self, discard: bool = False) -> None:
        """No more frames: `take` gives what is waiting (nothing, with `discard`), then None."""
        if discard:
            self._frame = None
        self._closed = True
        self._ready.set()

    async def take(self) -> Frame | None:
        while self._frame is None:
            if self._closed:
                return None
            self._ready.clear()
            await self._ready.wait()
        frame, self._frame = self._frame, None
        return frame


@dataclass
class Closed:
    """How a stream ended, for its log line."""

    code: int
    reason: str
    received: int
    answered: int
    seconds: float

    @property
    def dropped(self) -> int:
        return self.received - self.answered


class Stream:
    """One connection's frames. `receive()` returns the next message (bytes: a frame; str: not a frame) or None when
    the client has gone; `send(answer)` sends one JSON answer; `finish(result)` turns a frame's Results into its answer
    (the dialect's encoding, in the CPU pool)."""

    def __init__(self, service: Service, lease: Lease, params: PredictParams, tracker: str | None,
                 finish: Callable, model_id: str, idle_s: float):
        self.service, self.lease, self.params = service, lease, params
        self.tracker, self.finish, self.model_id, self.idle_s = tracker, finish, model_id, idle_s
        self.mailbox = Mailbox()
        self.received = self.answered = 0
        self.ending: tuple[int, str] | None = None  # why the receiving side stopped: (close code, reason)
        self.answering_frame = False
        self.last_activity = time.monotonic()  # a frame received or answered: the idle clock starts again

    async def run(self, receive: Callable[[], Awaitable[bytes | str | None]],
                  send: Callable[[dict], Awaitable[None]]) -> Closed:
        started = time.monotonic()
        model = self.lease.model
        sequence = await self.service.run_cpu(Sequence, self.tracker, model.task, model.device) if self.tracker else None
        metrics.STREAMS_OPEN.labels(self.model_id).inc()
        answering = asyncio.ensure_future(self._answer(sequence, send))
        try:
            with counted(sequence):
                await self._receive(receive)
                code = self.ending[0]
                if code is None:  # the client has gone: nothing more is worth answering
                    answering.cancel()
                # Shutting down: the frame in progress is answered, the one waiting is not (the client reconnects
                # elsewhere and sends newer ones). Idle or not a frame: what was sent before is answered first.
                self.mailbox.close(discard=code == GOING_AWAY)
                await asyncio.gather(answering, return_exceptions=True)
        finally:
            answering.cancel()
            metrics.STREAMS_OPEN.labels(self.model_id).dec()
        code, reason = self.ending
        return Closed(code, reason, self.received, self.answered, time.monotonic() - started)

    async def _receive(self, receive) -> None:
        """Frames into the mailbox until the client goes, sends something else, goes quiet or the server stops."""
        stopping = asyncio.ensure_future(self.service.shutting_down.wait())
        try:
            while True:
                message = asyncio.ensure_future(receive())
                while not message.done():
                    # Idle means nothing sent and nothing being answered: a slow model never closes a stream.
                    quiet = self.idle_s - (time.monotonic() - self.last_activity)
                    await asyncio.wait({message, stopping}, timeout=max(quiet, 0.01), return_when=asyncio.FIRST_COMPLETED)
                    if stopping.done():
                        message.cancel()
                        self.ending = (GOING_AWAY, "the server is shutting down; reconnect")
                        return
                    if not message.done() and not self.answering_frame \
                            and time.monotonic() - self.last_activity >= self.idle_s:
                        message.cancel()
                        self.ending = (NORMAL, f"no frame for STREAM_IDLE_S={self.idle_s:g} s")
                        return
                data = message.result()
                if data is None:
                    self.ending = (None, "the client closed the stream")
                    return
                if isinstance(data, str):
                    self.ending = (UNSUPPORTED_DATA, "send each frame as a binary message holding one encoded image")
                    return
                self.mailbox.put(Frame(self.received, data))
                self.received += 1
                self.last_activity = time.monotonic()
        finally:
            stopping.cancel()

    async def _answer(self, sequence: Sequence | None, send) -> None:
        last = -1
        while (frame := await self.mailbox.take()) is not None:
            self.answering_frame = True
            answer = {"frame": frame.index, "dropped": frame.index - last - 1}
            try:
                answer |= await self.service.predict_frame(frame.data, self.params, self.lease,
                                                           lambda result: self._finish(sequence, result))
            except ServiceError as error:  # this frame's: not an image, too large, the model busy...
                answer["error"] = {"code": error.status, "message": error.message}
            metrics.STREAM_FRAMES.labels(self.model_id, "dropped").inc(answer["dropped"])
            metrics.STREAM_FRAMES.labels(self.model_id, "answered").inc()
            last = frame.index
            self.answered += 1
            await send(answer)
            self.answering_frame = False
            self.last_activity = time.monotonic()

    def _finish(self, sequence: Sequence | None, result) -> dict:  # in the CPU pool, one frame at a time
        if sequence is not None:
            result = sequence.update(result)
        return self.finish(result)
