"""What the process lets in at once: images admitted for prediction (beyond: 429), decoded pixels held in memory
(beyond: wait your turn), and open live streams (beyond: 429 at the handshake). All live on the event loop's one
thread."""

from __future__ import annotations

import asyncio
import math
from collections import deque
from contextlib import contextmanager

from .. import metrics
from ..errors import Overloaded


class Admission:
    """At most `limit` images between admission and answer (reading a `source`, decoding, queued, running)."""

    def __init__(self, limit: int):
        self.limit = limit
        self.images = 0
        self.requests = 0
        self.seconds_per_image = 0.0  # a moving average, for Retry-After

    @contextmanager
    def admit(self, images: int = 1):
        if self.images + images > self.limit:
            wait = math.ceil(self.images * self.seconds_per_image) if self.seconds_per_image else 1
            raise Overloaded(
                f"the endpoint is busy: {self.images} images are in progress (MAX_QUEUE={self.limit}); retry shortly",
                retry_after_s=min(max(wait, 1), 60),
            )
        self.images += images
        self.requests += 1
        metrics.INFLIGHT.set(self.requests)
        try:
            yield
        finally:
            self.images -= images
            self.requests -= 1
            metrics.INFLIGHT.set(self.requests)

    def observe(self, seconds: float, images: int) -> None:
        per_image = seconds / max(images, 1)
        self.seconds_per_image = per_image if not self.seconds_per_image else 0.8 * self.seconds_per_image + 0.2 * per_image


class PixelBudget:
    """A weighted semaphore over decoded pixels, first come first served: concurrent huge images queue instead of
    multiplying peak memory. A single image larger than the whole budget still runs, alone."""

    def __init__(self, limit: int):
        self.limit = limit
        self.used = 0
        self._waiters: deque[tuple[int, asyncio.Future]] = deque()

    async def acquire(self, pixels: int) -> int:
        """Wait until `pixels` fit; returns the amount to release (capped at the budget)."""
        pixels = min(pixels, self.limit)
        if not self._waiters and self.used + pixels <= self.limit:
            self.used += pixels
            return pixels
        waiter = asyncio.get_running_loop().create_future()
        entry = (pixels, waiter)
        self._waiters.append(entry)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():  # granted just as we gave up: hand it on
                self.release(pixels)
            else:
                self._waiters.remove(entry)
                self._wake()
            raise
        return pixels

    def release(self, pixels: int) -> None:
        self.used -= pixels
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self.used + self._waiters[0][0] <= self.limit:
            pixels, waiter = self._waiters.popleft()
            if not waiter.done():
                self.used += pixels
                waiter.set_result(None)


def default_max_streams(device: str | None) -> int:
    """MAX_STREAMS unset: 16 on a GPU (an L4 answers hundreds of frames a second), else 2 per CPU core (a core
    answers a nano model at 640 about ten times a second: each stream then gets a few frames a second)."""
    from ..models.loaded import cpu_cores, pick_device

    return 16 if pick_device(device).startswith("cuda") else 2 * cpu_cores()


class StreamSlots:
    """At most MAX_STREAMS open streams per instance: one more is refused at the handshake (429)."""

    def __init__(self, limit: int):
        self.limit = limit
        self.open = 0

    def take(self) -> None:
        if self.open >= self.limit:
            raise Overloaded(f"{self.open} streams are open on this instance (MAX_STREAMS={self.limit}); retry shortly "
                             "or on another instance", retry_after_s=5)
        self.open += 1

    def give_back(self) -> None:
        self.open -= 1
