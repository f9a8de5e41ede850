"""Tracking (`track=true`) against the real server: each video's frames and ids equal Ultralytics' own
`YOLO(weights).track(video, …)` on the same file, under concurrency too; `metadata.tracks`/`counts`; the refusals; the
batch job's lines equal /predict's."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from functools import lru_cache

import cv2
import numpy as np
import pytest
import requests
from conftest import ROOT

pytestmark = pytest.mark.integration

TRACKERS = ("bytetrack", "botsort")
PAN_PX = 5  # the window moves this many pixels a frame: the same people stay in view, a little further left each time


def pan_video(path, photo, frames: int, window=(320, 480), scale=0.5, fps=10.0):
    """A camera panning across a photo: a fixed-size window sliding right over it, one step per frame (VP8 WebM: what
    OpenCV writes and Chromium plays). Returns the window's left edge in each frame."""
    image = cv2.imread(str(photo))
    image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    width, height = window
    assert image.shape[1] >= width + PAN_PX * (frames - 1) and image.shape[0] >= height
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"VP80"), fps, (width, height))
    assert writer.isOpened()
    lefts = [PAN_PX * i for i in range(frames)]
    for left in lefts:
        writer.write(np.ascontiguousarray(image[:height, left:left + width]))
    writer.release()
    return lefts


@pytest.fixture(scope="module")
def videos(tmp_path_factory, bus_jpg, zidane_jpg):
    folder = tmp_path_factory.mktemp("videos")
    bus, zidane = folder / "bus-pan.webm", folder / "zidane-pan.webm"
    lefts = pan_video(bus, bus_jpg, 16)
    pan_video(zidane, zidane_jpg, 24, window=(480, 320))
    return {"bus": bus, "zidane": zidane, "bus_lefts": lefts}


@pytest.fixture(scope="module")
def server(start_server, weights):
    """Ultralytics' COCO pose model by default, the trained detect model and a classify model beside it."""
    models = f"detect={weights['detect']},classify={weights['classify']}"
    return start_server({"MODEL": str(weights["pose"]), "MODELS": models})


@lru_cache(maxsize=None)
def _yolo(path: str):
    from ultralytics import YOLO

    return YOLO(path)


def ultralytics_track(weights_path, video, **params) -> list[list[dict]]:
    """What a user gets running Ultralytics' own tracking on the file: one summary() per processed frame."""
    return [r.summary() for r in _yolo(str(weights_path)).track(str(video), stream=True, verbose=False, **params)]


def post(server, video, path="/predict", **fields):
    with open(video, "rb") as file:
        return requests.post(server.url + path, files={"file": file}, data={k: str(v) for k, v in fields.items()},
                         timeout=300)


def frames_of(body) -> list[list[dict]]:
    return [image["results"] for image in body["images"]]


@pytest.mark.parametrize("tracker", TRACKERS)
@pytest.mark.parametrize("model, path", [("pose", "/predict"), ("detect", "/api/models/detect/predict")])
def test_tracked_frames_equal_ultralytics_track_on_the_same_file(server, weights, videos, tracker, model, path):
    response = post(server, videos["bus"], path, track="true", tracker=tracker, imgsz=320)
    assert response.status_code == 200, response.text
    body = response.json()
    expected = ultralytics_track(weights[model], videos["bus"], tracker=f"{tracker}.yaml", imgsz=320)
    assert len(expected) == 16 and body["metadata"]["imageCount"] == 16
    assert frames_of(body) == expected
    ids = [row["track_id"] for frame in frames_of(body) for row in frame if "track_id" in row]
    assert ids and min(ids) == 1, "each request's tracker numbers its tracks from 1"


def _overlap(a: dict, b: dict) -> float:
    """Intersection over the smaller box: 1 for a person whose box the frame's edge cuts down as the camera pans."""
    w = min(a["x2"], b["x2"]) - max(a["x1"], b["x1"])
    h = min(a["y2"], b["y2"]) - max(a["y1"], b["y1"])
    smaller = min((a["x2"] - a["x1"]) * (a["y2"] - a["y1"]), (b["x2"] - b["x1"]) * (b["y2"] - b["y1"]))
    return max(w, 0) * max(h, 0) / smaller


