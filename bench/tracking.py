"""`make bench`, tracking: a tracked video through the endpoint against Ultralytics' own `model.track` in this process.

Model: Ultralytics' COCO pose model (yolo11n-pose, shipped on PyPI). Video: a camera panning across bus.jpg
(BENCH_TRACK_FRAMES frames, 640x480 VP8), so the same people stay in view. In interleaved rounds (BENCH_ROUNDS):
  - one: `YOLO(weights).track(video, tracker="bytetrack.yaml")` in this process, then POST /predict with
    track=true; the ratio of the two wall times, per endpoint: the default engine and ENGINE=pytorch (goal ≤ 1.05);
  - two at once: two different videos POSTed together ÷ both tracked one after the other in this process (one
    Ultralytics model cannot track two videos at once: its trackers live on its predictor).
Also the tracker's own cost per frame (core/tracking.py Sequence.update after the model, ByteTrack and BoT-SORT),
measured in this process over the video's recorded detections. Ratios from one run; medians with their spread.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from bench import default_model, endpoint  # noqa: E402

GOAL = 1.05  # issue 24: a tracked video through the endpoint within 5% of model.track in-process


def pan(photo: Path, out: Path, frames: int, width: int = 640, height: int = 480, start: int = 0) -> Path:
    import cv2
    import numpy as np

    image = cv2.imread(str(photo))
    step = max(1, (image.shape[1] - width - start) // max(frames - 1, 1))
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"VP80"), 25.0, (width, height))
    for i in range(frames):
        left = start + min(i * step, image.shape[1] - width - start)
        writer.write(np.ascontiguousarray(image[image.shape[0] - height:, left:left + width]))
    writer.release()
    return out


def spread(values: list[float]) -> list[float]:
    return [round(min(values), 3), round(max(values), 3)]


def tracker_ms(model, video: Path) -> dict:
    """ms per frame of the tracker alone, after the model: each frame's detections recorded, then replayed."""
    from function.core.tracking import Sequence

    results = list(model.predict(str(video), conf=0.1, stream=True, verbose=False))
    costs = {}
    for name in ("bytetrack", "botsort"):
        samples = []
        for _ in range(3):
            sequence = Sequence(name, model.task, "cpu")
            started = time.perf_counter()
            for result in results:
                sequence.update(result)
            samples.append((time.perf_counter() - started) / len(results))
        costs[name] = round(statistics.median(samples) * 1000, 3)
    return costs


def post_video(server, video: Path):
    with open(video, "rb") as file:
        response = server.session.post(server.url + "/predict", files={"file": (video.name, file)},
                                       data={"track": "true"}, timeout=600)
    assert response.status_code == 200, response.text
    return response.json()


def main() -> None:
    from ultralytics import YOLO
    from ultralytics.utils import ASSETS

    rounds = int(os.environ.get("BENCH_ROUNDS", "5"))
    frames = int(os.environ.get("BENCH_TRACK_FRAMES", "60"))
    weights = default_model()
    with tempfile.TemporaryDirectory(prefix="bench-tracking-") as tmp:
        workdir = Path(tmp)
        video = pan(ASSETS / "bus.jpg", workdir / "bus-pan.webm", frames, height=640, width=480)
        other = pan(ASSETS / "zidane.jpg", workdir / "zidane-pan.webm", frames)
        model = YOLO(weights)

        def track_here(path: Path) -> list:
            return [r.summary() for r in model.track(str(path), tracker="bytetrack.yaml", stream=True, verbose=False)]

        servers = {"default": endpoint("tracking-default", weights, workdir, MODEL_CACHE_DIR=str(workdir / "cache")),
                   "pytorch": endpoint("tracking-pytorch", weights, workdir, ENGINE="pytorch")}
        report: dict = {"frames": frames, "rounds": rounds, "video": "640x480 pan of bus.jpg", "goal": GOAL}
        try:
            for server in servers.values():
                server.wait_ready()
            servers["default"].wait_log("serving with")  # the exported engine swapped in
            for server in servers.values():  # both sides warm, and the same answer on PyTorch
                answer = post_video(server, video)
            assert [image["results"] for image in answer["images"]] == track_here(video), "the answers differ"
            ratios = {name: [] for name in servers}
            both_ratios, here_s, there_s = [], [], {name: [] for name in servers}
            for _ in range(rounds):
                t = time.perf_counter()
                track_here(video)
                local = time.perf_counter() - t
                here_s.append(local)
                for name, server in servers.items():
                    t = time.perf_counter()
                    post_video(server, video)
                    there_s[name].append(time.perf_counter() - t)
                    ratios[name].append(there_s[name][-1] / local)
                t = time.perf_counter()
                track_here(video)
                track_here(other)
                sequential = time.perf_counter() - t
                threads = [threading.Thread(target=post_video, args=(servers["default"], path)) for path in (video, other)]
                t = time.perf_counter()
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join()
                both_ratios.append((time.perf_counter() - t) / sequential)
            for name in servers:
                ratio = statistics.median(ratios[name])
                report[f"endpoint_{name}"] = {
                    "ratio": round(ratio, 3), "spread": spread(ratios[name]), "met": ratio <= GOAL,
                    "seconds": round(statistics.median(there_s[name]), 3)}
            report["in_process_seconds"] = round(statistics.median(here_s), 3)
            report["two_at_once_default"] = {"ratio": round(statistics.median(both_ratios), 3),
                                             "spread": spread(both_ratios)}
            report["tracker_ms_per_frame"] = tracker_ms(model, video)
        finally:
            for server in servers.values():
                server.stop()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
