"""Every task's response equals Ultralytics' own summary() for the same weights, image and parameters."""

from __future__ import annotations

import pytest
import requests
from conftest import local_summary

pytestmark = pytest.mark.integration

EXPECTED_KEYS = {
    "detect": ["name", "class", "confidence", "box"],
    "segment": ["name", "class", "confidence", "box", "segments"],
    "pose": ["name", "class", "confidence", "box", "keypoints"],
    "obb": ["name", "class", "confidence", "box"],
    "classify": ["name", "class", "confidence"],
}


@pytest.mark.parametrize("task", ["segment", "pose", "classify", "obb"])
def test_task_parity(task_server, weights, bus_jpg, zidane_jpg, task):
    server = task_server(task)  # the session's plain server for these weights (it is stopped, and checked, at the end)
    ready = requests.get(server.url + "/readyz", timeout=5).json()
    assert ready == {"status": "ready", "model": weights[task].name, "task": task}
    for image, fields in ((bus_jpg, {}), (zidane_jpg, {"conf": "0.5", "imgsz": "320", "normalize": "true", "decimals": "3"})):
        response = requests.post(server.url + "/predict", files={"file": image.open("rb")}, data=fields, timeout=60)
        assert response.status_code == 200, response.text
        results = response.json()["images"][0]["results"]
        local = {"conf": float(fields.get("conf", 0.25)), "imgsz": int(fields.get("imgsz", 640)),
                 "normalize": fields.get("normalize") == "true", "decimals": int(fields.get("decimals", 5))}
        assert results == local_summary(weights[task], str(image), **local)
        if image == bus_jpg:
            assert results, f"{task} model gives results on bus.jpg"
            assert all(list(r) == EXPECTED_KEYS[task] for r in results)
    if task == "classify":
        assert len(results) == 5
    if task == "obb":
        assert set(results[0]["box"]) == {f"{a}{i}" for a in "xy" for i in range(1, 5)}
    if task == "pose":
        assert set(results[0]["keypoints"]) == {"x", "y", "visible"} and len(results[0]["keypoints"]["x"]) == 17
    if task == "segment":
        assert len(results[0]["segments"]["x"]) == len(results[0]["segments"]["y"]) > 2
