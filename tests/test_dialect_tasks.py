"""HUB v1 and Roboflow answers for every task against the real server, equal to what each API documents, built here
straight from the tensors of a local `YOLO(weights).predict(...)` on the same image and parameters (never from the
service's own encoders: test_dialect_encoders.py pins those, without a server; detect is covered in test_dialects.py).

HUB v1, seed 001: per detection `class`, `name`, `confidence` and, by task, the normalized centre and size (detect),
the 4 normalized corners flat (`obb`), the normalized mask outline flat (`segment`), or (x, y, confidence) triples of
normalized keypoints flat (`keypoints`); classify: the top 5. Roboflow (roboflow/inference's response entities):
centre-point pixel boxes with `class`, `class_id`, `confidence`, `detection_id`; segments add pixel `points` and
`mask_format`; keypoints add `{x, y, confidence, class_id, class}` (COCO's names for a 17-point skeleton); OBB adds its
corners as `points`; classification lists every class by confidence with `top` and `confidence`."""

from __future__ import annotations

import base64
import math
import warnings
from functools import lru_cache

import pytest
import requests

pytestmark = pytest.mark.integration

RANDOM = ("detection_id", "inference_id", "time")
COCO_KEYPOINTS = ("nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
                  "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee",
                  "right_knee", "left_ankle", "right_ankle")


@lru_cache(maxsize=None)
def _yolo(path: str):
    from ultralytics import YOLO

    return YOLO(path)


def without_random(body):
    if isinstance(body, list):
        return [without_random(item) for item in body]
    if isinstance(body, dict):
        return {k: without_random(v) for k, v in body.items() if k not in RANDOM}
    return body


def assert_close(actual, expected, path="body"):
    """Equal structure, keys and strings; numbers within float noise (1e-6 relative)."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict) and set(actual) == set(expected), (path, actual, expected)
        for key in expected:
            assert_close(actual[key], expected[key], f"{path}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), (path, actual, expected)
        for i, (a, e) in enumerate(zip(actual, expected)):
            assert_close(a, e, f"{path}[{i}]")
    elif isinstance(expected, float):
        assert isinstance(actual, (int, float)) and math.isclose(actual, expected, rel_tol=1e-6, abs_tol=1e-9), \
            (path, actual, expected)
    else:
        assert actual == expected and type(actual) is type(expected), (path, actual, expected)


def _boxes(result, task):
    return result.obb if task == "obb" else result.boxes


def hub_documented(result, task: str) -> list[dict]:
    """Seed 001's `data`, from the Results' tensors."""
    if task == "classify":
        return [{"class": int(i), "name": result.names[int(i)], "confidence": float(result.probs.data[int(i)])}
                for i in result.probs.top5]
    boxes, data = _boxes(result, task), []
    for row, (cls, conf) in enumerate(zip(boxes.cls.tolist(), boxes.conf.tolist())):
        entry = {"class": int(cls), "name": result.names[int(cls)], "confidence": float(conf)}
        if task == "obb":
            entry["obb"] = boxes.xyxyxyxyn[row].reshape(-1).tolist()
        elif task == "segment":
            entry["segment"] = result.masks.xyn[row].reshape(-1).tolist()
        elif task == "pose":
            xy, conf_k = result.keypoints.xyn[row].tolist(), result.keypoints.conf[row].tolist()
            entry["keypoints"] = [v for (x, y), c in zip(xy, conf_k) for v in (x, y, c)]
        data.append(entry)
    return data


def roboflow_documented(result, task: str) -> dict:
    """Roboflow's answer without its random fields (inference_id, time, detection_id), from the Results' tensors."""
    height, width = (int(v) for v in result.orig_shape)
    body = {"image": {"width": width, "height": height}}
    if task == "classify":
        scores = result.probs.data.tolist()
        ranked = sorted(range(len(scores)), key=lambda i: -scores[i])
        predictions = [{"class": result.names[i], "class_id": i, "confidence": scores[i]} for i in ranked]
        return {**body, "predictions": predictions, "top": predictions[0]["class"],
                "confidence": predictions[0]["confidence"]}
    boxes, predictions = _boxes(result, task), []
    for row, ((x1, y1, x2, y2), cls, conf) in enumerate(zip(boxes.xyxy.tolist(), boxes.cls.tolist(),
                                                           boxes.conf.tolist())):
        entry = {"x": (x1 + x2) / 2, "y": (y1 + y2) / 2, "width": x2 - x1, "height": y2 - y1, "confidence": conf,
                 "class": result.names[int(cls)], "class_id": int(cls)}
        if task == "obb":
            entry["points"] = [{"x": x, "y": y} for x, y in boxes.xyxyxyxy[row].tolist()]
        elif task == "segment":
            entry["points"] = [{"x": x, "y": y} for x, y in result.masks.xy[row].tolist()]
            entry["mask_format"] = "polygon"
        elif task == "pose":
            xy, conf_k = result.keypoints.xy[row].tolist(), result.keypoints.conf[row].tolist()
            names = COCO_KEYPOINTS if len(xy) == 17 else tuple(str(k) for k in range(len(xy)))
            entry["keypoints"] = [{"x": x, "y": y, "confidence": c, "class_id": k, "class": names[k]}
                                  for k, ((x, y), c) in enumerate(zip(xy, conf_k))]
        predictions.append(entry)
    return {**body, "predictions": predictions}


@pytest.mark.parametrize("task", ["segment", "pose", "classify", "obb"])
def test_hub_and_roboflow_answers_per_task(task_server, weights, bus_jpg, task):
    from inference_sdk import InferenceHTTPClient

    server = task_server(task)
    model = _yolo(str(weights[task]))
    hub_body = requests.post(f"{server.url}/v1/predict/any", files={"image": bus_jpg.open("rb")},
                             data={"size": "640", "confidence": "0.25", "iou": "0.45"}, timeout=120).json()
    local = model.predict(str(bus_jpg), imgsz=640, conf=0.25, iou=0.45, verbose=False)[0]
    assert hub_body["success"] is True and hub_body["data"], f"the {task} model finds something in bus.jpg"
    assert_close(hub_body["data"], hub_documented(local, task))

    raw = base64.b64encode(bus_jpg.read_bytes())
    hosted = requests.post(f"{server.url}/project/1", params={"confidence": "30", "overlap": "50"}, data=raw, timeout=120)
    local = model.predict(str(bus_jpg), conf=0.3, iou=0.5, verbose=False)[0]
    assert_close(without_random(hosted.json()), roboflow_documented(local, task))
    if task != "classify":
        assert all(len(p["detection_id"]) == 36 for p in hosted.json()["predictions"]), "a uuid per detection"

    warnings.simplefilter("ignore")
    sdk = InferenceHTTPClient(api_url=server.url, api_key="any").infer(str(bus_jpg), model_id="project/1")
    local = model.predict(str(bus_jpg), conf=0.4, iou=0.3, verbose=False)[0]
    assert_close(without_random(sdk), roboflow_documented(local, task))
