"""The service behind every dialect: predict, with no web types. The models themselves (start-up, engines, MODELS'
registry, their loops) are models/host.py's; a request here only takes a lease on one.

A predict takes images in any form a dialect accepts (uploaded bytes, a URL, base64 text) or one video, and returns
what the dialect's encoder makes of Ultralytics `Results`, one per image in request order (per processed frame for a
video). Admission, the source fetch, decoding under the pixel budget and the model's queue are all here, once, for
every dialect.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from typing import Callable

from PIL import Image

from .. import metrics
from ..errors import BadImage, BadParameter, ModelNotReady, TooLarge
from ..logs import log
from ..memory import TRIM_AFTER_PIXELS, trim_heap
from ..models.host import ModelHost
from ..models.loaded import LoadedModel
from ..models.params import PredictParams
from ..models.registry import Lease
from ..settings import Settings
from .admission import Admission, PixelBudget, StreamSlots, default_max_streams
from .images import decode_image, image_pixels
from .requests import Frame, Prediction, PredictRequest
from .sources import SourceFetcher, decode_base64, is_url
from .tracking import Sequence, TrackLog, check_trackable, counted

# Source fetches wait on other hosts, not on our CPU: their own threads, so a slow host never delays a decode.
FETCH_THREADS = 16


# After SIGTERM, queued work has the graceful limit minus this: the batch then running, its encoding and the answer's
# bytes fit in what is left before uvicorn cancels what has not answered (graceful_timeout_s - 1).
SHED_BEFORE_LIMIT_S = 3.0


class Service:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.models = ModelHost(settings)
        self.draining = False  # SIGTERM arrived: queued work is shed (begin_shutdown)
        self.fetcher = SourceFetcher(settings.max_upload_bytes, settings.url_timeout_s, settings.url_allowed_networks,
                                     settings.allowed_source_buckets)
        self.admission = Admission(settings.max_queue)
        self.pixels = PixelBudget(settings.decode_budget_pixels)
        self.cpu_pool = ThreadPoolExecutor(settings.threads, thread_name_prefix="cpu")
        self.fetch_pool = ThreadPoolExecutor(FETCH_THREADS, thread_name_prefix="fetch")
        self.started_at = time.monotonic()
        self.shutting_down = asyncio.Event()  # SIGTERM: live streams finish the frame in progress and close
        self.streams = StreamSlots(settings.max_streams or default_max_streams(settings.device))

    # -- start and stop -------------------------------------------------------------------------------------------

    def start(self, on_failure: Callable[[str], None]) -> threading.Thread:
        """Load the models in the background so /healthz answers at once; on failure call on_failure with the reason
        (the server ends the process: the core never does)."""
        # decode_image checks every header against MAX_IMAGE_PIXELS itself, with a message that names the size.
        Image.MAX_IMAGE_PIXELS = None
        return self.models.start(on_failure)

    def begin_shutdown(self) -> None:
        """SIGTERM (on the event loop; the server stops accepting connections and streams): queued images that cannot
        be done before the server must answer get a 503 now, and whatever is still queued SHED_BEFORE_LIMIT_S before
        the graceful limit gets it then, so every request in flight has a complete answer before Cloud Run's 10 s."""
        self.shutting_down.set()
        loops = self.models.loops()
        if self.draining or not loops:
            return
        self.draining = True
        budget_s = max(self.settings.graceful_timeout_s - SHED_BEFORE_LIMIT_S, 0.5)
        refused = sum(loop.shed(budget_s) for loop in loops)
        for loop in loops:
            asyncio.get_running_loop().call_later(budget_s, loop.shed, 0.0)
        log.info(f"shutting down: {refused} queued images refused with 503, the rest have {budget_s:g} s",
                 extra={"fields": {"refused": refused}})

    def stop(self) -> None:
        self.models.stop(self.settings.graceful_timeout_s)
        self.cpu_pool.shutdown(wait=False, cancel_futures=True)
        self.fetch_pool.shutdown(wait=False, cancel_futures=True)

    # -- which model ----------------------------------------------------------------------------------------------

    def require_ready(self) -> LoadedModel:
        """The default model; ModelNotReady (503) while it loads or once the server is stopping."""
        models = self.models
        if models.stopping:
            raise ModelNotReady("the server is shutting down; retry on another instance")
        if not models.ready.is_set() or models.model is None:
            raise ModelNotReady("the model is loading; retry in a few seconds")
        return models.model

    def resolve(self, wanted: str | None) -> str | None:
        return self.models.resolve(wanted)

    async def acquire(self, model_id: str | None) -> Lease:
        """A lease on the model (release it when the request ends), waiting for its load when it is not loaded: the
        caller bounds the wait with the request's deadline."""
        self.require_ready()
        while True:
            taken = self.models.take(model_id)
            if isinstance(taken, Lease):
                return taken
            try:
                # Shielded: a request that gives up must not cancel the load the others wait for.
                await asyncio.shield(asyncio.wrap_future(taken))
            except asyncio.CancelledError:  # its deadline, or the client left: the model need not be kept for it
                self.models.registry.gave_up(model_id, taken)
                raise

    # -- requests -------------------------------------------------------------------------------------------------

    async def predict(self, request: PredictRequest, started: float, encode, lease: Lease | None = None):
        """Run the request's images through the model and return `encode(request, prediction)`, computed in the CPU
        pool while the decoded pixels are still counted (Results hold the original image until they are encoded).

        The caller bounds it with the request's deadline: cancelled at any await, it leaves nothing behind (queued
        jobs are dropped, pixels are returned when the work that holds them ends)."""
        self.require_ready()
        lease = lease or self.models.take(None)
        request = replace(request, params=self.resolve_classes(request.params, lease.model))
        if request.track is not None:
            check_trackable(lease.model.task)
            if request.video is None:
                raise BadParameter("'track' follows objects across a video's frames: send a video (a live camera "
                                   "streams its frames to GET /stream)")
        admitted = len(request.images)
        if request.slicing is not None:  # its images go one at a time, each keeping a few chunks of tiles queued
            from . import slicing

            slicing.check(request, lease.model.task)
            admitted = slicing.CHUNKS_IN_FLIGHT * self._chunk(lease)
        if request.video is not None:
            return await self.predict_video(request, started, encode, lease)
        if not request.images:
            raise BadImage("No image: send it as multipart field 'file' (or 'image'), or 'source' with a URL or base64 data")
        with self.admission.admit(admitted):
            blobs = await asyncio.gather(*(self._image_bytes(image) for image in request.images))
            return await self._infer(list(blobs), request, lease, started, encode)

    async def predict_frame(self, data: bytes, params: PredictParams, lease: Lease, finish):
        """One live stream's frame, admitted, decoded under the pixel budget and run through the model's queue as an
        image request's image is; returns `finish(Results)`, run in the CPU pool (the stream's tracker, its
        encoding)."""
        request = PredictRequest(images=(data,), params=params)
        with self.admission.admit(1):
            blob = await self._image_bytes(data)
            return await self._infer([blob], request, lease, time.monotonic(),
                                     lambda _, prediction: finish(prediction.results[0]))

    def resolve_classes(self, params: PredictParams, model: LoadedModel | None = None) -> PredictParams:
        """`classes` as the client wrote them (names or ids) → the model's class ids; an unknown one is a 400."""
        if not params.class_names:
            return params
        names = class_names(model or self.models.model)
        by_name = {name.lower(): index for index, name in names.items()}
        ids = []
        for given in params.class_names:
            index = int(given) if given.isascii() and given.isdigit() else by_name.get(given.lower())
            if index is None or index not in names:
                known = ", ".join(list(names.values())[:20]) + (", …" if len(names) > 20 else "")
                raise BadParameter(f"'classes': {given!r} is not a class of this model ({known}; or their ids 0-{len(names) - 1})")
            ids.append(index)
        return replace(params, classes=tuple(sorted(set(ids))))

    async def predict_video(self, request: PredictRequest, started: float, encode, lease: Lease):
        """Decode the video as a stream and send its frames to the model a chunk at a time (MAX_BATCH_SIZE frames for
        each model serving side by side): requests for images queue between two chunks, never behind the whole video.
        Each frame's Results is tracked (`request.track`: this request's own tracker, in frame order) and reduced
        (`request.reduce`) as soon as it is answered, so only one batch of frames is ever held."""
        model, loop = lease.model, lease.loop
        s = self.settings
        chunk = self._chunk(lease)
        reduce = request.reduce or (lambda result: result)
        # Built in the pool: the first one imports Ultralytics' trackers (a second or so).
        sequence = await self.run_cpu(Sequence, request.track, model.task, model.device) if request.track else None
        track_log = TrackLog() if sequence is not None else None
        kept, frames = [], []

        def finish(batch, results) -> list:  # in the CPU pool, one chunk at a time: the tracker sees frames in order
            answers = []
            for frame, result in zip(batch, results):
                if sequence is not None:
                    result = sequence.update(result)
                    track_log.observe(frame.index, result)
                answers.append(reduce(result))
            return answers

        with self.admission.admit(chunk), counted(sequence):
            async with self._video_reader(request, s) as reader:
                while batch := await self.run_cpu(reader.read, chunk):
                    held = await self.pixels.acquire(sum(frame.image.shape[0] * frame.image.shape[1] for frame in batch))
                    running: list[Future] = []
                    try:
                        t0 = time.monotonic()
                        running = loop.submit([frame.image for frame in batch], request.params)
                        results = await asyncio.gather(*(asyncio.wrap_future(f) for f in running))
                        self.admission.observe(time.monotonic() - t0, len(batch))
                        finishing = self.cpu_pool.submit(finish, batch, results)
                        running = [finishing]
                        kept += await asyncio.wrap_future(finishing)
                    finally:
                        _release_when_done(running, lambda held=held: self.pixels.release(held), asyncio.get_running_loop())
                    metrics.VIDEO_FRAMES.inc(len(batch))
                    frames += [Frame(frame.index, frame.timestamp) for frame in batch]
            tracks = track_log.tracks(class_names(model)) if track_log is not None else None
            prediction = Prediction(results=kept, model=model, started=started, frames=frames,
                                    process_started=self.started_at, tracks=tracks)
            return await self.run_cpu(encode, request, prediction)

    @contextlib.asynccontextmanager
    async def _video_reader(self, request: PredictRequest, s: Settings):
        """The request's video, open; closed however the request ends, even when it gives up (deadline, client gone)
        while the video is still being opened or read in the pool: then it is closed there, once that work ends."""
        from .video import open_video

        opening = self.cpu_pool.submit(open_video, request.video, request.vid_stride, s.max_video_frames,
                                       s.max_image_pixels)
        try:
            reader = await asyncio.wrap_future(opening)
        except BaseException:
            opening.add_done_callback(_close_opened_reader)
            raise
        try:
            yield reader
        finally:
            # In the pool: a read may still be running there if this request gave up. A pool already shut down (the
            # process is stopping) must not hide the error that brought us here: then it is closed here.
            self._in_pool(reader.close)

    def _in_pool(self, fn) -> None:
        """Run `fn` in the CPU pool without waiting; here and now when the pool no longer takes work."""
        try:
            self.cpu_pool.submit(fn)
        except RuntimeError:  # cannot schedule new futures after shutdown
            fn()

    def _chunk(self, lease: Lease) -> int:
        """Images sent to the model at once when one request has many (a video's frames, an image's tiles): a batch
        for each model serving side by side, so other requests' images queue between two chunks."""
        return max(1, self.settings.max_batch_size) * lease.loop.models

    async def run_cpu(self, fn, *args):
        """Run CPU-heavy work (decoding, encoding, drawing) in the bounded pool, off the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self.cpu_pool, fn, *args)

    async def _image_bytes(self, image: bytes | str) -> bytes:
        if isinstance(image, bytes):
            if len(image) > self.settings.max_upload_bytes:  # the body reader let it through as a possible video
                raise TooLarge(f"Upload is over MAX_UPLOAD_MB={self.settings.max_upload_bytes // 2**20} for an image")
            return image
        text = image.strip()
        if is_url(text):
            return await asyncio.get_running_loop().run_in_executor(self.fetch_pool, self.fetcher.fetch, text)
        return decode_base64(text, self.settings.max_upload_bytes)

    async def _infer(self, blobs: list[bytes], request: PredictRequest, lease: Lease, started: float, encode):
        max_pixels = self.settings.max_image_pixels
        sizes = await self.run_cpu(lambda: [image_pixels(blob, max_pixels) for blob in blobs])
        held = await self.pixels.acquire(sum(sizes))
        # The pixels are held until every piece of work that holds them has ended, even when this request gives up
        # (deadline) while a decode, a model call or an encoding is still running: only then is the memory free.
        running: list[Future] = []
        try:
            decoding = self.cpu_pool.submit(lambda: [decode_image(blob, max_pixels) for blob in blobs])
            running = [decoding]
            images = await asyncio.wrap_future(decoding)
            t0 = time.monotonic()
            if request.slicing is None:
                running = lease.loop.submit(images, request.params)
                results = list(await asyncio.gather(*(asyncio.wrap_future(f) for f in running)))
            else:
                from . import slicing

                running = []
                results = [await slicing.predict(image, request, lease, self.cpu_pool, self.settings.max_slices,
                                                 self._chunk(lease), running) for image in images]
            self.admission.observe(time.monotonic() - t0, sum(getattr(r, "inputs", 1) for r in results))
            prediction = Prediction(results=results, model=lease.model, started=started, process_started=self.started_at)
            encoding = self.cpu_pool.submit(encode, request, prediction)
            running = [encoding]
            return await asyncio.wrap_future(encoding)
        finally:
            _release_when_done(running, lambda: self._release_pixels(held), asyncio.get_running_loop())

    def _release_pixels(self, pixels: int) -> None:
        self.pixels.release(pixels)
        if pixels >= TRIM_AFTER_PIXELS:
            # On the loop's next turn, once the finished request has dropped its arrays, not while it still holds them.
            asyncio.get_running_loop().call_soon(self._in_pool, trim_heap)


def _close_opened_reader(opening: Future) -> None:
    """A video opened for a request that gave up while it was being opened: nobody will read it."""
    if not opening.cancelled() and opening.exception() is None:
        opening.result().close()


def class_names(model: LoadedModel) -> dict[int, str]:
    """The model's {id: name}, as Ultralytics' Results carry them."""
    names = getattr(model, "names", None) or model.yolo.names
    return dict(names)


def _release_when_done(futures: list[Future], release, loop: asyncio.AbstractEventLoop) -> None:
    """Call `release` on the event loop once every future has ended (at once if they all have)."""
    pending = {f for f in futures if not f.done()}
    if not pending:
        release()
        return

    def one_done(future: Future) -> None:  # on the loop's thread
        pending.discard(future)
        if not pending:
            release()

    for future in list(pending):
        future.add_done_callback(lambda f: _call_soon(loop, one_done, f))


def _call_soon(loop: asyncio.AbstractEventLoop, fn, *args) -> None:
    try:
        loop.call_soon_threadsafe(fn, *args)
    except RuntimeError:  # the loop has closed: the process is exiting and nothing waits for the release
        pass
