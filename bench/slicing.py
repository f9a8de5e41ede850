"""`make bench`, sliced inference (issue 26): the endpoint against `sahi.get_sliced_prediction` in this process.

Image: a 4000×3000 mosaic of small copies of bus.jpg and zidane.jpg (tests/test_slicing.py's, 100 copies at 1/4 size),
sent as a JPEG; both sides slice the same decoded pixels with slice_size=640 and the endpoint's defaults (overlap 0.2,
the whole image merged in, NMS by IoS at 0.6; sahi is given the same). Rows:

* speed: the seconds per request of the endpoint with its default engine (OpenVINO on a CPU) and with PyTorch, and of
  sahi (PyTorch, its default batch_size=1), in BENCH_ROUNDS rounds (default 3) of one call each after a warm one; the
  speed-up is the median of the per-round ratios (the goal: the default engine ≥ 2× sahi); and the cost per tile (a
  request's seconds over the images the model ran for it).
* answers: how many detections each gives and the largest box difference from sahi's (PyTorch: equal; OpenVINO:
  its own float rounding).
* merges: every merge × match × threshold on the same tiles, against what the model finds in each copy at full
  size: found (IoU ≥ 0.5), found twice, fragments (a box inside a true one that matches none) and bridges (a box
  around two true ones): the measurement behind the default.
* memory: an 8000×8000 JPEG with slice_size=640 (256 tiles), detect and segment (the detect weights under a segment
  head whose masks are its boxes, as in the tests): the worker's peak RSS (VmHWM) against its RSS when ready.
"""

from __future__ import annotations

import itertools
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

from bench import endpoint  # noqa: E402

GOAL_SPEEDUP = 2.0
SLICE, CONF, IMGSZ = 640, 0.25, 640


def mosaic_jpeg(width: int, height: int, quality: int = 90) -> tuple[bytes, list]:
    import cv2
    from test_slicing import make_mosaic

    image, places = make_mosaic(0, width, height, (400, 300), 0.25)
    return cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes(), places


def decoded(data: bytes):
    import cv2
    import numpy as np

    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)  # as the endpoint decodes a JPEG


def post(server, data: bytes, **fields) -> dict:
    response = server.session.post(server.url + "/predict", files={"file": ("mosaic.jpg", data)},
                                   data={"slice_size": str(SLICE), "conf": str(CONF), "imgsz": str(IMGSZ), **fields},
                                   timeout=900)
    assert response.status_code == 200, response.text
    return response.json()


def sahi_call(weights: str, image):
    """sahi on the same weights and pixels, with the endpoint's default merge."""
    from sahi.models.ultralytics import UltralyticsDetectionModel
    from sahi.predict import get_sliced_prediction

    from function.core.requests import Slicing

    defaults = Slicing(SLICE)
    model = UltralyticsDetectionModel(model_path=weights, confidence_threshold=CONF, image_size=IMGSZ, device="cpu")
    rgb = image[..., ::-1].copy()
    return lambda: get_sliced_prediction(
        rgb, model, slice_height=SLICE, slice_width=SLICE, overlap_height_ratio=defaults.overlap,
        overlap_width_ratio=defaults.overlap, perform_standard_pred=defaults.full,
        postprocess_type={"nms": "NMS", "nmm": "GREEDYNMM"}[defaults.merge],
        postprocess_match_metric=defaults.match.upper(), postprocess_match_threshold=defaults.threshold,
        verbose=0).object_prediction_list


def difference(rows: list[dict], predictions: list) -> dict:
    """Counts, and the largest distance from each of sahi's boxes to the nearest of ours (pixels)."""
    import numpy as np

    ours = np.array([[r["box"][k] for k in ("x1", "y1", "x2", "y2")] for r in rows]).reshape(-1, 4)
    worst = max((float(np.abs(ours - p.bbox.to_xyxy()).max(1).min()) for p in predictions), default=0.0)
    return {"detections": len(rows), "sahi_detections": len(predictions), "largest_box_difference_px": round(worst, 4)}


def speed(weights: str, workdir: Path, rounds: int) -> dict:
    """Rounds of one call each, sahi then each endpoint: a busy machine slows all three alike within a round."""
    data, _ = mosaic_jpeg(4000, 3000)
    sahi = sahi_call(weights, decoded(data))
    servers = {"pytorch": endpoint("slicing-pytorch", weights, workdir, REQUEST_TIMEOUT_S="900", ENGINE="pytorch"),
               "default": endpoint("slicing-default", weights, workdir, REQUEST_TIMEOUT_S="900",
                                   MODEL_CACHE_DIR=str(workdir / "engines"))}
    try:
        for server in servers.values():
            server.wait_ready()
        report = {"image": "4000x3000 JPEG", "slice_size": SLICE,
                  "default_engine": servers["default"].wait_log("serving with")["message"]}
        calls = {"sahi": sahi, **{name: (lambda server=server: post(server, data)) for name, server in servers.items()}}
        answers = {name: call() for name, call in calls.items()}  # warm
        seconds: dict[str, list[float]] = {name: [] for name in calls}
        for _ in range(rounds):
            for name, call in calls.items():
                started = time.perf_counter()
                call()
                seconds[name].append(time.perf_counter() - started)
    finally:
        for server in servers.values():
            server.stop()
    sahi_s = statistics.median(seconds["sahi"])
    inputs = answers["default"]["metadata"]["slices"] + 1  # the tiles and the whole image
    report["sahi_s"] = round(sahi_s, 3)
    report["sahi_ms_per_model_input"] = round(sahi_s / inputs * 1000, 1)
    for name in servers:
        ratios = [s / e for s, e in zip(seconds["sahi"], seconds[name])]
        report[name] = {"s": round(statistics.median(seconds[name]), 3),
                        "speedup_vs_sahi": round(statistics.median(ratios), 2),
                        "speedup_spread": [round(min(ratios), 2), round(max(ratios), 2)],
                        "tiles": answers[name]["metadata"]["slices"],
                        "ms_per_model_input": round(statistics.median(seconds[name]) / inputs * 1000, 1),
                        **difference(answers[name]["images"][0]["results"], answers["sahi"])}
    report["goal_speedup"] = GOAL_SPEEDUP
    report["met"] = report["default"]["speedup_vs_sahi"] >= GOAL_SPEEDUP
    report["rounds"] = rounds
    return report


