"""Every seed's client, as written, against the real server: only the URL and the key are changed.

HUB v1 (seeds 000, 001, 002), Roboflow's hosted API (004: the curl and base64 body, the URL form, multipart) and
Roboflow's own client, inference-sdk, in both of its modes; several images per request; annotated images; each
dialect's errors in its own shape, and the server alive after bad input.
"""

from __future__ import annotations

import base64
import io
import shlex
import subprocess
import threading
import warnings
from functools import lru_cache
from http.server import ThreadingHTTPServer

import pytest
import requests
from conftest import IMAGE_HOST, KEYS, MODEL_ID, local_summary
from PIL import Image
from test_api import _ImageHost

pytestmark = pytest.mark.integration

KEY = KEYS[1]


@pytest.fixture(scope="module")
def server(keyed_server):
    """The session's detect server with API keys, answering to MODEL_ID, fetching sources from IMAGE_HOST only."""
    return keyed_server


@pytest.fixture(scope="module")
def image_host(bus_jpg):
    _ImageHost.image = bus_jpg.read_bytes()
    httpd = ThreadingHTTPServer((IMAGE_HOST, 0), _ImageHost)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://{IMAGE_HOST}:{httpd.server_port}"
    httpd.shutdown()


@lru_cache(maxsize=None)
def _yolo(path: str):
    from ultralytics import YOLO

    return YOLO(path)


def local(weights, image, **params):
    """The local Results a user would compare with: YOLO(weights).predict(image, ...)[0]."""
    return _yolo(str(weights["detect"])).predict(str(image), verbose=False, **params)[0]


def alive(server):
    assert requests.get(server.url + "/healthz", timeout=5).status_code == 200


def curl(command: str) -> str:
    """Run a seed's curl command line as written (through a shell: pipes and line continuations included)."""
    done = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


# -- HUB v1 -----------------------------------------------------------------------------------------------------------


def test_seed_000_and_001_python_snippet(server, weights, bus_jpg):
    url = f"{server.url}/v1/predict/{MODEL_ID}"
    headers = {"x-api-key": KEY}
    data = {"size": 640, "confidence": 0.25, "iou": 0.45}
    with open(bus_jpg, "rb") as image_file:
        files = {"image": image_file}
        response = requests.post(url, headers=headers, files=files, data=data, timeout=60)
    body = response.json()
    assert response.status_code == 200 and body["success"] is True and body["message"] == "Inference complete."
    result = local(weights, bus_jpg, imgsz=640, conf=0.25, iou=0.45)
    assert [d["class"] for d in body["data"]] == [int(c) for c in result.boxes.cls]
    assert body["data"][0]["name"] == result.names[int(result.boxes.cls[0])]
    for entry, xywhn, conf in zip(body["data"], result.boxes.xywhn.tolist(), result.boxes.conf.tolist()):
        assert set(entry) == {"class", "name", "confidence", "xcenter", "ycenter", "width", "height"}
        assert [entry[k] for k in ("xcenter", "ycenter", "width", "height")] == pytest.approx(xywhn, abs=1e-6)
        assert entry["confidence"] == pytest.approx(conf, abs=1e-6)


def test_seed_000_curl_and_the_url_field(server, weights, bus_jpg, image_host):
    out = curl(f'''curl -X POST "{server.url}/v1/predict/{MODEL_ID}" \\
  -H "x-api-key: {KEY}" \\
  -F "image=@{bus_jpg}" \\
  -F "size=640" \\
  -F "confidence=0.25" \\
  -F "iou=0.45"''')
    import json

    body = json.loads(out)
    assert body["success"] and len(body["data"]) == len(local(weights, bus_jpg, iou=0.45).boxes)
    by_url = requests.post(f"{server.url}/v1/predict/{MODEL_ID}", headers={"x-api-key": KEY},
                           data={"url": f"{image_host}/bus.jpg", "normalize": "true"}, timeout=60).json()
    assert by_url["data"] == body["data"]


def test_seed_002_file_requests_get_the_platform_shape(server, weights, bus_jpg):
    url = f"{server.url}/v1/predict/{MODEL_ID}"
    headers = {"x-api-key": KEY}
    data = {"imgsz": 640, "conf": 0.25, "iou": 0.45}
    with open(bus_jpg, "rb") as image_file:
        files = {"file": image_file}
        response = requests.post(url, headers=headers, files=files, data=data, timeout=60)
    body = response.json()
    assert list(body) == ["images", "metadata"]
    assert body["images"][0]["results"] == local_summary(weights["detect"], str(bus_jpg), conf=0.25, iou=0.45, imgsz=640)
    assert body["metadata"]["task"] == "detect" and body["metadata"]["imageCount"] == 1
    # Without `iou`, HUB's documented default (0.45) applies, not the Platform's 0.7.
    with open(bus_jpg, "rb") as image_file:
        default = requests.post(url, headers=headers, files={"file": image_file}, timeout=60).json()
    assert default["images"][0]["results"] == local_summary(weights["detect"], str(bus_jpg), iou=0.45)


