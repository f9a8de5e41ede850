"""HUB v1 and Roboflow answers for every task against the real server, equal to the conversions of a local
`YOLO(weights).predict(...)` on the same image and parameters (the conversions themselves are pinned to the Results'
tensors per task in test_dialect_encoders.py; detect is covered in test_dialects.py)."""

from __future__ import annotations

import base64
import warnings
from functools import lru_cache

import pytest
import requests

from function.dialects import hub, roboflow
from function.encode.views import View

pytestmark = pytest.mark.integration

RANDOM = ("detection_id", "inference_id", "time")


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


@pytest.mark.parametrize("task", ["segment", "pose", "classify", "obb"])
def test_hub_and_roboflow_answers_per_task(start_server, weights, bus_jpg, task):
    from inference_sdk import InferenceHTTPClient

    server = start_server({"MODEL": str(weights[task])})
    model = _yolo(str(weights[task]))
    try:
        hub_body = requests.post(f"{server.url}/v1/predict/any", files={"image": bus_jpg.open("rb")},
                                 data={"size": "640", "confidence": "0.25", "iou": "0.45"}, timeout=120).json()
        local = model.predict(str(bus_jpg), imgsz=640, conf=0.25, iou=0.45, verbose=False)[0]
        assert hub_body["data"] == hub.hub_data(View(local, task))

        raw = base64.b64encode(bus_jpg.read_bytes())
        hosted = requests.post(f"{server.url}/project/1", params={"confidence": "30", "overlap": "50"}, data=raw, timeout=120)
        local = model.predict(str(bus_jpg), conf=0.3, iou=0.5, verbose=False)[0]
        expected = without_random(roboflow.inference_response(View(local, task), roboflow.roboflow_params(0.3, 0.5, None, ()), 0.0))
        assert without_random(hosted.json()) == expected

        warnings.simplefilter("ignore")
        sdk = InferenceHTTPClient(api_url=server.url, api_key="any").infer(str(bus_jpg), model_id="project/1")
        local = model.predict(str(bus_jpg), conf=0.4, iou=0.3, verbose=False)[0]
        assert without_random(sdk) == without_random(roboflow.inference_response(View(local, task), roboflow.roboflow_params(0.4, 0.3, None, ()), 0.0))
    finally:
        assert server.stop() == 0
