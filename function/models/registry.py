"""Several models per endpoint (MODELS): ids → weights, loaded on demand into an LRU bounded by count and memory.

The default model (MODEL) is the Service's own and is not here: it is loaded at start, with its CPU replicas and its
exported engine, and never evicted. Each model here runs as one copy with an inference loop (one thread, its own queue
and batching) of its own, so N loaded models cost N footprints, never N × replicas.

A request takes a lease on its model (`take`): an in-flight count that keeps the model from eviction until the lease
is released. A model that is not loaded gets one load however many requests ask for it (single flight): they all wait
on the same future, and the model just loaded is theirs: it is not evicted (by the next load in the queue) before each
of them has taken its lease, or RESERVED_S has passed (a request that gave up never comes back). A load fetches the weights first (a download into the cache, side by side with other models'
fetches: a slow store holds up only its own model), then loads them one at a time on the loader thread, so each
measured footprint (the process's RSS, or GPU memory, before and after) is that model's alone. Before a load, least
recently used models without requests in flight are evicted until the count and the memory (at the new model's last
measured footprint) fit; after it, again, at the footprint just measured. When every loaded model is busy the new one
is loaded anyway and the bound is restored as their requests end. A model that fails to load answers 503 for its own
id for FAILED_RETRY_S, then is tried again. PRELOAD's loads keep to the same bounds as requests' (PIN's are validated
against MAX_LOADED_MODELS at start).
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future, InvalidStateError, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from .. import metrics
from ..errors import ModelNotReady, Overloaded, WeightsError
from ..logs import log

if TYPE_CHECKING:
    from .batcher import InferenceLoop
    from .loaded import LoadedModel

# A failed load is not retried for this long (a broken file stays broken; a transient error gets its retry).
FAILED_RETRY_S = 30.0
# How long a model just loaded stays reserved for the requests that waited for it, at most: they take their leases as
# soon as the event loop wakes them (milliseconds); one that gave up meanwhile (its deadline) never does.
RESERVED_S = 5.0
MB = 2**20


@dataclass(eq=False)
class Entry:
    """One configured model: its weights and, while loaded, its model and inference loop."""

    id: str
    weights: str
    pinned: bool = False
    task: str | None = None  # found at the first load, kept after an eviction
    model: LoadedModel | None = None
    loop: InferenceLoop | None = None
    memory_bytes: int = 0  # the last measured footprint, kept after an eviction: the estimate for the next load
    load_seconds: float | None = None
    loads: int = 0
    inflight: int = 0
    last_used: float = 0.0
    loading: Future | None = None
    waiting: int = 0  # requests told to wait for the load under way
    reserved: int = 0  # of those, the ones that have not taken their lease since it ended
    reserved_until: float = 0.0
    error: str | None = None
    failed_at: float = 0.0

    def is_reserved(self, now: float) -> bool:
        return self.reserved > 0 and now < self.reserved_until

    def describe(self) -> dict:
        return {"id": self.id, "task": self.task, "loaded": self.model is not None, "pinned": self.pinned,
                "default": False, "memory_mb": round(self.memory_bytes / MB, 1) if self.memory_bytes else None,
                "load_seconds": None if self.load_seconds is None else round(self.load_seconds, 3),
                "loads": self.loads, "inflight": self.inflight, "error": self.error}


@dataclass(eq=False)
class Lease:
    """A request's hold on a loaded model: it is not evicted until every lease on it is released."""

    model: LoadedModel
    loop: InferenceLoop
    entry: Entry | None = None
    registry: ModelRegistry | None = None

    def release(self) -> None:
        if self.registry is not None:
            self.registry.release(self)
            self.registry = None  # once