def test_hub_errors(server, bus_jpg):
    url = f"{server.url}/v1/predict/{MODEL_ID}"
    missing_key = requests.post(url, files={"image": bus_jpg.open("rb")}, timeout=30)
    assert missing_key.status_code == 401
    assert missing_key.json()["success"] is False and "Unauthorized" in missing_key.json()["message"]
    other_model = requests.post(f"{server.url}/v1/predict/other", headers={"x-api-key": KEY}, files={"image": bus_jpg.open("rb")},
                                timeout=30)
    assert other_model.status_code == 404 and other_model.json()["success"] is False
    bad = requests.post(url, headers={"x-api-key": KEY}, files={"image": bus_jpg.open("rb")}, data={"size": "4000"}, timeout=30)
    assert bad.status_code == 400 and "'size'" in bad.json()["message"] and bad.json()["error"]["code"] == 400
    assert requests.post(url, headers={"x-api-key": KEY}, data={"confidence": "0.5"}, timeout=30).json()["success"] is False
    alive(server)


# -- Roboflow hosted API --------------------------------------------------------------------------------------------


def roboflow_expected(result) -> list[tuple]:
    return [(round((x1 + x2) / 2, 3), round((y1 + y2) / 2, 3), round(x2 - x1, 3), round(y2 - y1, 3), result.names[int(c)], int(c))
            for (x1, y1, x2, y2), c in zip(result.boxes.xyxy.tolist(), result.boxes.cls.tolist())]


def roboflow_seen(body) -> list[tuple]:
    return [(round(p["x"], 3), round(p["y"], 3), round(p["width"], 3), round(p["height"], 3), p["class"], p["class_id"])
            for p in body["predictions"]]


def test_seed_004_curl_with_a_base64_body(server, weights, bus_jpg):
    import json

    out = curl(f'''base64 {shlex.quote(str(bus_jpg))} | curl -d @- \\
    "{server.url}/{MODEL_ID}/42?api_key={KEY}"''')
    body = json.loads(out)
    assert set(body) == {"inference_id", "time", "image", "predictions"}
    assert body["image"] == {"width": 810, "height": 1080}
    assert roboflow_seen(body) == roboflow_expected(local(weights, bus_jpg, conf=0.4, iou=0.3))
    assert all(list(p) == ["x", "y", "width", "height", "confidence", "class", "class_id", "detection_id"] for p in body["predictions"])


def test_seed_004_url_form_and_axios_style_body(server, weights, bus_jpg, image_host):
    from urllib.parse import quote

    expected = roboflow_expected(local(weights, bus_jpg, conf=0.4, iou=0.3))
    import json

    out = curl(f'''curl -X POST "{server.url}/{MODEL_ID}/42?\\
api_key={KEY}&\\
image={quote(image_host + "/bus.jpg", safe="")}"''')
    assert roboflow_seen(json.loads(out)) == expected
    # Node's axios example: the base64 string as data, labelled x-www-form-urlencoded ('+' must survive).
    raw = base64.b64encode(bus_jpg.read_bytes()).decode()
    assert "+" in raw
    axios = requests.post(f"{server.url}/{MODEL_ID}/42", params={"api_key": KEY}, data=raw,
                          headers={"Content-Type": "application/x-www-form-urlencoded"}, timeout=60)
    assert roboflow_seen(axios.json()) == expected
    # Go's and PHP's examples send the base64 string with no Content-Type (Go) or a bare one; Kotlin's and Java's URL
    # examples post the URL itself as an urlencoded body, with the image URL in the query too.
    bare = requests.post(f"{server.url}/{MODEL_ID}/42?api_key={KEY}&name=YOUR_IMAGE.jpg", data=raw.encode(),
                         headers={"Accept": "application/json"}, timeout=60)
    assert "Content-Type" not in bare.request.headers and roboflow_seen(bare.json()) == expected
    upload_url = f"{server.url}/{MODEL_ID}/42?api_key={KEY}&image={quote(image_host + '/bus.jpg', safe='')}"
    kotlin = requests.post(upload_url, data=upload_url, headers={"Content-Type": "application/x-www-form-urlencoded"}, timeout=60)
    assert roboflow_seen(kotlin.json()) == expected
    multipart = requests.post(f"{server.url}/{MODEL_ID}/1", params={"api_key": KEY, "confidence": "50", "overlap": "45"},
                              files={"file": bus_jpg.open("rb")}, timeout=60)
    assert roboflow_seen(multipart.json()) == roboflow_expected(local(weights, bus_jpg, conf=0.5, iou=0.45))


