"""The service behind every dialect: start-up (weights → model → warm-up → ready), then predict, with no web types.

A predict takes images in any form a dialect accepts (uploaded bytes, a URL, base64 text) and returns Ultralytics
`Results`, one per image in request order. Admission, the source fetch, decoding under the pixel budget and the
model's queue are all here, once, for every dialect.
"""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Callable

from PIL import Image

from .. import metrics
from ..errors import BadImage, BadParameter, ModelNotFound, ModelNotReady, TooLarge, WeightsError
from ..logs import log
from ..memory import TRIM_AFTER_PIXELS, rss_bytes, trim_heap
from ..models.batcher import InferenceLoop
from ..models.loaded import LoadedModel, cpu_replicas, load_model, pick_device, warm_up_images
from ..models.params import PredictParams
from ..models.registry import Entry, Lease, ModelRegistry
from ..models.weights import resolve_weights
from ..settings import Settings
from .admission import Admission, PixelBudget
from .images import decode_image, image_pixels
from .requests import Frame, Prediction, PredictRequest
from .sources import SourceFetcher, decode_base64, is_url

# Source fetches wait on other hosts, not on our CPU: their own threads, so a slow host never delays a decode.
FETCH_THREADS = 16


# After SIGTERM, queued work has the graceful limit minus this: the batch then running, its encoding and the answer's
# bytes fit in what is left before uvicorn cancels what has not answered (graceful_timeout_s - 1).
SHED_BEFORE_LIMIT_S = 3.0


