"""Live streams (GET /stream) against the real server with `websockets`' own client: lockstep answers equal
Ultralytics' `model.track(frame, persist=True)` frame by frame; each connection its own tracker; a flood gets the
newest frame first; bad frames, keys, MAX_STREAMS, the idle close and SIGTERM's 1001."""

from __future__ import annotations

import contextlib
import json
import re
import signal
import threading
import time

import cv2
import numpy as np
import pytest
import requests
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

pytestmark = pytest.mark.integration

KEY = "stream-key-0123456789"
IDLE_S = 3


def pan_frames(photo, count: int, window=(320, 480), scale=0.5, step=5) -> list[bytes]:
    """A camera panning across a photo, each frame a JPEG (what a client sends)."""
    image = cv2.resize(cv2.imread(str(photo)), None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    width, height = window
    frames = []
    for i in range(count):
        left = min(i * step, image.shape[1] - width)
        ok, jpeg = cv2.imencode(".jpg", np.ascontiguousarray(image[:height, left:left + width]))
        assert ok
        frames.append(jpeg.tobytes())
    return frames


@pytest.fixture(scope="module")
def frames(bus_jpg, zidane_jpg):
    return {"bus": pan_frames(bus_jpg, 12), "zidane": pan_frames(zidane_jpg, 12, window=(480, 320))}


@pytest.fixture(scope="module")
def server(start_server, weights):
    server = start_server({"MODEL": str(weights["pose"]), "API_KEYS": KEY, "MAX_STREAMS": "3",
                           "STREAM_IDLE_S": str(IDLE_S), "MODELS": f"classify={weights['classify']}"})
    yield server
    server.stop()


def ws_url(server, path="/stream", **query) -> str:
    query = {"api_key": KEY, **query}
    return server.url.replace("http://", "ws://") + path + "?" + "&".join(f"{k}={v}" for k, v in query.items())


def ultralytics_track(weights_path, frames: list[bytes], **params) -> list[list[dict]]:
    """What a user gets calling Ultralytics' tracking frame by frame on one model: `persist=True` keeps its tracker."""
    from ultralytics import YOLO

    model = YOLO(str(weights_path))
    decoded = [cv2.imdecode(np.frombuffer(frame, np.uint8), cv2.IMREAD_COLOR) for frame in frames]
    return [model.track(image, persist=True, verbose=False, **params)[0].summary() for image in decoded]


def lockstep(url: str, frames: list[bytes], **connect_args) -> list[dict]:
    with connect(url, open_timeout=60, **connect_args) as stream:
        answers = []
        for frame in frames:
            stream.send(frame)
            answers.append(json.loads(stream.recv(timeout=120)))
    return answers


def test_lockstep_answers_equal_model_track_frame_by_frame(server, weights, frames):
    answers = lockstep(ws_url(server, track="true", imgsz=320), frames["bus"])
    assert [a["frame"] for a in answers] == list(range(12)) and all(a["dropped"] == 0 for a in answers)
    assert [a["results"] for a in answers] == ultralytics_track(weights["pose"], frames["bus"], tracker="bytetrack.yaml",
                                                                imgsz=320)
    assert all(set(a) == {"frame", "dropped", "shape", "results", "speed"} and a["shape"] == [480, 320] for a in answers)
    ids = {row["track_id"] for a in answers for row in a["results"] if "track_id" in row}
    assert ids and min(ids) == 1


def test_parameters_are_predicts_and_an_untracked_stream_answers_predict(server, weights, frames, bus_jpg):
    from conftest import local_summary

    photo = bus_jpg.read_bytes()
    (answer,) = lockstep(ws_url(server, conf="0.5", imgsz="320", normalize="true", decimals="3"), [photo])
    assert answer["results"] == local_summary(weights["pose"], str(bus_jpg), conf=0.5, imgsz=320, normalize=True,
                                              decimals=3)
    botsort = lockstep(ws_url(server, track="true", tracker="botsort", conf="0.3"), frames["zidane"][:6])
    assert [a["results"] for a in botsort] == ultralytics_track(weights["pose"], frames["zidane"][:6],
                                                                tracker="botsort.yaml", conf=0.3)


def test_two_connections_at_once_each_have_their_own_ids(server, weights, frames):
    answers, start = {}, threading.Barrier(2)

    def run(name):
        with connect(ws_url(server, track="true"), open_timeout=60) as stream:
            start.wait()  # both open before either sends: their frames share the model's queue
            answers[name] = []
            for frame in frames[name]:
                stream.send(frame)
                answers[name].append(json.loads(stream.recv(timeout=120)))

    threads = [threading.Thread(target=run, args=(name,)) for name in frames]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for name in frames:
        assert [a["results"] for a in answers[name]] == ultralytics_track(weights["pose"], frames[name],
                                                                          tracker="bytetrack.yaml")


def test_a_flood_gets_the_newest_frame_first_and_health_stays_green(server, frames):
    """60 frames sent without waiting: far fewer answers, in frame order, answered + dropped = sent; once the last
    frame is sent, at most the frame then in progress and that last one are still to come (no queue behind it)."""
    flood = (frames["bus"] * 5)[:60]
    health, done = [], threading.Event()

    def watch():
        while not done.is_set():
            try:
                health.append(requests.get(server.url + "/healthz", timeout=5).status_code)
            except requests.RequestException as error:
                health.append(repr(error))
            done.wait(0.1)  # a poll interval; the assertion is on every answer seen

    watcher = threading.Thread(target=watch)
    watcher.start()
    answers, after_last = [], 0
    try:
        with connect(ws_url(server, track="true"), open_timeout=60) as stream:
            reader_done = threading.Event()
            sent_all = threading.Event()

            def read():
                nonlocal after_last
                while True:
                    answer = json.loads(stream.recv(timeout=120))
                    answers.append(answer)
                    after_last += sent_all.is_set()
                    if answer["frame"] == len(flood) - 1:
                        reader_done.set()
                        return

            reader = threading.Thread(target=read)
            reader.start()
            for frame in flood:
                stream.send(frame)
            sent_all.set()
            reader.join(180)
            assert reader_done.is_set()
    finally:
        done.set()
        watcher.join()
    frame_numbers = [a["frame"] for a in answers]
    assert frame_numbers == sorted(frame_numbers) and frame_numbers[-1] == 59
    assert len(answers) + sum(a["dropped"] for a in answers) == 60
    assert len(answers) < 30, "most frames were replaced by newer ones"
    assert after_last <= 3, f"{after_last} answers came after the last frame was sent: frames were queued"
    assert health and all(status == 200 for status in health), health


def test_a_bad_frame_is_answered_with_its_error_and_the_stream_goes_on(server, frames):
    with connect(ws_url(server), open_timeout=60) as stream:
        stream.send(b"these bytes are not an image")
        bad = json.loads(stream.recv(timeout=60))
        stream.send(b"\xff\xd8\xff" + b"\x00" * 100)  # a JPEG's start, then nothing
        corrupt = json.loads(stream.recv(timeout=60))
        stream.send(frames["bus"][0])
        good = json.loads(stream.recv(timeout=60))
        stream.send("a text message")
        with pytest.raises(ConnectionClosed) as closed:
            stream.recv(timeout=60)
    assert bad == {"frame": 0, "dropped": 0, "error": {"code": 415, "message": bad["error"]["message"]}}
    assert "Not an image" in bad["error"]["message"]
    assert corrupt["frame"] == 1 and corrupt["error"]["code"] == 400
    assert good["frame"] == 2 and good["results"]
    assert closed.value.rcvd.code == 1003 and "binary" in closed.value.rcvd.reason


def _refusal(url, **connect_args):
    with pytest.raises(InvalidStatus) as refused:
        connect(url, open_timeout=60, **connect_args)
    response = refused.value.response
    return response.status_code, json.loads(response.body), response.headers


def test_keys_bad_parameters_and_models_are_refused_at_the_handshake(server, frames):
    base = server.url.replace("http://", "ws://") + "/stream"
    for url, headers in ((base, {}), (base + "?api_key=wrong", {}), (base, {"Authorization": "Bearer wrong"})):
        status, body, _ = _refusal(url, additional_headers=headers)
        assert status == 401 and body["error"]["code"] == 401
    for headers in ({"Authorization": f"Bearer {KEY}"}, {"x-api-key": KEY}):
        assert lockstep(base, frames["bus"][:1], additional_headers=headers)[0]["results"]
    for query, words in (({"conf": "2"}, "'conf' must be a number in 0.01-1.0"), ({"tracker": "deepsort"}, "bytetrack, botsort"),
                         ({"classes": "unicorn"}, "'classes'"), ({"track": "maybe"}, "'track'"),
                         ({"slice_size": "320"}, "not sliced")):
        status, body, _ = _refusal(ws_url(server, **query))
        assert status == 400 and words in body["error"]["message"]
    status, body, _ = _refusal(ws_url(server, "/api/models/classify/stream", track="true"))
    assert status == 400 and "classify model" in body["error"]["message"]
    status, body, _ = _refusal(ws_url(server, "/api/models/unknown/stream"))
    assert status == 404
    status, body, _ = _refusal(ws_url(server, "/predict"))
    assert status == 404 and "/stream" in body["error"]["message"]
    # A model of MODELS streams at its own path (untracked here: a classifier has no boxes to follow).
    (answer,) = lockstep(ws_url(server, "/api/models/classify/stream"), frames["bus"][:1])
    assert len(answer["results"]) == 5 and "box" not in answer["results"][0]
    assert KEY not in server.log_text(), "a key never appears in a log line"


def _streams_open(server) -> int:
    text = requests.get(server.url + "/metrics", timeout=10).text
    return int(sum(float(v) for v in re.findall(r"^yolo_streams_open\{[^}]*\} (\S+)$", text, re.M)))


def test_max_streams_refuses_one_more_with_429_until_one_closes(server, frames):
    with contextlib.ExitStack() as stack:
        opened = [stack.enter_context(connect(ws_url(server), open_timeout=60)) for _ in range(3)]
        status, body, headers = _refusal(ws_url(server))
        assert status == 429 and "MAX_STREAMS=3" in body["error"]["message"] and int(headers["Retry-After"]) >= 1
        opened.pop().close()
        deadline = time.monotonic() + 60
        while _streams_open(server) != 2:  # the server has seen that one close
            assert time.monotonic() < deadline
            time.sleep(0.05)
        again = stack.enter_context(connect(ws_url(server), open_timeout=60))
        again.send(frames["bus"][0])
        assert json.loads(again.recv(timeout=60))["frame"] == 0


def test_a_stream_with_no_frame_for_stream_idle_s_is_closed_normally(server, frames):
    with connect(ws_url(server), open_timeout=60) as stream:
        stream.send(frames["bus"][0])
        assert json.loads(stream.recv(timeout=60))["frame"] == 0
        with pytest.raises(ConnectionClosed) as closed:
            stream.recv(timeout=IDLE_S * 20)  # nothing more is sent: the server closes it
    assert closed.value.rcvd.code == 1000 and f"STREAM_IDLE_S={IDLE_S}" in closed.value.rcvd.reason
    entry = [e for e in server.log_entries() if "stream" in e and e["stream"]["close_code"] == 1000][-1]
    assert entry["stream"]["answered"] == 1 and entry["stream"]["dropped"] == 0


def test_sigterm_answers_the_frame_in_progress_then_closes_with_1001(start_server, weights, frames):
    server = start_server({"MODEL": str(weights["pose"])})
    with connect(server.url.replace("http://", "ws://") + "/stream?imgsz=1280", open_timeout=60) as stream:
        stream.send(frames["bus"][0])
        deadline = time.monotonic() + 60
        while "yolo_inflight_requests 1.0" not in requests.get(server.url + "/metrics", timeout=10).text:
            assert time.monotonic() < deadline, "the frame never reached the model"
        server.proc.send_signal(signal.SIGTERM)
        answer = json.loads(stream.recv(timeout=60))
        with pytest.raises(ConnectionClosed) as closed:
            stream.recv(timeout=60)
    assert answer["frame"] == 0 and answer["results"]
    assert closed.value.rcvd.code == 1001
    assert server.wait_exit(60) == 0
