"""The model's one owner: a thread that takes jobs off a queue, gathers a batch, runs it, hands results back."""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from itertools import groupby
from typing import Any

import numpy as np

from .errors import InferenceTimeout, ModelNotReady, Overloaded
from .logs import log
from .params import PredictParams

_STOP = object()


@dataclass(eq=False)
class Job:
    image: np.ndarray
    params: PredictParams
    done: threading.Event = field(default_factory=threading.Event)
    result: Any = None
    error: BaseException | None = None
    abandoned: bool = False  # the caller stopped waiting: skip the work

    def finish(self, result: Any = None, error: BaseException | None = None) -> None:
        self.result, self.error = result, error
        self.done.set()


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
    live = [job for job in batch if not job.abandoned]
    def key(job: Job) -> tuple:
        return tuple(job.params.model_args.items())

    for _, group in groupby(sorted(live, key=key), key=key):
        group = list(group)
        try:
            results = predict([job.image for job in group], group[0].params)
            if len(results) != len(group):
                raise RuntimeError(f"model returned {len(results)} results for {len(group)} images")
        except Exception as exc:  # handed to each waiting request, which maps it to an HTTP status
            for job in group:
                job.finish(error=exc)
            continue
        for job, result in zip(group, results):
            job.finish(result=result)


class InferenceLoop:
    """Requests call submit() from any thread; only the loop's own thread touches the model."""

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

    def submit(self, image: np.ndarray, params: PredictParams, timeout_s: float):
        job = Job(image, params)
        try:
            self.jobs.put_nowait(job)
        except queue.Full:
            raise Overloaded(f"{self.jobs.maxsize} requests are already waiting; retry shortly") from None
        if not job.done.wait(timeout_s):
            job.abandoned = True
            raise InferenceTimeout(f"inference did not finish within {timeout_s:g} s")
        if job.error is not None:
            raise job.error
        return job.result

    def _run(self) -> None:
        while True:
            batch, stop = collect_batch(self.jobs, self.max_batch_size, self.max_batch_wait_s)
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
            if job is not _STOP:
                job.finish(error=ModelNotReady("the server is shutting down"))