def test_roboflow_formats_and_filters(server, weights, bus_jpg, zidane_jpg):
    raw = base64.b64encode(zidane_jpg.read_bytes())
    url = f"{server.url}/{MODEL_ID}/3"
    image = requests.post(url, params={"api_key": KEY, "format": "image", "labels": "true", "stroke": "3"}, data=raw, timeout=60)
    assert image.status_code == 200 and image.headers["Content-Type"] == "image/jpeg"
    assert Image.open(io.BytesIO(image.content)).size == (1280, 720)
    both = requests.post(url, params={"api_key": KEY, "format": "image_and_json"}, data=raw, timeout=60).json()
    assert Image.open(io.BytesIO(base64.b64decode(both["visualization"]))).size == (1280, 720)
    assert both["predictions"]
    falls = requests.post(url, params={"api_key": KEY, "classes": "Fall", "confidence": "1"}, data=raw, timeout=60).json()
    assert all(p["class"] == "Fall" for p in falls["predictions"])
    assert roboflow_seen(falls) == roboflow_expected(local(weights, zidane_jpg, conf=0.01, iou=0.3, classes=[1]))
    capped = requests.post(url, params={"api_key": KEY, "max_detections": "1", "confidence": "1"}, data=raw, timeout=60).json()
    assert len(capped["predictions"]) == 1


def test_roboflow_errors_and_bad_input(server, bus_jpg):
    raw = base64.b64encode(bus_jpg.read_bytes())
    url = f"{server.url}/{MODEL_ID}/42"
    for params in ({"api_key": "wrong"}, {}):
        refused = requests.post(url, params=params, data=raw, timeout=30)
        assert refused.status_code == 403 and refused.json() == {"Message": "User is not authorized to access this resource"}
    cases = [
        ({"confidence": "400"}, raw, 400, "'confidence'"),
        ({"overlap": "abc"}, raw, 400, "'overlap'"),
        ({"format": "xml"}, raw, 400, "'format'"),
        ({}, b"this is not base64 !!!", 400, "base64"),
        ({}, base64.b64encode(b"plain text, not an image"), 415, "Not an image"),
        ({}, b"", 400, "No image"),
        ({"classes": "unicorn"}, raw, 400, "unicorn"),
    ]
    for params, body, status, words in cases:
        response = requests.post(url, params={"api_key": KEY, **params}, data=body, timeout=30)
        assert response.status_code == status, (params, response.text)
        assert list(response.json()) == ["message"] and words in response.json()["message"]
    other = requests.post(f"{server.url}/other-project/1", params={"api_key": KEY}, data=raw, timeout=30)
    assert other.status_code == 404 and "message" in other.json()
    assert requests.post(f"{server.url}/{MODEL_ID}/v2", params={"api_key": KEY}, data=raw, timeout=30).status_code == 404
    alive(server)


# -- inference-sdk, Roboflow's own client ------------------------------------------------------------------------------


def sdk_client(server, key=KEY):
    warnings.simplefilter("ignore")
    from inference_sdk import InferenceHTTPClient

    return InferenceHTTPClient(api_url=server.url, api_key=key)


@pytest.mark.parametrize("mode", ["v1", "v0"])
def test_inference_sdk_in_both_modes(server, weights, bus_jpg, zidane_jpg, mode):
    from inference_sdk import InferenceConfiguration

    client = sdk_client(server)
    if mode == "v0":
        client.select_api_v0()
    result = client.infer(str(bus_jpg), model_id=f"{MODEL_ID}/1")
    assert roboflow_seen(result) == roboflow_expected(local(weights, bus_jpg, conf=0.4, iou=0.3))
    both = client.infer([str(bus_jpg), str(zidane_jpg)], model_id=f"{MODEL_ID}/1")
    assert [roboflow_seen(r) for r in both] == [roboflow_seen(result), roboflow_expected(local(weights, zidane_jpg, conf=0.4, iou=0.3))]
    client.configure(InferenceConfiguration(confidence_threshold=0.6, iou_threshold=0.5, format="image_and_json",
                                            visualize_predictions=True))
    tuned = client.infer(str(bus_jpg), model_id=f"{MODEL_ID}/1")
    assert roboflow_seen(tuned) == roboflow_expected(local(weights, bus_jpg, conf=0.6, iou=0.5))
    assert tuned["visualization"], "the annotated image comes back"


