"""`make bench`, live streams: GET /stream against Ultralytics' own `model.track(frame, persist=True)` in this process.

Model: yolo11n-pose (COCO, on PyPI). Frames: a camera panning across zidane.jpg, 640x360 JPEGs. Endpoints: the default
engine and ENGINE=pytorch. In interleaved rounds (BENCH_ROUNDS), each taken within the round:
  - lockstep: the round trip per frame of a client that waits for each answer ÷ `model.track(frame, persist=True)`
    per frame in this process (goal ≤ 1.1 on the default engine);
  - flood: a client sending FLOOD_FPS frames a second without waiting for answers for FLOOD_S seconds: the frames
    answered per second ÷ the frames per second `model.track` manages in this process (goal ≥ 0.9), and the same with
    4 such streams at once (their answers summed).
Ratios from one run; medians of the rounds with their spread.
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

GOAL_LOCKSTEP, GOAL_FLOOD = 1.1, 0.9  # issue 25
FLOOD_FPS, FLOOD_S = 60, 6.0


def frames(count: int = 48) -> list[bytes]:
    import cv2
    import numpy as np
    from ultralytics.utils import ASSETS

    image = cv2.imread(str(ASSETS / "zidane.jpg"))
    out = []
    for i in [*range(count // 2), *range(count // 2 - 1, -1, -1)]:
        left = (image.shape[1] - 640) * i // (count // 2 - 1)
        crop = np.ascontiguousarray(image[180:540, left:left + 640])
        out.append(cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes())
    return out


def in_process(weights: str, jpegs: list[bytes]) -> float:
    """Seconds per frame of model.track(frame, persist=True) over the frames, decoded as the server decodes them."""
    import cv2
    import numpy as np
    from ultralytics import YOLO

    model = YOLO(weights)
    images = [cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR) for jpeg in jpegs]
    model.track(images[0], persist=True, verbose=False)  # warm, and its tracker made
    started = time.perf_counter()
    for image in images:
        model.track(image, persist=True, verbose=False)
    return (time.perf_counter() - started) / len(images)


def url(server) -> str:
    return server.url.replace("http://", "ws://") + "/stream?track=true"


def lockstep(server, jpegs: list[bytes]) -> float:
    from websockets.sync.client import connect

    with connect(url(server), open_timeout=60) as stream:
        stream.send(jpegs[0])
        stream.recv(timeout=60)
        started = time.perf_counter()
        for jpeg in jpegs:
            stream.send(jpeg)
            assert "error" not in json.loads(stream.recv(timeout=60))
        return (time.perf_counter() - started) / len(jpegs)


def flood(server, jpegs: list[bytes], streams: int) -> float:
    """Answers per second summed over `streams` connections, each sent FLOOD_FPS frames a second for FLOOD_S."""
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    answered = [0] * streams

    def one(k: int) -> None:
        with connect(url(server), open_timeout=60) as stream:
            started = time.perf_counter()
            until = started + FLOOD_S

            def read():
                try:
                    while True:
                        json.loads(stream.recv(timeout=60))
                        answered[k] += time.perf_counter() <= until
                except ConnectionClosed:  # the window is over and the client closed
                    return

            reader = threading.Thread(target=read)
            reader.start()
            sent = 0
            while time.perf_counter() < until:
                stream.send(jpegs[sent % len(jpegs)])
                sent += 1
                time.sleep(max(0.0, started + sent / FLOOD_FPS - time.perf_counter()))  # the camera's pace
            stream.close()
            reader.join()

    threads = [threading.Thread(target=one, args=(k,)) for k in range(streams)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(answered) / FLOOD_S


def spread(values: list[float]) -> list[float]:
    return [round(min(values), 3), round(max(values), 3)]


def main() -> None:
    rounds = int(os.environ.get("BENCH_ROUNDS", "5"))
    weights, jpegs = default_model(), frames()
    with tempfile.TemporaryDirectory(prefix="bench-streams-") as tmp:
        workdir = Path(tmp)
        servers = {"default": endpoint("streams-default", weights, workdir, MODEL_CACHE_DIR=str(workdir / "cache")),
                   "pytorch": endpoint("streams-pytorch", weights, workdir, ENGINE="pytorch")}
        samples: dict[str, list[float]] = {}
        try:
            for server in servers.values():
                server.wait_ready()
            servers["default"].wait_log("serving with")
            for server in servers.values():
                lockstep(server, jpegs[:4])
            for _ in range(rounds):
                here = in_process(weights, jpegs)
                samples.setdefault("in_process_ms", []).append(here * 1000)
                for name, server in servers.items():
                    samples.setdefault(f"lockstep_{name}", []).append(lockstep(server, jpegs) / here)
                samples.setdefault("flood_default", []).append(flood(servers["default"], jpegs, 1) * here)
                samples.setdefault("flood4_default", []).append(flood(servers["default"], jpegs, 4) * here)
        finally:
            for server in servers.values():
                server.stop()
    report = {"rounds": rounds, "frames": "640x360 JPEG, a pan across zidane.jpg", "flood_fps": FLOOD_FPS,
              "in_process_ms_per_frame": round(statistics.median(samples.pop("in_process_ms")), 1)}
    goals = {"lockstep_default": ("<=", GOAL_LOCKSTEP), "flood_default": (">=", GOAL_FLOOD),
             "flood4_default": (">=", GOAL_FLOOD)}
    for name, values in samples.items():
        ratio = statistics.median(values)
        entry = {"ratio": round(ratio, 3), "spread": spread(values)}
        if name in goals:
            sign, goal = goals[name]
            entry.update(goal=f"{sign} {goal}", met=ratio <= goal if sign == "<=" else ratio >= goal)
        report[name] = entry
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