def merges(weights: str) -> dict:
    """Every merge on one set of tiles (run once, in this process), scored against the truth."""
    import numpy as np
    import torch
    from test_slicing import truth_boxes
    from ultralytics import YOLO
    from ultralytics.utils.metrics import box_iou

    from function.core import slicing
    from function.core.requests import Slicing

    data, places = mosaic_jpeg(4000, 3000)
    image = decoded(data)
    truth = truth_boxes({"detect": weights}, places, CONF)
    model = YOLO(weights)
    inputs, origins = slicing.model_inputs(image, Slicing(SLICE), 10_000)
    results = [model.predict(tile, conf=CONF, imgsz=IMGSZ, verbose=False)[0] for tile in inputs]
    found = slicing.joined([slicing.found_in(r, x, y, "detect") for r, (x, y) in zip(results, origins)])

    def inside(a, b):  # the share of each box of a inside each box of b
        x1, y1 = np.maximum(a[:, None, 0], b[None, :, 0]), np.maximum(a[:, None, 1], b[None, :, 1])
        x2, y2 = np.minimum(a[:, None, 2], b[None, :, 2]), np.minimum(a[:, None, 3], b[None, :, 3])
        return np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None) / ((a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1]))[:, None]

    table = []
    for merge, match, threshold in itertools.product(("nms", "nmm"), ("ios", "iou"), (0.5, 0.6, 0.7, 0.8)):
        answer = slicing.merged_result(image, results, found, Slicing(SLICE, merge=merge, match=match,
                                                                      threshold=threshold), "detect", 1000)
        boxes = answer.boxes.xyxy.numpy().astype(np.float64)
        iou = box_iou(torch.from_numpy(truth), torch.from_numpy(boxes)).numpy()
        matched = iou.max(0) >= 0.5
        owners = iou.argmax(0)[matched]
        table.append({"merge": merge, "match": match, "threshold": threshold, "detections": len(boxes),
                      "found": int((iou.max(1) >= 0.5).sum()), "found_twice": int(len(owners) - len(set(owners.tolist()))),
                      "fragments": int(((inside(boxes, truth).max(1) >= 0.8) & ~matched).sum()),
                      "bridges": int(((inside(truth, boxes).T >= 0.8).sum(1) >= 2).sum())})
    return {"truth": len(truth), "tiles": len(inputs) - 1, "merges": table}


def peak_memory(weights: str, workdir: Path) -> dict:
    """The worker's peak RSS for one 8000×8000 request, detect and segment, over its RSS when ready."""
    import psutil
    from test_slicing import segment_from_detect

    data, _ = mosaic_jpeg(8000, 8000, quality=85)
    segment = segment_from_detect(weights, Path(tempfile.mkdtemp(prefix="segment", dir=workdir)))
    report = {"image": f"8000x8000 JPEG, {len(data) / 2**20:.1f} MB", "slice_size": SLICE}
    for task, model in (("detect", weights), ("segment", str(segment))):
        server = endpoint(f"slicing-memory-{task}", model, workdir, MAX_UPLOAD_MB="64", REQUEST_TIMEOUT_S="1800",
                          MODEL_CACHE_DIR=str(workdir / "engines"))
        try:
            server.wait_ready()
            server.wait_log("serving with")
            worker = max([psutil.Process(server.proc.pid), *psutil.Process(server.proc.pid).children(recursive=True)],
                         key=lambda p: p.memory_info().rss)
            ready = worker.memory_info().rss
            started = time.perf_counter()
            answer = post(server, data)
            report[task] = {"ready_mb": round(ready / 2**20), "peak_mb": round(_peak(worker.pid) / 2**20),
                            "s": round(time.perf_counter() - started, 1), "tiles": answer["metadata"]["slices"],
                            "detections": len(answer["images"][0]["results"])}
        finally:
            server.stop()
    return report


def _peak(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM")


def main() -> None:
    import importlib.util

    weights = str(Path(list(importlib.util.find_spec("fall_detection").submodule_search_locations)[0]) / "models" / "best.pt")
    rounds = int(os.environ.get("BENCH_ROUNDS", "3"))
    sections = {"speed": lambda tmp: speed(weights, tmp, rounds), "merges": lambda tmp: merges(weights),
                "memory": lambda tmp: peak_memory(weights, tmp)}
    chosen = sys.argv[1:] or list(sections)  # `python bench/slicing.py speed` runs one section
    with tempfile.TemporaryDirectory(prefix="bench-slicing-") as tmp:
        report = {name: sections[name](Path(tmp)) for name in chosen}
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
