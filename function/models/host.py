"""The models this process serves, from start-up to shutdown: the default model (MODEL) and MODELS' registry.

The default model is loaded at start (weights → model → warm-up → CPU replicas → its inference loop), its exported
engine is built or fetched in the background while PyTorch serves and swapped in once verified, and it is never
evicted. MODELS' models load on demand into the registry (registry.py), each with its engine when one can be had
without exporting on a request's path. The request path (core/service.py) only asks for a lease (`take`) and never
learns how a model came to be loaded.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from .. import metrics
from ..errors import ModelNotFound, WeightsError
from ..logs import log
from ..memory import rss_bytes, trim_heap
from .batcher import InferenceLoop
from .loaded import LoadedModel, cpu_replicas, load_model, pick_device, warm_up_images
from .registry import Entry, Lease, ModelRegistry
from .weights import resolve_weights

if TYPE_CHECKING:
    from ..settings import Settings


class ModelHost:
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
        try:
            memory_before = self._footprint() if self.registry is not None else 0  # the runtime before the model
            t0 = time.monotonic()
            weights = resolve_weights(s.model, s.model_cache_dir, s.gcs_chunk_mb * 2**20, s.gcs_workers)
            t1 = time.monotonic()
            device = pick_device(s.device)
            model = load_model(weights, device, s.model_task)
            t2 = time.monotonic()
            reference = model.warm_up()
            from .engines import choose_engine  # the worker's: it needs numpy

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
        from . import engines

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
        from . import engines

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
        from . import engines

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

    # -- serving --------------------------------------------------------------------------------------------------

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

    def take(self, model_id: str | None) -> Lease | Future:
        """A lease on a resolved model, or the future of its load to wait on before taking again (registry.take).
        The default model's lease holds nothing: it is never evicted."""
        if model_id is None:
            return Lease(self.model, self.loop)
        return self.registry.take(model_id)

    def loops(self) -> list[InferenceLoop]:
        """Every inference loop running now: the default model's and each loaded model's of MODELS."""
        return ([self.loop] if self.loop is not None else []) + (self.registry.loops() if self.registry else [])

    def describe(self) -> dict:
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

    def stop(self, timeout_s: float) -> None:
        """Let every loop finish what it runs, all within one budget: Cloud Run kills the instance 10 s after SIGTERM
        however many models there are."""
        self.stopping = True
        deadline = time.monotonic() + timeout_s
        if self.loop is not None:
            self.loop.stop(timeout=max(deadline - time.monotonic(), 0))
        if self.registry is not None:
            self.registry.stop(timeout=max(deadline - time.monotonic(), 0))


def _engine_unavailable(engine: str, exc: Exception, model_id: str | None = None) -> None:
    """Say why a model keeps serving with PyTorch: an EngineError says why; anything else is a bug worth its type."""
    from .engines import EngineError

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
