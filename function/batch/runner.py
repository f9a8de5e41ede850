"""One task's loop: take the chunks of its share that are not done, read the next while this one is inferred, write
each as one create-only object (its errors first, then its results, which mark it done), then check the failure rate
and, when the whole run is done, write the summary.

Inference is the serving core itself (`core.service.Service`): the same start-up (weights, engine cache, CPU
replicas), decoding, video reading, model queue (equal shapes batched) and `classes` resolution as `POST /predict`, and
each line is the Platform dialect's own encoding, so every result line equals what /predict answers for that file.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace

from ..core.requests import PredictRequest, Slicing
from ..core.service import Service
from ..core.tracking import check_trackable
from ..core.video import looks_like_a_video
from ..dialects import platform
from ..errors import ModelNotReady, Overloaded, ServiceError, TooLarge, WeightsError
from ..logs import flush_logs, log
from ..models.params import PredictParams
from ..settings import Settings, TaskShare
from . import plan as plans
from .reader import Item, open_input
from .shares import done_chunks, errors_name, results_name, share, tracks_name
from .writer import open_output

READ_THREADS = 16  # reads wait on the network, not on our CPU
# The next chunk is read ahead while this one is inferred, unless its objects add up to more than this (large videos):
# then it is read when its turn comes, so a task holds one such chunk, not two.
PREFETCH_BYTES = 1 << 30
SUMMARY = "summary.json"
EXIT_FAILURE_RATE = 3


@dataclass(frozen=True)
class Job:
    """What `python -m function batch` was asked: validated by command.py."""

    input: str
    output: str
    glob: str | None
    chunk_size: int
    params: PredictParams
    vid_stride: int
    max_failure_rate: float
    track: str | None = None  # the tracker that follows each video's objects (core/tracking.py), or None
    slicing: Slicing | None = None  # images only: a video with slicing is its item's 400


class Runner:
    def __init__(self, job: Job, settings: Settings, task: TaskShare, progress_bar: bool = False):
        # One chunk is inferred at a time: the model's queue and admission take a whole chunk (and a video's frames).
        room = job.chunk_size + 4 * settings.max_batch_size
        self.settings = replace(settings, max_queue=max(settings.max_queue, room))
        self.job, self.task, self.progress_bar = job, task, progress_bar
        self.source, self.output = open_input(job.input), open_output(job.output)
        self.service = Service(self.settings)
        self.read_pool = ThreadPoolExecutor(READ_THREADS, thread_name_prefix="read")
        # Its own thread: a chunk's write never queues behind the next chunk's reads.
        self.write_pool = ThreadPoolExecutor(1, thread_name_prefix="write")
        self.one_video = None  # an asyncio.Semaphore(1), made on the loop: a chunk's videos take turns

    # -- start-up -------------------------------------------------------------------------------------------------

    def load(self) -> PredictParams:
        """Start the serving core and wait until its model is ready; returns the parameters with `classes` resolved
        against the model (an unknown class is refused here, as /predict refuses it)."""
        failures: list[str] = []
        self.service.start(failures.append).join()
        if failures:
            raise WeightsError(failures[0])
        # Not a request that cannot wait: every answer of the run comes from the engine the service keeps (its
        # exported engine once built and checked, else PyTorch), never from two.
        self.service.models.engine_settled.wait()
        if self.job.track is not None:
            check_trackable(self.service.models.model.task)
        return self.service.resolve_classes(self.job.params)

    def plan(self, params: PredictParams) -> plans.Plan:
        decided = {"conf": params.conf, "iou": params.iou, "imgsz": params.imgsz, "max_det": params.max_det,
                   "classes": list(params.classes) if params.classes is not None else None,
                   "normalize": params.normalize, "decimals": params.decimals, "vid_stride": self.job.vid_stride,
                   "task": self.service.models.model.task}
        if self.job.track is not None:  # only then: an untracked run keeps the id it has always had
            decided["track"] = self.job.track
        if self.job.slicing is not None:  # only then: runs planned before slicing existed keep their id
            decided["slicing"] = asdict(self.job.slicing)
        run = plans.run_id(self.source.uri, self.job.glob, weights_digest(self.service.models.weights), decided)
        plan, made = plans.load_or_make(self.output, self.source, self.job.glob, run, decided, self.job.chunk_size)
        if plan.chunk_size != self.job.chunk_size:
            log.info(f"the run's plan has chunks of {plan.chunk_size}; --chunk-size {self.job.chunk_size} is ignored")
        when = "planned now" if made else "planned before"
        log.info(f"run {plan.run}: {len(plan.items)} items in {plan.chunks} chunks ({when})",
                 extra={"fields": {"run": plan.run, "items": len(plan.items), "chunks": plan.chunks,
                                   "planned_now": made}})
        return plan

    # -- the loop -------------------------------------------------------------------------------------------------

    async def run(self, params: PredictParams) -> int:
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, self._terminated)
        # A video holds a whole model batch of admission while its frames stream through the model (a sliced image,
        # two, while its tiles do); the images of a chunk each hold one. One video or sliced image at a time keeps a
        # chunk within the room made for it above.
        self.one_video = asyncio.Semaphore(1)
        # Storage (listing a bucket can take minutes), reads, writes and hashing the weights all run off the event
        # loop, which only waits for them: SIGTERM's handler runs on the loop, and stops the task at once.
        plan = await asyncio.to_thread(self.plan, params)
        mine = share(plan.chunks, self.task)
        done = await asyncio.to_thread(done_chunks, self.output)
        todo = [chunk for chunk in mine if chunk not in done]
        log.info(f"task {self.task.index}/{self.task.count} (attempt {self.task.attempt}): {len(mine)} chunks, "
                 f"{len(todo)} to do",
                 extra={"fields": {"task": self.task.index, "share": len(mine), "todo": len(todo)}})
        started, processed = time.monotonic(), 0
        reading = None
        try:
            for position, chunk in enumerate(todo):
                items = plan.chunk(chunk)
                blobs = await (reading or self._read(items))
                following = plan.chunk(todo[position + 1]) if position + 1 < len(todo) else ()
                # The next chunk is read while this one is inferred.
                reading = self._read(following) if following and _bytes(following) <= PREFETCH_BYTES else None
                t0 = time.monotonic()
                lines, errors, tracks = await self._infer(items, blobs, params)
                seconds = time.monotonic() - t0
                written = await asyncio.get_running_loop().run_in_executor(
                    self.write_pool, self._write, chunk, len(items), lines, errors, tracks, seconds)
                processed += len(items)
                self._progress(chunk, items, lines, errors, seconds, written, position + 1, len(todo),
                               processed / max(time.monotonic() - started, 1e-9))
        finally:
            if reading is not None:  # the loop ended early (inference failed): the chunk read ahead is not wanted
                _drop(reading)
        return await asyncio.to_thread(self._finish, plan, mine)

    def _terminated(self) -> None:
        """SIGTERM (Cloud Run stops the task, or maintenance ends a GPU task): no chunk is half written (each is one
        create-only object), so stop at once and let the retry do what is left."""
        log.warning("SIGTERM: stopping; the chunks not written are left to the task's retry or a re-execution",
                    extra={"fields": {"task": self.task.index}})
        flush_logs()  # os._exit skips the interpreter's exit, which would write what is queued
        sys.stdout.flush()
        os._exit(128 + signal.SIGTERM)

    def _read(self, items: tuple[Item, ...]) -> asyncio.Future:
        loop = asyncio.get_running_loop()
        return asyncio.ensure_future(asyncio.gather(*(loop.run_in_executor(self.read_pool, self._read_one, item)
                                                      for item in items)))

    def _read_one(self, item: Item) -> bytes | ServiceError:
        """An item's bytes, or the error that is its answer; an infrastructure failure raises (the task fails)."""
        limit = self.settings.max_video_bytes
        if item.size > limit:  # the largest body /predict reads
            return TooLarge(f"{item.uri} is {item.size} bytes, over MAX_VIDEO_MB={limit // 2**20}")
        try:
            return self.source.read(item)
        except ServiceError as exc:
            return exc

    async def _infer(self, items, blobs, params: PredictParams) -> tuple[list[dict], list[dict], dict]:
        """The chunk's result lines, its error lines, and each tracked video's tracks by its uri."""
        outcomes = await asyncio.gather(*(self._infer_one(item, data, params) for item, data in zip(items, blobs)))
        lines = [line for kind, found, _ in outcomes if kind == "results" for line in found]
        errors = [found for kind, found, _ in outcomes if kind == "error"]
        tracks = {item.uri: found for item, (_, _, found) in zip(items, outcomes) if found is not None}
        return lines, errors, tracks

    async def _infer_one(self, item: Item, data, params: PredictParams):
        if isinstance(data, ServiceError):
            return "error", error_line(item, "read", data), None
        if looks_like_a_video(data):
            # A video is one item, so never split across chunks or tasks: a retry tracks it again from frame 0.
            request = PredictRequest(images=(), params=params, video=data, vid_stride=self.job.vid_stride,
                                     track=self.job.track, reduce=lambda result: platform.encode_result(result, params),
                                     slicing=self.job.slicing)
        else:
            request = PredictRequest(images=(data,), params=params, slicing=self.job.slicing)
        try:
            if request.video is None and request.slicing is None:
                images, tracks = await self.service.predict(request, time.monotonic(), _platform_images)
            else:
                async with self.one_video:
                    images, tracks = await self.service.predict(request, time.monotonic(), _platform_images)
        except (Overloaded, ModelNotReady):
            raise  # the model's side, not the item's: the task fails and is retried
        except ServiceError as exc:
            return "error", error_line(item, "infer" if exc.status >= 500 else "decode", exc), None
        except Exception as exc:  # the model failed on this input; logged with its stack, the item gets a 500
            log.exception(f"{item.uri}: inference failed")
            return "error", error_line(item, "infer", ServiceError(f"inference failed: {type(exc).__name__}")), None
        return "results", [{"source": item.source(), **entry} for entry in images], tracks

    def _write(self, chunk: int, items: int, lines: list[dict], errors: list[dict], tracks: dict,
               seconds: float) -> bool:
        """Errors and a tracked run's tracks first, then the results, whose existence marks the chunk done: a task
        killed between them leaves the chunk to do again, and its errors object is then found already there (its
        tracks too: the same, since a video is tracked again from frame 0 by the same engine)."""
        if tracks:
            self.output.create(tracks_name(chunk), json.dumps(tracks, separators=(",", ":")).encode())
        name = errors_name(chunk)
        if not (errors and self.output.create(name, jsonl(errors))):
            earlier = self.output.read(name)
            if earlier is not None:
                lines, errors = self._reconcile(chunk, lines, errors, read_jsonl(earlier))
        counts = {"items": items, "frames": len(lines), "errors": len(errors), "seconds": round(seconds, 3),
                  "task": self.task.index, "attempt": self.task.attempt, "written": round(time.time(), 3)}
        return self.output.create(results_name(chunk), jsonl(lines), counts)

    def _reconcile(self, chunk: int, lines: list[dict], errors: list[dict], earlier: list[dict]):
        """An earlier attempt wrote this chunk's errors and died before its results: those lines are the chunk's
        errors, so an input they name gets no result line now. An input that failed only now (deleted since) has
        no line at all: said in the log, since no object of this chunk can take it any more."""
        failed = {_key(line["source"]) for line in earlier}
        kept = [line for line in lines if _key(line["source"]) not in failed]
        lost = [line["source"]["uri"] for line in errors if _key(line["source"]) not in failed]
        if lost:
            log.warning(f"chunk {chunk}: {len(lost)} inputs failed in this attempt but not in the one that wrote "
                        f"{errors_name(chunk)}; they have no line: {', '.join(lost[:5])}",
                        extra={"fields": {"chunk": chunk, "lost": lost}})
        return kept, earlier

    def _tracks(self) -> dict:
        """A tracked run's tracks and counts per video, from every chunk's tracks object."""
        found = {}
        for name in sorted(self.output.list("tracks/")):
            found.update(json.loads(self.output.read(name)))
        return found

    def _progress(self, chunk, items, lines, errors, seconds, written, position, total, items_per_s) -> None:
        rate = len(lines) / max(seconds, 1e-9)
        log.info(f"chunk {chunk}: {len(items)} items, {len(lines)} frames, {len(errors)} errors, {rate:.1f} img/s"
                 f"{'' if written else ' (already written by another attempt: skipped)'}",
                 extra={"fields": {"chunk": chunk, "items": len(items), "frames": len(lines), "errors": len(errors),
                                   "seconds": round(seconds, 3), "img_per_s": round(rate, 2), "written": written,
                                   "done": position, "todo": total}})
        if self.progress_bar:
            width = 30
            filled = width * position // max(total, 1)
            print(f"\r[{'#' * filled}{'.' * (width - filled)}] {position}/{total} chunks, {items_per_s:.1f} items/s",
                  end="" if position < total else "\n", file=sys.stderr, flush=True)

    def _finish(self, plan: plans.Plan, mine: list[int]) -> int:
        done = done_chunks(self.output)
        counts = [done[chunk] for chunk in mine if chunk in done]
        items = sum(int(c.get("items", 0)) for c in counts)
        errors = sum(int(c.get("errors", 0)) for c in counts)
        if len(done) == plan.chunks and self.output.read(SUMMARY) is None:
            summary = summarize(plan, done)
            if "track" in plan.params:
                summary["tracks"] = self._tracks()
            if self.output.create(SUMMARY, json.dumps(summary, indent=1).encode() + b"\n"):
                log.info(f"run {plan.run} complete: {summary['items']} items, {summary['frames']} frames, "
                         f"{summary['errors']} errors", extra={"fields": {"summary": summary}})
        # Judged on what the share's chunks hold, not on this attempt's work: a retry fails the same way.
        if items and errors / items > self.job.max_failure_rate:
            log.error(f"{errors} of this task's {items} items failed, over --max-failure-rate "
                      f"{self.job.max_failure_rate:g}: see {self.output.uri}errors/",
                      extra={"fields": {"errors": errors, "items": items}})
            return EXIT_FAILURE_RATE
        return 0


