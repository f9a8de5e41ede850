"""Videos through the Platform dialect, against the real server: per-frame results equal Ultralytics' own
`YOLO(weights).predict(video, vid_stride=n)` on the same file; limits; image requests are not held behind a video."""

from __future__ import annotations

import threading
import time
from functools import lru_cache

import numpy as np
import pytest
import requests
from conftest import local_summary, metric, wait_until

pytestmark = pytest.mark.integration

MAX_FRAMES = 40


@pytest.fixture(scope="module")
def server(start_server, weights):
    return start_server({"MODEL": str(weights["detect"]), "MAX_VIDEO_FRAMES": str(MAX_FRAMES)})


def write_video(path, source, frames: int, fourcc: str, size=(288, 384), fps=10.0):
    """A real video: the source image sliding sideways, one position per frame."""
    import cv2

    image = cv2.resize(cv2.imread(str(source)), size)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, size)
    assert writer.isOpened(), f"OpenCV cannot write {fourcc}"
    for i in range(frames):
        writer.write(np.roll(image, i * 9, axis=1))
    writer.release()
    return path


@lru_cache(maxsize=None)
def _yolo(path: str):
    from ultralytics import YOLO

    return YOLO(path)


def local_frames(weights, video, **params) -> list[list[dict]]:
    return [r.summary() for r in _yolo(str(weights["detect"])).predict(str(video), stream=True, verbose=False, **params)]


@pytest.mark.parametrize("container, fourcc, stride", [("mp4", "mp4v", 1), ("avi", "MJPG", 3), ("mkv", "MJPG", 2)])
def test_video_frames_equal_ultralytics_predict_on_the_same_file(server, weights, bus_jpg, tmp_path, container, fourcc, stride):
    video = write_video(tmp_path / f"walk.{container}", bus_jpg, 9, fourcc)
    response = requests.post(server.url + "/predict", files={"file": video.open("rb")},
                             data={"vid_stride": str(stride), "imgsz": "320"}, timeout=120)
    assert response.status_code == 200, response.text
    body = response.json()
    expected = local_frames(weights, video, vid_stride=stride, imgsz=320)
    assert body["metadata"]["imageCount"] == len(body["images"]) == len(expected) == 9 // stride
    assert [image["results"] for image in body["images"]] == expected
    assert [image["frame"] for image in body["images"]] == [stride * (i + 1) - 1 for i in range(9 // stride)]
    assert [image["timestamp"] for image in body["images"]] == pytest.approx([(stride * (i + 1) - 1) / 10 for i in range(9 // stride)])
    assert all(image["shape"] == [384, 288] for image in body["images"])


def test_an_image_request_is_not_held_behind_a_long_video(server, weights, bus_jpg, zidane_jpg, tmp_path):
    video = write_video(tmp_path / "long.mp4", bus_jpg, MAX_FRAMES, "mp4v", size=(480, 640))
    done: dict[str, float] = {}
    answers: dict[str, requests.Response] = {}

    def send_video():
        # imgsz 1280: several seconds of frames even on a fast machine, so the margin below is not a race.
        answers["video"] = requests.post(server.url + "/predict", files={"file": video.open("rb")},
                                         data={"imgsz": "1280"}, timeout=300)
        done["video"] = time.monotonic()

    frames_before = metric(server.url, "yolo_video_frames_total")
    thread = threading.Thread(target=send_video)
    thread.start()
    # The image goes once the video's first frames have been through the model: the video is being run, batch after
    # batch, with most of its frames still to come.
    wait_until(lambda: metric(server.url, "yolo_video_frames_total") > frames_before or not thread.is_alive(), 120,
               "the video's first frames to reach the model")
    image = requests.post(server.url + "/predict", files={"file": zidane_jpg.open("rb")}, timeout=120)
    done["image"] = time.monotonic()
    thread.join()
    assert answers["video"].status_code == 200, answers["video"].text
    assert len(answers["video"].json()["images"]) == MAX_FRAMES
    assert image.json()["images"][0]["results"] == local_summary(weights["detect"], str(zidane_jpg))
    assert done["image"] < done["video"] - 2, "the image was answered between two of the video's batches"


def test_video_limits_and_bad_videos(server, bus_jpg, tmp_path):
    def post(files, data=None):
        return requests.post(server.url + "/predict", files=files, data=data, timeout=120)

    too_long = write_video(tmp_path / "too-long.mp4", bus_jpg, MAX_FRAMES + 1, "mp4v", size=(64, 48))
    refused = post({"file": too_long.open("rb")})
    assert refused.status_code == 413 and f"MAX_VIDEO_FRAMES={MAX_FRAMES}" in refused.json()["error"]["message"]
    assert post({"file": too_long.open("rb")}, {"vid_stride": "2", "imgsz": "64"}).status_code == 200, "fewer frames at stride 2"
    huge = b"\x00\x00\x00\x18ftypmp42" + bytes(101 * 2**20)
    assert post({"file": ("huge.mp4", huge)}).status_code == 413
    fake = post({"file": ("fake.mp4", b"\x00\x00\x00\x18ftypmp42" + b"not really a video" * 50)})
    assert fake.status_code == 400 and "Invalid video" in fake.json()["error"]["message"]
    assert post({"file": ("notes.mp4", b"just some text, named like a video" * 20)}).status_code == 415
    cut = too_long.read_bytes()[: too_long.stat().st_size // 2]  # mp4v writes its index last: nothing to read
    assert post({"file": ("cut.mp4", cut)}).status_code == 400
    for data, words in (({"vid_stride": "0"}, "'vid_stride'"), ({"format": "image"}, "video")):
        bad = post({"file": too_long.open("rb")}, data)
        assert bad.status_code == 400 and words in bad.json()["error"]["message"]
    two = post([("file", too_long.open("rb")), ("file", bus_jpg.open("rb"))])
    assert two.status_code == 400 and "one video" in two.json()["error"]["message"]
    assert requests.get(server.url + "/healthz", timeout=5).status_code == 200