class ModelRegistry:
    """`fetch(entry) -> local weights`, `load(entry, weights) -> (LoadedModel, started InferenceLoop)` and
    `footprint() -> bytes` are the Service's; this holds the ids, the single flight, the LRU and its bounds."""

    def __init__(self, weights: dict[str, str], load: Callable, footprint: Callable[[], int], max_loaded: int,
                 max_memory_bytes: int = 0, pinned: tuple[str, ...] = (), unloaded: Callable[[], None] = lambda: None,
                 fetch: Callable[[Entry], str] = lambda entry: entry.weights):
        self.entries = {model_id: Entry(model_id, path, model_id in pinned) for model_id, path in weights.items()}
        self.max_loaded = max_loaded
        self.max_memory_bytes = max_memory_bytes
        self._fetch_weights, self._load_model, self._footprint, self._unloaded = fetch, load, footprint, unloaded
        self._lock = threading.Lock()
        self._loader = ThreadPoolExecutor(1, thread_name_prefix="model-loader")
        self._fetcher = ThreadPoolExecutor(max_loaded, thread_name_prefix="model-fetch")  # one per pending load
        # Loads waiting or running: more than max_loaded would evict one another before serving (429 beyond).
        self._pending = 0
        self.stopping = False

    # -- requests -------------------------------------------------------------------------------------------------

    def take(self, model_id: str) -> Lease | Future:
        """A lease on the model when it is loaded; else the future of its load (started now if need be) to wait on
        before taking again. ModelNotReady while its last load failed, Overloaded when the load queue is full."""
        with self._lock:
            entry = self.entries[model_id]
            if entry.model is not None:
                entry.inflight += 1
                entry.reserved = max(entry.reserved - 1, 0)  # one of the waiters, back (or a request as good as one)
                entry.last_used = time.monotonic()
                return Lease(entry.model, entry.loop, entry, self)
            if self.stopping:
                raise ModelNotReady("the server is shutting down; retry on another instance")
            if entry.loading is not None:
                entry.waiting += 1
                return entry.loading
            wait_s = entry.failed_at + FAILED_RETRY_S - time.monotonic()
            if entry.error is not None and wait_s > 0:
                error = ModelNotReady(f"model {model_id!r} could not be loaded: {entry.error}")
                error.retry_after_s = max(1, int(wait_s + 0.5))
                raise error
            if self._pending >= self.max_loaded:
                raise Overloaded(f"{self._pending} models are already waiting to load (MAX_LOADED_MODELS="
                                 f"{self.max_loaded}); retry shortly")
            entry.waiting += 1
            return self._start_load(entry)

    def gave_up(self, model_id: str, waited_on: Future) -> None:
        """A request that waited on `waited_on` (what take gave it) ended without taking its lease (its deadline, or
        the client left): the model need not be kept for it."""
        with self._lock:
            entry = self.entries[model_id]
            if entry.loading is waited_on:
                entry.waiting = max(entry.waiting - 1, 0)
            elif entry.model is not None:
                entry.reserved = max(entry.reserved - 1, 0)

    def release(self, lease: Lease) -> None:
        """Never raises (a request's answer must not turn into a 500 here), stop() or not."""
        with self._lock:
            lease.entry.inflight -= 1
            over = self._over_bounds()
        if over and not self.stopping:  # a load went over the bounds while every model was busy: restore them now
            self._submit(self._loader, self._evict_over_bounds, None)

    def preload(self, model_ids: tuple[str, ...]) -> list[Future]:
        """Start loading these (PIN, then PRELOAD) now; the futures resolve when each load has ended, well or not.
        A pinned model is always loaded (PIN is at most MAX_LOADED_MODELS); any other only while the loaded models and
        the loads under way leave it a place: more would evict one another before serving anyone, and fill the load
        queue that requests are refused from (429)."""
        started, skipped = [], []
        with self._lock:
            for model_id in model_ids:
                entry = self.entries[model_id]
                if entry.model is not None:
                    continue
                if entry.loading is not None:
                    started.append(entry.loading)
                    continue
                loaded = sum(1 for e in self.entries.values() if e.model is not None)
                if not entry.pinned and loaded + self._pending >= self.max_loaded:
                    skipped.append(model_id)
                    continue
                started.append(self._start_load(entry))
        if skipped:
            log.warning(f"PRELOAD: {', '.join(skipped)} not loaded at start: MAX_LOADED_MODELS={self.max_loaded} "
                        "models are loaded or loading; they load on their first request",
                        extra={"fields": {"skipped": skipped}})
        return started

    def describe(self) -> list[dict]:
        with self._lock:
            return [entry.describe() for entry in self.entries.values()]

    def loops(self) -> list[InferenceLoop]:
        with self._lock:
            return [entry.loop for entry in self.entries.values() if entry.loop is not None]

    def stop(self, timeout: float) -> None:
        with self._lock:  # from here on no take starts a load (take decides under the lock)
            self.stopping = True
        # After `stopping`: a submit that finds these shut down knows why (_submit).
        self._fetcher.shutdown(wait=False, cancel_futures=True)
        self._loader.shutdown(wait=False, cancel_futures=True)
        with self._lock:  # a cancelled load never ends: its waiters are told now (they take again, and get a 503)
            waiting = [entry.loading for entry in self.entries.values() if entry.loading is not None]
        for future in waiting:
            _resolve(future)
        deadline = time.monotonic() + timeout
        for loop in self.loops():
            loop.stop(timeout=max(deadline - time.monotonic(), 0))

    # -- the loader thread ----------------------------------------------------------------------------------------

    def _start_load(self, entry: Entry) -> Future:  # under the lock
        entry.loading = Future()
        self._pending += 1
        self._fetcher.submit(self._fetch, entry)
        return entry.loading

    def _submit(self, executor: ThreadPoolExecutor, fn, *args) -> bool:
        """Queue work on one of the registry's threads; False when stop() has shut them down: then there is nothing
        to do (stop() told every waiter), and nothing failed."""
        try:
            executor.submit(fn, *args)
        except RuntimeError:  # "cannot schedule new futures after shutdown"
            if self.stopping:
                return False
            raise
        return True

    def _fetch(self, entry: Entry) -> None:
        started = time.monotonic()
        try:
            weights = self._fetch_weights(entry)
            # Once stop() has begun (now, or while the submit is being made), this load's waiters are told already.
            if not self.stopping:
                self._submit(self._loader, self._load, entry, weights, time.monotonic() - started)
        except Exception as exc:
            self._failed(entry, exc)

    def _load(self, entry: Entry, weights: str, fetch_seconds: float) -> None:
        try:
            self._make_room(entry)
            self._unloaded()  # what evicted models held goes back first, so the measure is the new model's alone
            before = self._footprint()
            started = time.monotonic()
            model, loop = self._load_model(entry, weights)
            seconds = fetch_seconds + time.monotonic() - started
            used = max(self._footprint() - before, 0)
        except Exception as exc:
            self._failed(entry, exc)
            return
        with self._lock:
            entry.model, entry.loop, entry.task = model, loop, model.task
            entry.memory_bytes, entry.load_seconds, entry.error = used, seconds, None
            entry.loads += 1
            entry.last_used = time.monotonic()
            # Loaded for the requests that waited: kept for them until they have their leases (or RESERVED_S).
            entry.reserved, entry.reserved_until, entry.waiting = entry.waiting, entry.last_used + RESERVED_S, 0
            done, entry.loading = entry.loading, None
            self._pending -= 1
        metrics.MODEL_LOADS.labels(entry.id, "loaded").inc()
        metrics.MODEL_SWITCH_SECONDS.labels(entry.id).observe(seconds)
        metrics.MODEL_LOADED.labels(entry.id).set(1)
        metrics.MODEL_MEMORY_BYTES.labels(entry.id).set(used)
        log.info(f"model {entry.id!r} loaded ({model.task}, {model.engine}) in {seconds:.2f} s, {used / MB:.0f} MB",
                 extra={"fields": {"model": entry.id, "task": model.task, "load_s": round(seconds, 3),
                                   "memory_mb": round(used / MB, 1)}})
        _resolve(done)
        self._evict_over_bounds(entry)

    def _failed(self, entry: Entry, exc: Exception) -> None:
        reason = str(exc) if isinstance(exc, WeightsError) else f"{type(exc).__name__}: {exc}"  # else worth its type
        with self._lock:
            entry.error, entry.failed_at = reason, time.monotonic()
            done, entry.loading, entry.waiting = entry.loading, None, 0
            self._pending -= 1
        metrics.MODEL_LOADS.labels(entry.id, "failed").inc()
        log.error(f"model {entry.id!r} could not be loaded: {reason}", extra={"fields": {"model": entry.id}})
        _resolve(done)

    def _make_room(self, entry: Entry) -> None:
        """Before a load: evict until one more model fits, counting the new one at its last measured footprint."""
        while True:
            with self._lock:
                loaded = [e for e in self.entries.values() if e.model is not None]
                memory = sum(e.memory_bytes for e in loaded) + entry.memory_bytes
                if len(loaded) < self.max_loaded and not (self.max_memory_bytes and memory > self.max_memory_bytes):
                    return
                victim = self._least_recently_used(entry)
                if victim is None:
                    return
                loop = self._detach(victim)
            self._tear_down(victim, loop)

    def _evict_over_bounds(self, keep: Entry | None) -> None:
        """After a load, or once a busy model is released: evict until within the bounds, never the model just loaded
        or, by default, the most recently used (with pinned models over the bound, evicting it would only make the
        next request load it again)."""
        evicted = False
        while True:
            with self._lock:
                if not self._over_bounds():
                    break
                if keep is None:
                    keep = max((e for e in self.entries.values() if e.model is not None and not e.pinned),
                               key=lambda e: e.last_used, default=None)
                victim = self._least_recently_used(keep)
                if victim is None:
                    break
                loop = self._detach(victim)
            self._tear_down(victim, loop)
            evicted = True
        if evicted:
            self._unloaded()

    def _over_bounds(self) -> bool:  # under the lock
        loaded = [e for e in self.entries.values() if e.model is not None]
        memory = sum(e.memory_bytes for e in loaded)
        return len(loaded) > self.max_loaded or bool(self.max_memory_bytes and memory > self.max_memory_bytes)

    def _least_recently_used(self, keep: Entry | None) -> Entry | None:  # under the lock
        now = time.monotonic()
        evictable = [e for e in self.entries.values()
                     if e.model is not None and not e.pinned and e.inflight == 0 and not e.is_reserved(now)
                     and e is not keep]
        return min(evictable, key=lambda e: e.last_used, default=None)

    def _detach(self, entry: Entry) -> InferenceLoop:  # under the lock: from now on no request can take it
        loop = entry.loop
        entry.model = entry.loop = None
        return loop

    def _tear_down(self, entry: Entry, loop: InferenceLoop) -> None:
        loop.stop(timeout=5)  # nothing is queued (no lease): its thread ends at once; the caller returns the memory
        metrics.MODEL_EVICTIONS.labels(entry.id).inc()
        metrics.MODEL_LOADED.labels(entry.id).set(0)
        metrics.MODEL_MEMORY_BYTES.labels(entry.id).set(0)
        log.info(f"model {entry.id!r} evicted (least recently used)", extra={"fields": {"model": entry.id}})


def _resolve(future: Future) -> None:
    """Wake a load's waiters, once (stop() may have woken them first)."""
    try:
        future.set_result(None)
    except InvalidStateError:
        pass