def summarize(plan: plans.Plan, done: dict[int, dict]) -> dict:
    counts = done.values()
    frames = sum(int(c.get("frames", 0)) for c in counts)
    seconds = max(float(c.get("written", plan.created)) for c in counts) - plan.created
    task_seconds = sum(float(c.get("seconds", 0)) for c in counts)
    return {"run": plan.run, "input": plan.input, "glob": plan.glob, "params": plan.params, "chunks": plan.chunks,
            "items": len(plan.items), "frames": frames, "errors": sum(int(c.get("errors", 0)) for c in counts),
            "seconds": round(seconds, 3), "images_per_second": round(frames / max(seconds, 1e-9), 2),
            "task_seconds": round(task_seconds, 3)}


def error_line(item: Item, stage: str, error: ServiceError) -> dict:
    """One failed input: where it failed and the error /predict would answer for it."""
    return {"source": item.source(), "stage": stage, "error": error.body()["error"]}


def _platform_images(request: PredictRequest, prediction) -> tuple[list[dict], dict | None]:
    """The `images` of the Platform's /predict answer (its `metadata` is per request, not per item), and a tracked
    video's `tracks` and `counts` from that metadata."""
    body = platform.encode(request, prediction).body
    tracked = {key: body["metadata"][key] for key in ("tracks", "counts")} if prediction.tracks is not None else None
    return body["images"], tracked


def _drop(reading: asyncio.Future) -> None:
    """A chunk read ahead that will not be used: cancelled (its reads that have not started never start, and those
    running end quietly, even once the loop has closed), and its outcome taken, so that a read that failed is not
    reported as an exception nobody retrieved."""
    if reading.done():
        if not reading.cancelled():
            reading.exception()
        return
    reading.cancel()
    reading.add_done_callback(lambda future: future.cancelled() or future.exception())


def _bytes(items) -> int:
    return sum(item.size for item in items)


def _key(source: dict) -> tuple:
    return source["uri"], source["generation"]


def read_jsonl(data: bytes) -> list[dict]:
    return [json.loads(line) for line in data.splitlines() if line.strip()]


def jsonl(lines: list[dict]) -> bytes:
    return b"".join(json.dumps(line, separators=(",", ":")).encode() + b"\n" for line in lines)


def weights_digest(weights: str) -> str:
    """sha256 of the weights file (the run id changes when the weights do); an Ultralytics asset name as it is."""
    from pathlib import Path

    from ..models.engines import file_sha256

    return file_sha256(Path(weights)) if Path(weights).is_file() else weights
