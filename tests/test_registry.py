"""The model registry's policy without HTTP or weights (tests/test_models.py runs it for real): single flight, the LRU
by count and by memory, pins, leases that hold a model against eviction, a failed load answered for its id only, the
load queue's bound. The loader given to it stands for Ultralytics' load: it records each call and returns at once, or
when the test lets it."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import pytest

from function.errors import ModelNotReady, Overloaded, WeightsError
from function.models.registry import Lease, ModelRegistry

MB = 2**20


class Loader:
    """`load(entry, weights)` for the registry: a model of `sizes[id]` MB, after `gate` opens when one is given."""

    def __init__(self, sizes: dict[str, int], gate: threading.Event | None = None, broken: tuple[str, ...] = ()):
        self.sizes, self.gate, self.broken = sizes, gate, broken
        self.calls: list[str] = []
        self.resident = 0  # what footprint() reports: the sum of what is loaded
        self.stopped: list[str] = []

    def load(self, entry, weights):
        assert weights == entry.weights  # the registry's own fetch: the configured path as is
        self.calls.append(entry.id)
        if self.gate is not None:
            self.gate.wait(10)
        if entry.id in self.broken:
            raise WeightsError(f"{entry.weights} is not a loadable YOLO model")
        self.resident += self.sizes[entry.id] * MB
        loop = SimpleNamespace(stop=lambda timeout=None, model_id=entry.id: self._stop(model_id))
        return SimpleNamespace(task="detect", engine="pytorch", name=entry.weights), loop

    def _stop(self, model_id: str) -> None:
        self.stopped.append(model_id)
        self.resident -= self.sizes[model_id] * MB

    def footprint(self) -> int:
        return self.resident


def registry(loader: Loader, max_loaded: int = 2, memory_mb: int = 0, pinned: tuple[str, ...] = ()) -> ModelRegistry:
    return ModelRegistry({m: f"{m}.pt" for m in loader.sizes}, loader.load, loader.footprint, max_loaded,
                         memory_mb * MB, pinned)


def take(reg: ModelRegistry, model_id: str, timeout: float = 10) -> Lease:
    """What Service.acquire does, from a thread: take, and wait for the load when there is one."""
    while True:
        taken = reg.take(model_id)
        if isinstance(taken, Lease):
            return taken
        taken.result(timeout)


def use(reg: ModelRegistry, model_id: str) -> None:
    take(reg, model_id).release()
    settle(reg)
    time.sleep(0.002)  # distinct recency


def loaded(reg: ModelRegistry) -> set[str]:
    return {m["id"] for m in reg.describe() if m["loaded"]}


def settle(reg: ModelRegistry) -> None:
    reg._loader.submit(lambda: None).result(10)  # evictions queued by a release have run


def test_concurrent_first_takes_cause_one_load():
    gate = threading.Event()
    loader = Loader({"a": 10}, gate)
    reg = registry(loader)
    futures = [reg.take("a") for _ in range(10)]
    assert all(f is futures[0] for f in futures), "every waiter waits on the one load"
    gate.set()
    leases = [take(reg, "a") for _ in range(10)]
    assert loader.calls == ["a"] and {m["id"]: m["inflight"] for m in reg.describe()}["a"] == 10
    for lease in leases:
        lease.release()
    assert reg.describe()[0]["inflight"] == 0 and reg.describe()[0]["memory_mb"] == 10


def test_the_least_recently_used_is_evicted_by_count_and_reloads():
    loader = Loader({"a": 10, "b": 10, "c": 10})
    reg = registry(loader, max_loaded=2)
    for model_id in ("a", "b", "a", "c"):
        use(reg, model_id)
    assert loaded(reg) == {"a", "c"} and loader.stopped == ["b"]
    use(reg, "b")
    assert loaded(reg) == {"c", "b"} and loader.calls == ["a", "b", "c", "b"]


def test_the_memory_bound_evicts_against_measured_footprints():
    loader = Loader({"a": 40, "b": 40, "c": 30})
    reg = registry(loader, max_loaded=3, memory_mb=100)
    use(reg, "a")
    use(reg, "b")
    use(reg, "c")  # 110 MB: a, the least recently used, goes once c is measured
    assert loaded(reg) == {"b", "c"}
    use(reg, "a")  # known to take 40: b goes before the load (70 + 40 > 100)
    assert loaded(reg) == {"c", "a"} and loader.stopped == ["a", "b"]


def test_pinned_and_busy_models_are_never_evicted():
    loader = Loader({"p": 10, "a": 10, "b": 10})
    reg = registry(loader, max_loaded=2, pinned=("p",))
    for future in reg.preload(("p",)):
        future.result(10)
    held = take(reg, "a")  # in flight
    use(reg, "b")  # over the count: nothing may go (p pinned, a busy), so b is loaded anyway
    assert loaded(reg) == {"p", "a", "b"}
    held.release()  # now the bound is restored: a is the least recently used that may go
    settle(reg)
    assert loaded(reg) == {"p", "b"}


def test_a_failed_load_answers_for_its_id_only_then_is_retried():
    loader = Loader({"bad": 10, "a": 10}, broken=("bad",))
    reg = registry(loader)
    reg.take("bad").result(10)
    with pytest.raises(ModelNotReady, match="'bad' could not be loaded: bad.pt is not a loadable YOLO model") as refused:
        reg.take("bad")
    assert 1 <= refused.value.retry_after_s <= 30
    use(reg, "a")
    reg.entries["bad"].failed_at -= 60  # its retry delay has passed
    retry = reg.take("bad")
    assert not isinstance(retry, Lease)
    retry.result(10)
    assert loader.calls == ["bad", "a", "bad"]


def test_a_slow_fetch_holds_up_only_its_own_model():
    # Weights from a slow store: the download runs beside the other models' loads, never on the loader thread.
    slow_store = threading.Event()
    loader = Loader({"slow": 10, "a": 10})

    def fetch(entry):
        if entry.id == "slow":
            slow_store.wait(10)
        return entry.weights

    reg = ModelRegistry({m: f"{m}.pt" for m in loader.sizes}, loader.load, loader.footprint, 2, fetch=fetch)
    waiting = reg.take("slow")
    use(reg, "a")
    assert loader.calls == ["a"] and not waiting.done()
    slow_store.set()
    waiting.result(10)
    assert loaded(reg) == {"slow", "a"} and loader.calls == ["a", "slow"]


def test_stopping_wakes_every_request_waiting_for_a_load():
    # SIGTERM while loads are running or queued: their waiters get a 503 at once, not their deadline.
    gate = threading.Event()
    loader = Loader({"a": 1, "b": 1}, gate)
    reg = registry(loader)
    running, queued = reg.take("a"), reg.take("b")
    reg.stop(timeout=1)
    for waiting in (running, queued):
        waiting.result(1)
    with pytest.raises(ModelNotReady, match="shutting down"):
        reg.take("b")
    gate.set()
    deadline = time.monotonic() + 5
    while reg.entries["a"].loading is not None and time.monotonic() < deadline:
        time.sleep(0.01)
    # The load that was running ends quietly (its waiters were told already); the queued one never runs.
    assert reg.entries["a"].loading is None and loader.calls == ["a"]


def test_a_download_that_ends_after_stopping_loads_nothing_and_fails_nothing():
    # Its waiters were told at stop(); what arrives afterwards is not a failed load (no error, no ERROR line).
    slow_store = threading.Event()
    loader = Loader({"slow": 1})
    reg = ModelRegistry({"slow": "slow.pt"}, loader.load, loader.footprint, 2,
                        fetch=lambda entry: slow_store.wait(10) and entry.weights)
    waiting = reg.take("slow")
    reg.stop(timeout=1)
    waiting.result(1)
    slow_store.set()
    reg._fetcher.shutdown(wait=True)  # the download's thread has ended
    assert loader.calls == [] and reg.entries["slow"].error is None


def test_the_load_queue_is_bounded():
    gate = threading.Event()
    loader = Loader({"a": 1, "b": 1, "c": 1}, gate)
    reg = registry(loader, max_loaded=2)
    reg.take("a"), reg.take("b")
    with pytest.raises(Overloaded, match="2 models are already waiting to load"):
        reg.take("c")
    gate.set()
    take(reg, "a").release()
    take(reg, "b").release()
    use(reg, "c")


def test_a_model_loaded_for_waiting_requests_is_theirs_until_they_take_it():
    # A request waits for "a"; its load ends, and before the request's event loop wakes it, "x" is used and "b"'s load
    # comes next in the queue. Evicting "a" now would leave its request to load it again: with few slots and ids taken
    # in turn, every request would pay a load. "a" is kept for its request; "x" goes.
    loader = Loader({"x": 10, "a": 10, "b": 10})
    reg = registry(loader, max_loaded=2)
    use(reg, "x")
    waiting = reg.take("a")
    waiting.result(10)  # loaded; its request has not taken its lease yet
    use(reg, "x")  # "a" is the least recently used from here on
    use(reg, "b")
    lease = reg.take("a")  # the waiting request, awake at last
    assert isinstance(lease, Lease), "its model was still loaded"
    assert loader.calls == ["x", "a", "b"] and loader.stopped == ["x"]
    lease.release()
    settle(reg)
    assert loaded(reg) == {"a", "b"}


def test_a_reservation_ends_when_its_requests_give_up_or_after_a_while():
    loader = Loader({"x": 10, "a": 10, "b": 10, "c": 10})
    reg = registry(loader, max_loaded=2)
    use(reg, "x")
    waiting = reg.take("a")
    waiting.result(10)
    reg.gave_up("a", waiting)  # its deadline passed before it took the lease: "a" is just another model now
    use(reg, "x")
    use(reg, "b")
    assert loaded(reg) == {"x", "b"} and loader.stopped == ["a"]
    waiting = reg.take("c")  # another waiter that never comes back, and says nothing
    waiting.result(10)
    assert loaded(reg) == {"c", "b"} and reg.entries["c"].reserved == 1
    reg.entries["c"].reserved_until -= 60  # RESERVED_S has passed
    use(reg, "b")
    use(reg, "a")
    assert loaded(reg) == {"b", "a"}, "the expired reservation no longer holds c"


class StopsFirst:
    """An executor whose submit lets stop() run first: the moment between a check of `stopping` and the submit."""

    def __init__(self, reg: ModelRegistry, executor):
        self.reg, self.executor = reg, executor

    def submit(self, *args):
        self.reg.stop(timeout=0)
        return self.executor.submit(*args)

    def shutdown(self, *args, **kwargs):
        return self.executor.shutdown(*args, **kwargs)


def test_a_release_racing_stop_never_raises():
    # Over the bound (every model was busy at "b"'s load): the release that restores it queues an eviction; stop()
    # shuts the loader down just then. The request's answer must not become a 500.
    loader = Loader({"a": 10, "b": 10})
    reg = registry(loader, max_loaded=1)
    held = take(reg, "a")
    take(reg, "b").release()
    assert loaded(reg) == {"a", "b"}
    reg._loader = StopsFirst(reg, reg._loader)
    held.release()
    assert reg.stopping


def test_a_download_that_ends_as_stop_begins_fails_nothing():
    # The weights arrive while stop() is shutting the loader down: not a failed load (no error, no ERROR line).
    slow_store = threading.Event()
    loader = Loader({"slow": 1})
    reg = ModelRegistry({"slow": "slow.pt"}, loader.load, loader.footprint, 2,
                        fetch=lambda entry: slow_store.wait(10) and entry.weights)
    waiting = reg.take("slow")
    reg._loader = StopsFirst(reg, reg._loader)
    slow_store.set()
    waiting.result(5)  # told by stop()
    reg._fetcher.shutdown(wait=True)  # the download's thread has ended
    assert loader.calls == [] and reg.entries["slow"].error is None
    assert reg.describe()[0]["error"] is None


def test_preload_keeps_to_the_bound_and_pins_are_always_loaded():
    gate = threading.Event()
    loader = Loader({"p": 1, "a": 1, "b": 1, "c": 1}, gate)
    reg = registry(loader, max_loaded=2, pinned=("p",))
    pinned = reg.preload(("p",))
    preloaded = reg.preload(("a", "b", "c"))  # one place is left beside the pinned model
    assert len(pinned) == 1 and len(preloaded) == 1 and reg._pending == 2
    gate.set()
    for future in pinned + preloaded:
        future.result(10)
    assert loaded(reg) == {"p", "a"} and loader.calls == ["p", "a"] and loader.stopped == []
    assert reg.take("b").result(10) is None, "the others load on their first request"


# -- the settings ------------------------------------------------------------------------------------------------------


def test_models_settings(tmp_path):
    from function.errors import ConfigError
    from function.settings import load_settings

    base = {"MODEL": "/w/best.pt"}
    s = load_settings(base | {"MODELS": " helmets=gs://b/h.pt , poses=/w/poses.pt,best=/w/best.pt", "PIN": "poses",
                              "PRELOAD": "helmets,poses", "MAX_LOADED_MODELS": "2", "MODEL_MEMORY_MB": "1500"})
    # best is the default model itself (its id and its weights); PRELOAD leaves out what PIN loads anyway.
    assert s.models == (("helmets", "gs://b/h.pt"), ("poses", "/w/poses.pt")) and s.default_model_id == "best"
    assert s.pin == ("poses",) and s.preload == ("helmets",) and s.max_loaded_models == 2
    assert s.model_memory_bytes == 1500 * MB
    listed = tmp_path / "models.json"
    listed.write_text('{"a": "/w/a.pt", "b": "gs://b/b.pt"}')
    assert load_settings(base | {"MODELS": str(listed)}).models == (("a", "/w/a.pt"), ("b", "gs://b/b.pt"))
    assert load_settings(base).models == () and load_settings(base | {"MODEL_ID": "fall"}).default_model_id == "fall"
    for env, message in (({"MODELS": "a/b=x.pt"}, "is not a model id"), ({"MODELS": "a=x.pt,a=y.pt"}, "given twice"),
                         ({"MODELS": "a="}, "id=weights pairs"), ({"MODELS": "best=/other.pt"}, "default model's id"),
                         ({"MODELS": "a=x.pt", "PIN": "b"}, "PIN: 'b' is not an id in MODELS"),
                         ({"MODELS": "a=x.pt,b=y.pt", "PIN": "a,b", "MAX_LOADED_MODELS": "1"}, "more than MAX_LOADED_MODELS"),
                         ({"MODELS": str(tmp_path / "missing.json")}, "cannot be read"),
                         ({"MODELS": str(listed.with_name("bad.json"))}, "cannot be read")):
        with pytest.raises(ConfigError, match=message):
            load_settings(base | env)
    with pytest.raises(ConfigError, match="PIN and PRELOAD name 3 models, more than MAX_LOADED_MODELS=2"):
        load_settings(base | {"MODELS": "a=x.pt,b=y.pt,c=z.pt", "PIN": "a", "PRELOAD": "b,c", "MAX_LOADED_MODELS": "2"})
    (tmp_path / "list.json").write_text('["a"]')
    with pytest.raises(ConfigError, match="must hold a JSON object"):
        load_settings(base | {"MODELS": str(tmp_path / "list.json")})
