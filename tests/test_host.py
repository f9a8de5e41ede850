"""The models' lifecycle (function/models/host.py) without HTTP: shutdown within one budget however many models."""

from __future__ import annotations

import threading

import numpy as np

from function.models.batcher import InferenceLoop
from function.models.host import ModelHost
from function.models.params import PredictParams
from function.settings import load_settings


class _StuckLoop(InferenceLoop):
    """A loop whose model is busy with a batch that outlives any shutdown; it records the time each stop was given."""

    def __init__(self, release: threading.Event):
        started = threading.Event()

        def predict(images, params):
            started.set()
            release.wait(30)
            return [None] * len(images)

        super().__init__(predict, max_queue=4)
        self.given: list[float] = []
        self.start()
        self.submit([np.zeros((8, 8, 3), np.uint8)], PredictParams())
        assert started.wait(30)

    def stop(self, timeout=None):
        self.given.append(timeout)
        super().stop(timeout)


def test_stopping_gives_every_model_one_shared_budget_not_one_each():
    settings = load_settings({"MODEL": "default.pt", "MODELS": "other=other.pt"})
    host = ModelHost(settings)
    release = threading.Event()
    try:
        host.loop = _StuckLoop(release)
        entry = host.registry.entries["other"]
        entry.model, entry.loop = object(), _StuckLoop(release)
        host.stop(timeout_s=1.0)
        # The default model's loop used the whole second; the registry's got what was left of it, not a second more.
        assert len(host.loop.given) == 1 and 0.5 < host.loop.given[0] <= 1.0, host.loop.given
        assert len(entry.loop.given) == 1 and entry.loop.given[0] < 0.5, entry.loop.given
    finally:
        release.set()
