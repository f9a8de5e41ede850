"""The model's one owner: a thread that takes jobs off a queue, gathers a batch, runs it, hands results back.

Each job carries a `concurrent.futures.Future`: a request awaits it from the event loop (`asyncio.wrap_future`) or from
a thread (`future.result`); a job whose future was cancelled before it ran (its request gave up) is skipped.
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from itertools import groupby

import numpy as np

from . import metrics
from .errors import InferenceTimeout, ModelNotReady, Overloaded
from .logs import log
from .params import PredictParams

_STOP = object()


@dataclass(eq=False)
class Job:
    image: np.ndarray
    params: PredictParams
    future: Future = field(default_factory=Future)
    queued_at: float = field(default_factory=time.monotonic)


def collect_batch(jobs: queue.Queue, max_size: int, max_wait_s: float) -> tuple[list[Job], bool]:
    """Block for one job, then take more for up to max_wait_s; returns (batch, stop_requested)."""
    first = jobs.get()
    if first is _STOP:
        return [], True
    batch = [first]
    deadline = time.monotonic() + max_wait_s
    while len(batch) < max_size:
        remaining = deadline - time.monotonic()
        try:
            item = jobs.get(timeout=remaining) if remaining > 0 else jobs.get_nowait()
        except queue.Empty:
            break
        if item is _STOP:
            return batch, True
        batch.append(item)
    return batch, False


def run_batch(predict, batch: list[Job]) -> None:
    """Run live jobs, one model call per group of equal parameters; every failure reaches every job it touched."""
    started = time.monotonic()
    live = [job for job in batch if job.future.set_running_or_notify_cancel()]
    for job in live:
        metrics.QUEUE_WAIT_SECONDS.observe(started - job.queued_at)

    def key(job: Job) -> tuple:
        return tuple(job.params.model_args.items())

    for _, group in groupby(sorted(live, key=key), key=key):
        group = list(group)
        t0 = time.monotonic()
        try:
            results = predict([job.image for job in group], group[0].params)
            if len(results) != len(group):
                raise RuntimeError(f"model returned {len(results)} results for {len(group)} images")
        except Exception as exc:  # handed to each waiting request, which maps it to an HTTP status
            for job in group:
                job.future.set_exception(exc)
            continue
        finally:
            metrics.INFERENCE_SECONDS.observe(time.monotonic() - t0)
            metrics.BATCH_SIZE.observe(len(group))
        metrics.IMAGES.inc(len(group))
        for job, result in zip(group, results):
            job.future.set_result(result)


class InferenceLoop:
    """Requests call submit() from any thread or the event loop; only the loop's own thread touches the model."""

    def __init__(self, predict, max_queue: int, max_batch_size: int = 1, max_batch_wait_s: float = 0.0):
        self.predict = predict
        self.max_batch_size = max_batch_size
        self.max_batch_wait_s = max_batch_wait_s
        self.jobs: queue.Queue = queue.Queue(maxsize=max_queue)
        self.thread = threading.Thread(target=self._run, name="inference", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self, timeout: float | None = None) -> None:
        # The sentinel goes in even when the queue is full: stopping must never wait on clients.
        with self.jobs.mutex:
            self.jobs.queue.append(_STOP)
            self.jobs.not_empty.notify()
        if self.thread.ident is not None:  # started
            self.thread.join(timeout)

    def submit(self, images: list[np.ndarray], params: PredictParams) -> list[Future]:
        """Queue the images (all or none); each future resolves to its Ultralytics Results."""
        jobs = [Job(image, params) for image in images]
        with self.jobs.mutex:
            if len(self.jobs.queue) + len(jobs) > self.jobs.maxsize:
                raise Overloaded(f"{self.jobs.maxsize} images are already waiting for the model; retry shortly")
        for job in jobs:
            self.jobs.put_nowait(job)
        metrics.QUEUE_DEPTH.set(self.jobs.qsize())
        return [job.future for job in jobs]

    def predict_sync(self, image: np.ndarray, params: PredictParams, timeout_s: float):
        """Submit one image and wait for it from a plain thread (tests, tools)."""
        (future,) = self.submit([image], params)
        try:
            return future.result(timeout_s)
        except TimeoutError:
            future.cancel()
            raise InferenceTimeout(f"inference did not finish within {timeout_s:g} s") from None

    def _run(self) -> None:
        while True:
            batch, stop = collect_batch(self.jobs, self.max_batch_size, self.max_batch_wait_s)
            metrics.QUEUE_DEPTH.set(self.jobs.qsize())
            if batch:
                run_batch(self.predict, batch)
            if stop:
                self._refuse_waiting()
                log.info("inference loop stopped")
                return

    def _refuse_waiting(self) -> None:
        while True:
            try:
                job = self.jobs.get_nowait()
            except queue.Empty:
                return
            if job is not _STOP and job.future.set_running_or_notify_cancel():
                job.future.set_exception(ModelNotReady("the server is shutting down"))