def test_each_person_keeps_one_id_across_the_pan(server, videos):
    body = post(server, videos["bus"], track="true", imgsz=320).json()
    # In the photo's own coordinates (each frame's box plus the window's left edge) a person stands still.
    seen: dict[int, list[dict]] = {}
    for frame, left in zip(frames_of(body), videos["bus_lefts"]):
        for row in frame:
            if "track_id" in row:
                box = row["box"]
                seen.setdefault(row["track_id"], []).append(
                    {"x1": box["x1"] + left, "y1": box["y1"], "x2": box["x2"] + left, "y2": box["y2"]})
    assert len(seen) >= 2
    for track_id, boxes in seen.items():
        # A person the frame's edge cuts keeps most of its box inside its first one (the tracker's box lags a little).
        assert all(_overlap(boxes[0], box) > 0.6 for box in boxes), f"track {track_id} jumped to another person"
    # No person under two ids: the tracks' places in the photo are all distinct.
    places = {track_id: boxes[len(boxes) // 2] for track_id, boxes in seen.items()}
    for a in places:
        for b in places:
            assert a == b or _overlap(places[a], places[b]) < 0.5, f"tracks {a} and {b} are the same person"
    # The people in the middle of the photo are in every frame: one id each, from the first frame to the last.
    everywhere = [t for t in body["metadata"]["tracks"] if t["first_frame"] == 0 and t["last_frame"] == 15]
    assert len(everywhere) >= 2 and all(t["frames"] == 16 for t in everywhere)


def test_metadata_tracks_and_counts_say_what_the_frames_show(server, videos):
    body = post(server, videos["zidane"], track="true", tracker="botsort").json()
    rows = [(image["frame"], row) for image in body["images"] for row in image["results"] if "track_id" in row]
    assert rows
    expected = {}
    for frame, row in rows:
        entry = expected.setdefault(row["track_id"], {"track_id": row["track_id"], "first_frame": frame, "frames": 0,
                                                       "classes": []})
        entry["last_frame"], entry["frames"] = frame, entry["frames"] + 1
        entry["classes"].append((row["class"], row["name"]))
    tracks = body["metadata"]["tracks"]
    assert [t["track_id"] for t in tracks] == sorted(expected)
    for track in tracks:
        want = expected[track["track_id"]]
        classes = want.pop("classes")
        most = max(set(classes), key=lambda c: (classes.count(c), -classes.index(c)))
        assert track == {**want, "class": most[0], "name": most[1]}
    names = [t["name"] for t in tracks]
    assert body["metadata"]["counts"] == {name: names.count(name) for name in set(names)}
    assert set(body["metadata"]) >= {"imageCount", "functionTimeCall", "model", "task", "version"}


def test_an_untracked_video_is_answered_as_before(server, weights, videos):
    body = post(server, videos["bus"], imgsz=320).json()
    assert "tracks" not in body["metadata"] and "counts" not in body["metadata"]
    assert not any("track_id" in row for frame in frames_of(body) for row in frame)
    expected = [r.summary() for r in _yolo(str(weights["pose"])).predict(str(videos["bus"]), stream=True,
                                                                          verbose=False, imgsz=320)]
    assert frames_of(body) == expected


def test_vid_stride_tracks_every_nth_frame_as_ultralytics_does(server, weights, videos):
    body = post(server, videos["zidane"], track="true", vid_stride=3).json()
    assert [image["frame"] for image in body["images"]] == [3 * i + 2 for i in range(8)]
    assert frames_of(body) == ultralytics_track(weights["pose"], videos["zidane"], tracker="bytetrack.yaml", vid_stride=3)


def test_concurrent_videos_each_get_their_own_tracker(server, weights, videos):
    """Two videos tracked at once (their frames share the model's queue) each equal their answer alone; a third
    request starts again from id 1. The server's gauge of tracked sequences shows that the two did overlap."""
    answers, peak, done = {}, [0], threading.Event()

    def watch():
        while not done.is_set():
            text = requests.get(server.url + "/metrics", timeout=10).text
            peak[0] = max(peak[0], int(float(re.search(r"^yolo_tracked_sequences (\S+)$", text, re.M)[1])))
            done.wait(0.05)  # a poll interval, not a synchronisation: the assertion below is on what was seen

    start = threading.Barrier(2)

    def send(name):
        start.wait()
        answers[name] = post(server, videos[name], track="true")

    watcher = threading.Thread(target=watch)
    watcher.start()
    senders = [threading.Thread(target=send, args=(name,)) for name in ("bus", "zidane")]
    for thread in senders:
        thread.start()
    for thread in senders:
        thread.join()
    done.set()
    watcher.join()
    assert peak[0] == 2, "the two videos were not tracked at the same time"
    for name in ("bus", "zidane"):
        assert answers[name].status_code == 200, answers[name].text
        assert frames_of(answers[name].json()) == ultralytics_track(weights["pose"], videos[name], tracker="bytetrack.yaml")
    third = post(server, videos["zidane"], track="true").json()
    assert frames_of(third) == frames_of(answers["zidane"].json())


def test_tracking_refusals(server, videos, bus_jpg):
    def message(response, status=400):
        assert response.status_code == status, response.text
        return response.json()["error"]["message"]

    assert "bytetrack, botsort" in message(post(server, videos["bus"], track="true", tracker="deepsort"))
    assert "'track'" in message(post(server, videos["bus"], track="maybe"))
    assert "send a video" in message(post(server, bus_jpg, track="true"))
    said = message(post(server, videos["bus"], "/api/models/classify/predict", track="true"))
    assert "classify model" in said and "detect, segment, pose, obb" in said
    # HUB v1 takes the same parameters on the same video.
    assert post(server, videos["bus"], "/v1/predict/detect", track="true", imgsz=320).json()["metadata"]["tracks"]


def test_the_batch_jobs_lines_equal_predicts_answers(server, weights, videos, tmp_path):
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    for name in ("bus", "zidane"):
        (folder / videos[name].name).write_bytes(videos[name].read_bytes())
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("CLOUD_RUN_")},
           "MODEL": str(weights["pose"]), "ENGINE": "pytorch", "YOLO_CONFIG_DIR": str(tmp_path / "yolo")}
    run = subprocess.run([sys.executable, "-m", "function", "batch", "--input", str(folder), "--output", str(out),
                          "--track", "--tracker", "botsort", "--imgsz", "320"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    lines = [json.loads(line) for chunk in sorted((out / "results").glob("*.jsonl")) for line in chunk.read_text().splitlines()]
    summary = json.loads((out / "summary.json").read_text())
    for name in ("bus", "zidane"):
        answer = post(server, videos[name], track="true", tracker="botsort", imgsz=320).json()
        mine = [line for line in lines if line["source"]["uri"].endswith(videos[name].name)]
        assert [line["results"] for line in mine] == frames_of(answer)
        assert [line["frame"] for line in mine] == [image["frame"] for image in answer["images"]]
        uri = mine[0]["source"]["uri"]
        assert summary["tracks"][uri] == {"tracks": answer["metadata"]["tracks"], "counts": answer["metadata"]["counts"]}
    assert summary["params"]["track"] == "botsort"