def test_inference_sdk_registry_and_refusals(server):
    from inference_sdk.http.errors import HTTPCallErrorError

    client = sdk_client(server)
    registered = client.load_model(f"{MODEL_ID}/7")
    assert {m.model_id: m.task_type for m in registered.models}[f"{MODEL_ID}/7"] == "object-detection"
    assert client.list_loaded_models().models[0].model_id == MODEL_ID
    with pytest.raises(HTTPCallErrorError) as refused:
        client.load_model("someone-else/1")
    assert refused.value.status_code == 404
    with pytest.raises(HTTPCallErrorError) as wrong_key:
        sdk_client(server, "wrong").infer(base64.b64encode(b"x").decode(), model_id=f"{MODEL_ID}/1")
    assert wrong_key.value.status_code == 401
    wrong_task = requests.post(f"{server.url}/infer/classification", timeout=60, json={
        "model_id": f"{MODEL_ID}/1", "api_key": KEY, "image": {"type": "base64", "value": base64.b64encode(b"x").decode()}})
    # Refused from the route alone, before the image is even decoded (it is not one): a 400 naming the right route.
    assert wrong_task.status_code == 400 and list(wrong_task.json()) == ["message"]
    assert wrong_task.json()["message"] == "This endpoint's model is object-detection: use /infer/object_detection"
    alive(server)


# -- the Platform's dedicated-endpoint features ------------------------------------------------------------------------


def test_several_images_in_one_request_keep_their_order(server, weights, bus_jpg, zidane_jpg):
    files = [("file", bus_jpg.open("rb")), ("file", zidane_jpg.open("rb")), ("file", bus_jpg.open("rb"))]
    body = requests.post(f"{server.url}/predict", headers={"x-api-key": KEY}, files=files, data={"conf": "0.3"}, timeout=120).json()
    assert body["metadata"]["imageCount"] == 3
    assert [image["shape"] for image in body["images"]] == [[1080, 810], [720, 1280], [1080, 810]]
    assert [image["results"] for image in body["images"]] == [
        local_summary(weights["detect"], str(path), conf=0.3) for path in (bus_jpg, zidane_jpg, bus_jpg)]
    too_many = requests.post(f"{server.url}/predict", headers={"x-api-key": KEY}, timeout=60,
                             files=[("file", ("a.jpg", b"\xff\xd8\xff"))] * 17)
    assert too_many.status_code == 413 and "MAX_IMAGES=16" in too_many.json()["error"]["message"]


def test_platform_format_image_classes_and_max_det(server, weights, zidane_jpg):
    headers = {"Authorization": f"Bearer {KEY}"}
    image = requests.post(f"{server.url}/predict", headers=headers, files={"file": zidane_jpg.open("rb")},
                          data={"format": "image", "show_conf": "false", "line_width": "4"}, timeout=60)
    assert image.headers["Content-Type"] == "image/jpeg" and Image.open(io.BytesIO(image.content)).size == (1280, 720)
    filtered = requests.post(f"{server.url}/predict", headers=headers, files={"file": zidane_jpg.open("rb")},
                             data={"classes": "Normal", "max_det": "2", "conf": "0.01"}, timeout=60).json()
    assert filtered["images"][0]["results"] == local_summary(weights["detect"], str(zidane_jpg), conf=0.01, classes=[0], max_det=2)
    by_id = requests.post(f"{server.url}/predict", headers=headers, files={"file": zidane_jpg.open("rb")},
                          params={"classes": "0", "max_det": "2", "conf": "0.01"}, timeout=60).json()
    assert by_id["images"][0]["results"] == filtered["images"][0]["results"]
    for data, words in (({"classes": "dog"}, "'classes'"), ({"max_det": "0"}, "'max_det'"), ({"format": "png"}, "'format'"),
                        ({"line_width": "x"}, "'line_width'")):
        bad = requests.post(f"{server.url}/predict", headers=headers, files={"file": zidane_jpg.open("rb")}, data=data, timeout=60)
        assert bad.status_code == 400 and words in bad.json()["error"]["message"]
    alive(server)