class Service:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.model: LoadedModel | None = None
        self.weights: str | None = None  # the default model's weights on local disk (or an Ultralytics asset name)
        self.loop: InferenceLoop | None = None
        self.ready = threading.Event()
        # Set once the default model serves with the engine it will keep (its exported engine swapped in, or PyTorch
        # for good): what a batch run waits for, so that all its answers come from one engine.
        self.engine_settled = threading.Event()
        self.stopping = False
        self.draining = False  # SIGTERM arrived: queued work is shed (begin_shutdown)
        self.fetcher = SourceFetcher(settings.max_upload_bytes, settings.url_timeout_s, settings.url_allowed_networks,
                                     settings.allowed_source_buckets)
        self.admission = Admission(settings.max_queue)
        self.pixels = PixelBudget(settings.decode_budget_pixels)
        self.cpu_pool = ThreadPoolExecutor(settings.threads, thread_name_prefix="cpu")
        self.fetch_pool = ThreadPoolExecutor(FETCH_THREADS, thread_name_prefix="fetch")
        self.started_at = time.monotonic()
        self.default_id = settings.default_model_id
        self.default_memory_bytes, self.default_load_seconds = 0, None
        self._engines_building: set[str] = set()  # MODELS ids whose exported engine is being built (one at a time each)
        self.registry = ModelRegistry(dict(settings.models), self._load_on_demand, self._footprint,
                                      settings.max_loaded_models, settings.model_memory_bytes, settings.pin,
                                      _return_memory, self._fetch_weights) if settings.models else None

    # -- start-up -------------------------------------------------------------------------------------------------

    def start(self, on_failure: Callable[[str], None]) -> threading.Thread:
        """Load in the background so /healthz answers at once; on failure call on_failure with the reason (the server
        ends the process: the core never does)."""
        thread = threading.Thread(target=self._load, args=(on_failure,), name="model-loader", daemon=True)
        thread.start()
        return thread

    def _load(self, on_failure) -> None:
        s = self.settings
        # decode_image checks every header against MAX_IMAGE_PIXELS itself, with a message that names the size.
        Image.MAX_IMAGE_PIXELS = None
        try:
            memory_before = self._footprint() if self.registry is not None else 0  # the runtime before the model
            t0 = time.monotonic()
            weights = resolve_weights(s.model, s.model_cache_dir, s.gcs_chunk_mb * 2**20, s.gcs_workers)
            t1 = time.monotonic()
            device = pick_device(s.device)
            model = load_model(weights, device, s.model_task)
            t2 = time.monotonic()
            reference = model.warm_up()
            from ..models.engines import choose_engine  # the worker's: it needs numpy

            engine = choose_engine(s.engine, device)
            # CPU replicas are part of start-up (ready means all of them); an exported engine is built after it,
            # while PyTorch serves, and swapped in once verified.
            models = [model] + (self._replicas(weights, model) if engine == "pytorch" else [])
            t3 = time.monotonic()
        except WeightsError as exc:
            on_failure(str(exc))
            return
        except Exception as exc:  # anything else at start-up is just as fatal; say what it was
            on_failure(f"MODEL={s.model} could not be loaded: {type(exc).__name__}: {exc}")
            return
        self.model, self.weights = model, weights
        if self.registry is not None:
            self.default_memory_bytes = max(self._footprint() - memory_before, 0)
        self.default_load_seconds = t3 - t0
        self.loop = InferenceLoop([m.predict for m in models], s.max_queue, s.max_batch_size, s.max_batch_wait_ms / 1000,
                                  model=self.default_id)
        self.loop.start()
        if self.registry is not None and not self._load_pinned(on_failure):
            return
        self.ready.set()
        if engine != "pytorch":
            threading.Thread(target=self._swap_in_engine, args=(engine, weights, reference), name="engine-builder",
                             daemon=True).start()
        else:
            self.engine_settled.set()
        phases = {"weights": t1 - t0, "load": t2 - t1, "warmup": t3 - t2, "total": t3 - t0}
        for phase, seconds in phases.items():
            metrics.MODEL_LOAD_SECONDS.labels(phase).set(seconds)
        log.info(
            f"ready: model {model.name} ({model.task}) on {model.device}{' fp16' if model.half else ''}",
            extra={"fields": {
                "model": model.name, "task": model.task, "device": model.device, "half": model.half,
                "startup_s": {phase: round(seconds, 3) for phase, seconds in phases.items()},
            }},
        )

    def _load_pinned(self, on_failure) -> bool:
        """PIN's models are loaded before the service is ready (a failure is as fatal as the default's); PRELOAD's
        start loading too, and the service is ready without waiting for them."""
        pinned = self.registry.preload(self.settings.pin)
        self.registry.preload(self.settings.preload)
        for future in pinned:
            future.result()
        failed = [e for e in self.registry.entries.values() if e.pinned and e.model is None]
        if failed:
            on_failure(f"PIN: model {failed[0].id!r} could not be loaded: {failed[0].error}")
            return False
        return True

    def _footprint(self) -> int:
        """What the models occupy now: GPU memory on CUDA, else the process's RSS (the registry returns what is free
        before it measures)."""
        if pick_device(self.settings.device).startswith("cuda"):
            import torch

            return torch.cuda.memory_allocated()
        return rss_bytes()

    def _fetch_weights(self, entry: Entry) -> str:
        """One of MODELS' weights, as a local path (downloaded into the cache when remote)."""
        s = self.settings
        return resolve_weights(entry.weights, s.model_cache_dir, s.gcs_chunk_mb * 2**20, s.gcs_workers)

    def _load_on_demand(self, entry: Entry, weights: str) -> tuple[LoadedModel, InferenceLoop]:
        """One of MODELS (the registry's loader thread), its weights fetched: load, warm-up, its exported engine when
        ENGINE asks for one and it can be had (built once, then fetched from the engine cache), one inference loop."""
        s = self.settings
        device = pick_device(s.device)
        model = load_model(weights, device)  # its task is the weights' own (MODEL_TASK is the default model's)
        reference = model.warm_up()
        from ..models import engines

        engine = engines.choose_engine(s.engine, device)
        if engine != "pytorch":
            cache = engines.EngineCache(entry.weights, s.model_cache_dir, s.gcs_chunk_mb * 2**20, s.gcs_workers)
            args = (engine, entry.weights, Path(weights), reference, warm_up_images(), model.device, model.task,
                    model.name, s.max_batch_size, cache)
            try:
                model, _ = engines.prepare_engine(*args, build=False)
            except engines.EngineNotBuilt:
                # An export takes seconds to minutes: never on a request's path. It is built in the background, and
                # serves from this model's next load on (after an eviction, or on any instance sharing the cache).
                if entry.id not in self._engines_building:
                    self._engines_building.add(entry.id)
                    threading.Thread(target=self._build_engine, args=(entry.id, args), name="engine-builder",
                                     daemon=True).start()
            except Exception as exc:
                _engine_unavailable(engine, exc, entry.id)
        loop = InferenceLoop([model.predict], s.max_queue, s.max_batch_size, s.max_batch_wait_ms / 1000, model=entry.id)
        loop.start()
        return model, loop

    def _build_engine(self, model_id: str, args: tuple) -> None:
        from ..models import engines

        try:
            _, info = engines.prepare_engine(*args)
            log.info(f"model {model_id!r}: {info['engine']} engine built at {info['artefact']}; it serves from the "
                     "model's next load", extra={"fields": {"model": model_id, **info}})
        except Exception as exc:
            _engine_unavailable(args[0], exc, model_id)
        finally:
            self._engines_building.discard(model_id)

    def _replicas(self, weights: str, model: LoadedModel) -> list[LoadedModel]:
        """Copies of a PyTorch model for the cores Ultralytics leaves idle (model.cpu_replicas), each warmed up."""
        count = cpu_replicas(model) if weights.endswith(".pt") else 1
        copies = [load_model(weights, model.device, self.settings.model_task) for _ in range(count - 1)]
        for copy in copies:
            copy.warm_up()
        if copies:
            log.info(f"{count} PyTorch replicas: Ultralytics runs PyTorch on fewer threads than there are cores",
                     extra={"fields": {"replicas": count}})
        return copies

    def _swap_in_engine(self, engine: str, weights: str, reference: list) -> None:
        try:
            self._build_and_swap(engine, weights, reference)
        finally:
            self.engine_settled.set()

    def _build_and_swap(self, engine: str, weights: str, reference: list) -> None:
        """Build or fetch the exported engine and swap it in once verified; when it cannot be had, say why and keep
        PyTorch (with its CPU replicas). Never fatal."""
        from ..models import engines

        s, model, started = self.settings, self.model, time.monotonic()
        try:
            cache = engines.EngineCache(s.model, s.model_cache_dir, s.gcs_chunk_mb * 2**20, s.gcs_workers)
            exported, info = engines.prepare_engine(
                engine, s.model, Path(weights), reference, warm_up_images(), model.device, model.task, model.name,
                s.max_batch_size, cache)
        except Exception as exc:
            _engine_unavailable(engine, exc)
            if not self.stopping:
                self.loop.swap([model.predict] + [copy.predict for copy in self._replicas(weights, model)])
            return
        if self.stopping:
            return
        self.loop.swap([exported.predict])
        self.model = exported
        log.info(f"serving with {engine}: {info['artefact']} ({info['source']})",
                 extra={"fields": {**info, "seconds": round(time.monotonic() - started, 3)}})

    def begin_shutdown(self) -> None:
        """SIGTERM (on the event loop; the server stops accepting connections and streams): queued images that cannot
        be done before the server must answer get a 503 now, and whatever is still queued SHED_BEFORE_LIMIT_S before
        the graceful limit gets it then, so every request in flight has a complete answer before Cloud Run's 10 s."""
        if self.draining or self.loop is None:
            return
        self.draining = True
        budget_s = max(self.settings.graceful_timeout_s - SHED_BEFORE_LIMIT_S, 0.5)
        loops = [self.loop] + (self.registry.loops() if self.registry is not None else [])
        refused = sum(loop.shed(budget_s) for loop in loops)
        for loop in loops:
            asyncio.get_running_loop().call_later(budget_s, loop.shed, 0.0)
        log.info(f"shutting down: {refused} queued images refused with 503, the rest have {budget_s:g} s",
                 extra={"fields": {"refused": refused}})

    def stop(self) -> None:
        self.stopping = True
        if self.loop is not None:
            self.loop.stop(timeout=self.settings.graceful_timeout_s)
        if self.registry is not None:
            self.registry.stop(timeout=self.settings.graceful_timeout_s)
        self.cpu_pool.shutdown(wait=False, cancel_futures=True)
        self.fetch_pool.shutdown(wait=False, cancel_futures=True)

    # -- requests -------------------------------------------------------------------------------------------------

    def require_ready(self) -> LoadedModel:
        if self.stopping:
            raise ModelNotReady("the server is shutting down; retry on another instance")
        if not self.ready.is_set() or self.model is None:
            raise ModelNotReady("the model is loading; retry in a few seconds")
        return self.model

    # -- which model ----------------------------------------------------------------------------------------------

    def resolve(self, wanted: str | None) -> str | None:
        """The model a request addressed by id: None for the default model; ModelNotFound for an id not configured
        (nothing is ever loaded from what a client names). Without MODELS, any id when MODEL_ID is unset."""
        if wanted is None or (self.registry is None and not self.settings.model_id) or wanted == self.default_id:
            return None
        if self.registry is not None and wanted in self.registry.entries:
            return wanted
        if self.registry is None:
            raise ModelNotFound("Model not found")
        raise ModelNotFound(f"Model not found: {wanted!r} is not one of this endpoint's models (GET /models lists them)")

    async def acquire(self, model_id: str | None) -> Lease:
        """A lease on the model (release it when the request ends), waiting for its load when it is not loaded: the
        caller bounds the wait with the request's deadline. The default model's lease holds nothing."""
        model = self.require_ready()
        if model_id is None:
            return Lease(model, self.loop)
        while True:
            taken = self.registry.take(model_id)
            if isinstance(taken, Lease):
                return taken
            # Shielded: a request that gives up must not cancel the load the others wait for.
            await asyncio.shield(asyncio.wrap_future(taken))

    def describe_models(self) -> dict:
        """GET /models: every id, its task, loaded or not, its measured memory and load seconds."""
        s, model = self.settings, self.model
        default = {"id": self.default_id, "task": model.task if model else None, "loaded": self.ready.is_set(),
                   "pinned": True, "default": True,
                   "memory_mb": round(self.default_memory_bytes / 2**20, 1) if self.default_memory_bytes else None,
                   "load_seconds": None if self.default_load_seconds is None else round(self.default_load_seconds, 3),
                   "loads": 1 if model else 0, "inflight": None, "error": None}
        listed = [default] + (self.registry.describe() if self.registry is not None else [])
        return {"default": self.default_id, "max_loaded_models": s.max_loaded_models,
                "model_memory_mb": s.model_memory_bytes // 2**20 or None, "models": listed}

    async def predict(self, request: PredictRequest, started: float, encode, lease: Lease | None = None):
        """Run the request's images through the model and return `encode(request, prediction)`, computed in the CPU
        pool while the decoded pixels are still counted (Results hold the original image until they are encoded).

        The caller bounds it with the request's deadline: cancelled at any await, it leaves nothing behind (queued
        jobs are dropped, pixels are returned when the work that holds them ends)."""
        self.require_ready()
        lease = lease or Lease(self.model, self.loop)
        request = replace(request, params=self.resolve_classes(request.params, lease.model))
        if request.video is not None:
            return await self.predict_video(request, started, encode, lease)
        if not request.images:
            raise BadImage("No image: send it as multipart field 'file' (or 'image'), or 'source' with a URL or base64 data")
        with self.admission.admit(len(request.images)):
            blobs = await asyncio.gather(*(self._image_bytes(image) for image in request.images))
            return await self._infer(list(blobs), request, lease, started, encode)

    def resolve_classes(self, params: PredictParams, model: LoadedModel | None = None) -> PredictParams:
        """`classes` as the client wrote them (names or ids) → the model's class ids; an unknown one is a 400."""
        if not params.class_names:
            return params
        names = class_names(model or self.model)
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
        each model serving side by side): requests for images queue between two chunks, never behind the whole video. Each frame's Results is reduced
        (`request.reduce`) as soon as it is answered, so only one batch of frames is ever held."""
        from .video import open_video

        model, loop = lease.model, lease.loop
        s = self.settings
        chunk = max(1, s.max_batch_size) * loop.models
        reduce = request.reduce or (lambda result: result)
        kept, frames = [], []
        with self.admission.admit(chunk):
            reader = await self.run_cpu(open_video, request.video, request.vid_stride, s.max_video_frames, s.max_image_pixels)
            try:
                while batch := await self.run_cpu(reader.read, chunk):
                    held = await self.pixels.acquire(sum(frame.image.shape[0] * frame.image.shape[1] for frame in batch))
                    running: list[Future] = []
                    try:
                        t0 = time.monotonic()
                        running = loop.submit([frame.image for frame in batch], request.params)
                        results = await asyncio.gather(*(asyncio.wrap_future(f) for f in running))
                        self.admission.observe(time.monotonic() - t0, len(batch))
                        reducing = self.cpu_pool.submit(lambda: [reduce(result) for result in results])
                        running = [reducing]
                        kept += await asyncio.wrap_future(reducing)
                    finally:
                        _release_when_done(running, lambda held=held: self.pixels.release(held), asyncio.get_running_loop())
                    metrics.VIDEO_FRAMES.inc(len(batch))
                    frames += [Frame(frame.index, frame.timestamp) for frame in batch]
            finally:
                # Closed in the pool: a read may still be running there if this request gave up (deadline).
                self.cpu_pool.submit(reader.close)
            prediction = Prediction(results=kept, model=model, started=started, frames=frames,
                                    process_started=self.started_at)
            return await self.run_cpu(encode, request, prediction)

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
            running = lease.loop.submit(images, request.params)
            results = list(await asyncio.gather(*(asyncio.wrap_future(f) for f in running)))
            self.admission.observe(time.monotonic() - t0, len(blobs))
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
            asyncio.get_running_loop().call_soon(self.cpu_pool.submit, trim_heap)


def _engine_unavailable(engine: str, exc: Exception, model_id: str | None = None) -> None:
    """Say why a model keeps serving with PyTorch: an EngineError says why; anything else is a bug worth its type."""
    from ..models.engines import EngineError

    reason = str(exc) if isinstance(exc, EngineError) else f"{type(exc).__name__}: {exc}"
    about = f"model {model_id!r}: " if model_id else ""
    fields = {"engine": "pytorch", "wanted": engine, **({"model": model_id} if model_id else {})}
    log.warning(f"{about}ENGINE={engine} is not available, serving with PyTorch: {reason}", extra={"fields": fields})


def _return_memory() -> None:
    """After an eviction, and before a footprint is measured: what was freed goes back to the system (and to CUDA)."""
    import gc
    import sys

    gc.collect()
    trim_heap()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


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
