"""`make bench`, the per-pixel tasks: semantic segmentation and depth, the endpoint against in-process Ultralytics.

Models: Ultralytics' own `yolo26n-sem.yaml` and `yolo26n-depth.yaml` with the tests' seeded noise on every weight
(tests/conftest.py), so the maps are as busy as a trained model's. Image: bus.jpg. For each task, in interleaved rounds
(in-process, then the endpoint, each BENCH_TASK_CALLS calls): P1 = p50 of POST /predict over loopback (the answer with
its PNG map) ÷ p50 of `YOLO(weights).predict("bus.jpg")` in this process, taken within the round; reported as the
median over the rounds with its spread (BENCH_ROUNDS= sets how many). Also: the share of semantic's in-process time
that is Ultralytics' postprocess (it upsamples every class's logits to full size before the argmax), and what the
endpoint adds to encode the map (PNG + base64), measured in this process. Figures are ratios from one run; the
machine's other load moves them.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from bench import endpoint, p50  # noqa: E402
from conftest import _build_noisy  # noqa: E402

GOAL_P1 = 1.05  # issue 20: the endpoint within 5% of in-process predict, per task
TASKS = {"semantic": "yolo26n-sem.yaml", "depth": "yolo26n-depth.yaml"}


def spread(values: list[float]) -> list[float]:
    return [round(min(values), 3), round(max(values), 3)]


def encode_ms(result, task: str, calls: int = 10) -> float:
    from function.dialects.platform import per_pixel

    samples = []
    for _ in range(calls):
        t = time.perf_counter()
        per_pixel(result, task, 640, 8)
        samples.append(time.perf_counter() - t)
    return p50(samples) * 1000


def bench_task(task: str, yaml: str, workdir: Path, image: Path, rounds: int, calls: int) -> dict:
    from ultralytics import YOLO

    weights = _build_noisy(yaml, workdir / f"{task}.pt")
    model = YOLO(str(weights))
    # PyTorch on both sides: this is the endpoint's own cost per task (the engines are make bench's other rows).
    server = endpoint(task, str(weights), workdir, ENGINE="pytorch")
    try:
        server.wait_ready()
        data = image.read_bytes()
        for _ in range(3):  # both sides warm
            model.predict(str(image), verbose=False)
            assert server.post(data).status_code == 200
        ratios, local_ms, served_ms, post_share = [], [], [], []
        for _ in range(rounds):
            local, served, shares = [], [], []
            for _ in range(calls):
                t = time.perf_counter()
                result = model.predict(str(image), verbose=False)[0]
                local.append(time.perf_counter() - t)
                speed = result.speed
                shares.append(speed["postprocess"] / sum(speed[k] for k in ("preprocess", "inference", "postprocess")))
            for _ in range(calls):
                t = time.perf_counter()
                response = server.post(data)
                served.append(time.perf_counter() - t)
                assert response.status_code == 200, response.text
            ratios.append(p50(served) / p50(local))
            local_ms.append(p50(local) * 1000)
            served_ms.append(p50(served) * 1000)
            post_share.append(p50(shares))
        p1 = statistics.median(ratios)
        return {
            "p1": round(p1, 3), "p1_spread": spread(ratios), "goal": GOAL_P1, "met": p1 <= GOAL_P1,
            "in_process_ms": round(statistics.median(local_ms), 1), "endpoint_ms": round(statistics.median(served_ms), 1),
            "postprocess_share": round(statistics.median(post_share), 3),
            "encode_map_ms": round(encode_ms(result, task), 2),
            "response_kb": round(len(server.post(data).content) / 1024, 1),
        }
    finally:
        server.stop()


def main() -> None:
    from ultralytics.utils import ASSETS

    rounds = int(os.environ.get("BENCH_ROUNDS", "5"))
    calls = int(os.environ.get("BENCH_TASK_CALLS", "10"))
    with tempfile.TemporaryDirectory(prefix="bench-tasks-") as tmp:
        report = {task: bench_task(task, yaml, Path(tmp), ASSETS / "bus.jpg", rounds, calls)
                  for task, yaml in TASKS.items()}
    report["rounds"], report["calls_per_round"] = rounds, calls
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
