"""The request path (function/core/service.py) without HTTP: what a request leaves behind when it ends early."""

from __future__ import annotations

import asyncio
import tempfile
import threading
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from function.core import video
from function.core.requests import PredictRequest
from function.core.service import Service
from function.errors import ModelNotReady
from function.models.params import PredictParams
from function.models.registry import Lease
from function.settings import load_settings


@pytest.fixture
def uploads(tmp_path, monkeypatch):
    """Where uploaded videos are written (tempfile's folder, here the test's own): whatever is left there leaked."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path


@pytest.fixture
def a_video(tmp_path) -> bytes:
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for i in range(4):
        writer.write(np.full((48, 64, 3), 40 * i, np.uint8))
    writer.release()
    data = path.read_bytes()
    path.unlink()
    return data


def _lease(loop) -> Lease:
    return Lease(SimpleNamespace(task="detect", device="cpu", name="stub.pt", versions={}), loop)


def test_a_request_that_gives_up_while_its_video_opens_leaves_no_file_behind(uploads, a_video, monkeypatch):
    service = Service(load_settings({"MODEL": "unused.pt"}))
    opening, release = threading.Event(), threading.Event()
    real_open = video.open_video

    def slow_open(*args):
        opening.set()
        release.wait(30)
        return real_open(*args)

    monkeypatch.setattr(video, "open_video", slow_open)
    request = PredictRequest(images=(), params=PredictParams(), video=a_video)

    async def give_up_while_opening():
        task = asyncio.ensure_future(service.predict_video(request, 0.0, None, _lease(SimpleNamespace(models=1))))
        await asyncio.get_running_loop().run_in_executor(None, opening.wait, 30)
        task.cancel()  # the deadline, or the client gone
        with pytest.raises(asyncio.CancelledError):
            await task

    try:
        asyncio.run(give_up_while_opening())
    finally:
        release.set()
    service.cpu_pool.shutdown(wait=True)  # the open ends, and with it whatever it hands over
    assert list(uploads.iterdir()) == []


def test_a_stopping_pool_does_not_hide_why_a_video_request_ended(uploads, a_video):
    service = Service(load_settings({"MODEL": "unused.pt"}))

    class StoppingLoop:
        models = 1

        def submit(self, images, params):  # SIGTERM's end: the pools are shut and the model's loop refuses
            service.cpu_pool.shutdown(wait=False)
            raise ModelNotReady("the server is shutting down; retry on another instance")

    request = PredictRequest(images=(), params=PredictParams(), video=a_video)
    with pytest.raises(ModelNotReady):
        asyncio.run(service.predict_video(request, 0.0, None, _lease(StoppingLoop())))
    assert list(uploads.iterdir()) == [], "the video's file is removed even so"


def test_a_request_that_gives_up_waiting_for_a_load_says_so_to_the_registry(monkeypatch):
    """The registry keeps a just-loaded model for the requests that waited on it; one that gave up frees its place."""
    from concurrent.futures import Future

    service = Service(load_settings({"MODEL": "default.pt", "MODELS": "other=other.pt"}))
    service.models.model = object()
    service.models.ready.set()
    loading, gave_up = Future(), []
    monkeypatch.setattr(service.models.registry, "take", lambda model_id: loading)
    monkeypatch.setattr(service.models.registry, "gave_up", lambda model_id, waited_on: gave_up.append((model_id, waited_on)))

    async def give_up():
        task = asyncio.ensure_future(service.acquire("other"))
        await asyncio.sleep(0)  # the request is now waiting on the load
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(give_up())
    assert gave_up == [("other", loading)]
    assert not loading.cancelled(), "the load the others wait for goes on"
