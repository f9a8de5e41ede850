"""The model's owners: threads that take jobs off one queue, gather a batch, run it, hand results back.

Each job carries a `concurrent.futures.Future`: a request awaits it from the event loop (`asyncio.wrap_future`) or from
a thread (`future.result`); a job whose future was cancelled before it ran (its request gave up) is skipped.

One model call per group of jobs with equal parameters and equal image shape: Ultralytics letterboxes a batch of equal
shapes exactly as it does one image (a mixed-shape batch is padded to a common size, which changes results). There is
no waiting for a batch to fill: a thread takes what is queued when it is free, so a lone request runs at once and a
busy queue runs in batches. Usually one thread owns one model; on a CPU where Ultralytics leaves cores unused, each
further core-set gets a thread with a replica of its own (see `Service`), and an engine swap replaces them all.
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .. import metrics
from ..errors import InferenceTimeout, ModelNotReady, Overloaded
from ..logs import log
from .params import PredictParams

if TYPE_CHECKING:  # numpy is the worker's: gunicorn's master never imports it
    import numpy as np

_STOP = object()


@dataclass(eq=False)
class Job:
    image: np.ndarray
    params: PredictParams
    future: Future = field(default_factory=Future)
    queued_at: float = field(default_factory=time.monotonic)


def collect_batch(jobs: queue.Queue, max_size: int, max_wait_s: float = 0.0) -> tuple[list[Job], bool]:
    """Block for one job, take what else is queued (up to max_size), and wait up to max_wait_s for more only when
    asked to; returns (batch, stop_requested)."""
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


def batch_key(job: Job) -> tuple:
    """Jobs with equal keys share one model call: the same parameters and the same image shape."""
    return tuple(job.params.model_args.items()), job.image.shape


def run_batch(predict, batch: list[Job], model: str = "") -> None:
    """Run live jobs, one model call per group of equal keys; every failure reaches every job it touched."""
    started = time.monotonic()
    live = [job for job in batch if job.future.set_running_or_notify_cancel()]
    groups: dict[tuple, list[Job]] = {}
    for job in live:
        metrics.QUEUE_WAIT_SECONDS.labels(model).observe(started - job.queued_at)
        groups.setdefault(batch_key(job), []).append(job)

    for group in groups.values():
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
            metrics.INFERENCE_SECONDS.labels(model).observe(time.monotonic() - t0)
            metrics.BATCH_SIZE.labels(model).observe(len(group))
        metrics.IMAGES.labels(model).inc(len(group))
        for job, result in zip(group, results):
            job.future.set_result(result)


class InferenceLoop:
    """Requests call submit() from any thread or the event loop; only the loop's own threads touch the models, each
    thread its own model. With several models (MODELS) each has a loop of its own; `model` is its id in the metrics."""

    def __init__(self, predict, max_queue: int, max_batch_size: int = 1, max_batch_wait_s: float = 0.0, model: str = ""):
        self.model = model
        self._predicts = list(predict) if isinstance(predict, (list, tuple)) else [predict]
        self.max_batch_size = max_batch_size
        self.max_batch_wait_s = max_batch_wait_s
        self.jobs: queue.Queue = queue.Queue(maxsize=max_queue)
        self.threads: list[threading.Thread] = []
        self._started = False
        self._lock = threading.Lock()
        self._closed = False  # past the shutdown deadline: nothing new is queued
        self.seconds_per_image = 0.0  # a moving average of model time, for shedding at shutdown
        self._add_threads()

    @property
    def thread(self) -> threading.Thread:
        return self.threads[0]

    @property
    def models(self) -> int:
        """How many models serve side by side (CPU replicas): a stream of frames keeps them all busy with this many
        batches in flight."""
        return len(self._predicts)

    def start(self) -> None:
        with self._lock:
            self._started = True
            for thread in self.threads:
                thread.start()

    def swap(self, predicts: list) -> None:
        """Serve with other models from the next batch on (an exported engine, more replicas); threads beyond the new
        count hand back what they took and end."""
        with self._lock:
            self._predicts = list(predicts)
            self._add_threads()

    def _add_threads(self) -> None:
        while len([t for t in self.threads if t.is_alive() or not self._started]) < len(self._predicts):
            index = len(self.threads)
            name = "inference" if index == 0 else f"inference-{index + 1}"
            thread = threading.Thread(target=self._run, args=(index,), name=name, daemon=True)
            self.threads.append(thread)
            if self._started:
                thread.start()

    def stop(self, timeout: float | None = None) -> None:
        # The sentinel goes in behind what is queued, even when the queue is full: stopping must never wait on clients.
        with self.jobs.mutex:
            self.jobs.queue.append(_STOP)
            self.jobs.not_empty.notify()
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in self.threads:
            if thread.ident is not None:  # started
                thread.join(None if deadline is None else max(deadline - time.monotonic(), 0))

    def shed(self, within_s: float) -> int:
        """Shutting down: refuse now (ModelNotReady: a 503 with Retry-After) the queued images that cannot be done
        within `within_s`, from the back of the queue; with 0, every queued image and all that would come. Returns how
        many were refused."""
        if within_s <= 0:
            keep = 0
        elif not self.seconds_per_image:  # no measure yet: keep all, the call with 0 at the deadline refuses the rest
            keep = self.jobs.maxsize
        else:  # each model works through the queue one image at a time; the one it is running now takes a turn too
            keep = max(int(within_s / self.seconds_per_image) - 1, 0) * self.models
        with self.jobs.mutex:
            if within_s <= 0:
                self._closed = True
            jobs = [item for item in self.jobs.queue if item is not _STOP]
            refused = jobs[keep:]
            gone = {id(job) for job in refused}
            kept = [item for item in self.jobs.queue if id(item) not in gone]
            self.jobs.queue.clear()
            self.jobs.queue.extend(kept)
            self.jobs.not_full.notify_all()
        for job in refused:
            if job.future.set_running_or_notify_cancel():
                job.future.set_exception(ModelNotReady("the server is shutting down; retry on another instance"))
        metrics.QUEUE_DEPTH.labels(self.model).set(self.jobs.qsize())
        return len(refused)

    def submit(self, images: list[np.ndarray], params: PredictParams) -> list[Future]:
        """Queue the images (all or none); each future resolves to its Ultralytics Results."""
        if self._closed:
            raise ModelNotReady("the server is shutting down; retry on another instance")
        jobs = [Job(image, params) for image in images]
        with self.jobs.mutex:
            if len(self.jobs.queue) + len(jobs) > self.jobs.maxsize:
                raise Overloaded(f"{self.jobs.maxsize} images are already waiting for the model; retry shortly")
        for job in jobs:
            self.jobs.put_nowait(job)
        metrics.QUEUE_DEPTH.labels(self.model).set(self.jobs.qsize())
        return [job.future for job in jobs]

    def predict_sync(self, image: np.ndarray, params: PredictParams, timeout_s: float):
        """Submit one image and wait for it from a plain thread (tests, tools)."""
        (future,) = self.submit([image], params)
        try:
            return future.result(timeout_s)
        except TimeoutError:
            future.cancel()
            raise InferenceTimeout(f"inference did not finish within {timeout_s:g} s") from None

    def _predict_for(self, index: int):
        predicts = self._predicts
        return predicts[index] if index < len(predicts) else None

    def _put_back(self, items: list) -> None:
        """Put items at the head of the queue, in order, even when it is full (they were already counted)."""
        with self.jobs.mutex:
            self.jobs.queue.extendleft(reversed(items))
            self.jobs.not_empty.notify()

    def _run(self, index: int) -> None:
        timed = False  # a model's first call (warm-up, lazy initialisation) says nothing of the next ones
        while True:
            batch, stop = collect_batch(self.jobs, self.max_batch_size, self.max_batch_wait_s)
            predict = self._predict_for(index)
            if predict is None:  # retired by a swap while waiting: another thread runs these
                self._put_back(batch + ([_STOP] if stop else []))
                return
            metrics.QUEUE_DEPTH.labels(self.model).set(self.jobs.qsize())
            if batch:
                t0 = time.monotonic()
                run_batch(predict, batch, self.model)
                per_image = (time.monotonic() - t0) / len(batch)
                if timed:
                    self.seconds_per_image = 0.8 * self.seconds_per_image + 0.2 * per_image \
                        if self.seconds_per_image else per_image
                timed = True
            # Not kept while waiting for the next jobs: a huge image would stay in memory for as long as this thread
            # is idle (once per thread: replicas would multiply it).
            del batch
            if stop:
                self._refuse_waiting()
                log.info("inference loop stopped")
                return

    def _refuse_waiting(self) -> None:
        while True:
            try:
                job = self.jobs.get_nowait()
            except queue.Empty:
                break
            if job is not _STOP and job.future.set_running_or_notify_cancel():
                job.future.set_exception(ModelNotReady("the server is shutting down"))
        self._put_back([_STOP])  # for the other threads
