"""Semantic segmentation and depth in every dialect, against the real server: rows equal Ultralytics' summary() of the
same model run locally on the same file, the class-id PNG equals `Results.semantic_mask` pixel for pixel, the depth PNG
gives `Results.depth` back within one quantisation step of its `bits`, with `min`/`max` exact. The models are
Ultralytics' own YAMLs with seeded noise on every weight (conftest), so their maps hold several classes and a real
range of depths."""

from __future__ import annotations

import base64
import warnings
from functools import lru_cache

import numpy as np
import pytest
import requests
from test_video import write_video

from function.encode import maps

pytestmark = pytest.mark.integration


@lru_cache(maxsize=None)
def _yolo(path: str):
    from ultralytics import YOLO

    return YOLO(path)


def local(weights, task: str, image, **params):
    return _yolo(str(weights[task])).predict(str(image), verbose=False, **params)[0]


def png_pixels(data: str) -> np.ndarray:
    import cv2

    pixels = cv2.imdecode(np.frombuffer(base64.b64decode(data), np.uint8), cv2.IMREAD_UNCHANGED)
    assert pixels is not None and pixels.ndim == 2, "a grayscale PNG"
    return pixels


def jpeg_size(content: bytes) -> tuple[int, int]:
    import cv2

    assert content[:3] == b"\xff\xd8\xff"
    height, width = cv2.imdecode(np.frombuffer(content, np.uint8), cv2.IMREAD_COLOR).shape[:2]
    return height, width


@pytest.fixture(scope="module")
def semantic(task_server):
    return task_server("semantic")  # the session's plain server for the semantic weights


@pytest.fixture(scope="module")
def depth(task_server):
    return task_server("depth")


# -- semantic ---------------------------------------------------------------------------------------------------------


def test_the_test_model_paints_several_classes(weights, bus_jpg):
    assert len(np.unique(local(weights, "semantic", bus_jpg).semantic_mask.data.numpy())) >= 3


@pytest.mark.parametrize("fields", [{}, {"imgsz": "320", "normalize": "true", "decimals": "3"}, {"classes": "10,14"}])
def test_platform_semantic_rows_and_mask_equal_ultralytics(semantic, weights, bus_jpg, fields):
    response = requests.post(semantic.url + "/predict", files={"file": bus_jpg.open("rb")}, data=fields, timeout=120)
    assert response.status_code == 200, response.text
    body = response.json()
    params = {"imgsz": int(fields.get("imgsz", 640))}
    if "classes" in fields:
        params["classes"] = [int(c) for c in fields["classes"].split(",")]
    result = local(weights, "semantic", bus_jpg, **params)
    image = body["images"][0]
    assert body["metadata"]["task"] == "semantic"
    assert image["results"] == result.summary(normalize=fields.get("normalize") == "true",
                                              decimals=int(fields.get("decimals", 5)))
    assert all(list(row) == ["name", "class", "pixel_ratio"] for row in image["results"])
    mask = image["semantic_mask"]
    assert mask["encoding"] == "png" and mask["shape"] == image["shape"] == list(result.orig_shape)
    assert np.array_equal(png_pixels(mask["data"]), result.semantic_mask.data.numpy())
    if "classes" in fields:
        assert set(np.unique(png_pixels(mask["data"]))) <= {10, 14, 255}, "excluded pixels are 255, as Ultralytics marks"


@pytest.mark.parametrize("task", ["semantic", "depth"])
def test_format_image_is_a_jpeg_of_the_input_size(task, request, bus_jpg):
    server = request.getfixturevalue(task)
    response = requests.post(server.url + "/predict", files={"file": bus_jpg.open("rb")}, data={"format": "image"},
                             timeout=120)
    assert response.status_code == 200 and response.headers["content-type"] == "image/jpeg"
    assert jpeg_size(response.content) == (1080, 810)


def test_hub_v1_semantic_data_is_the_summary(semantic, weights, bus_jpg):
    body = requests.post(f"{semantic.url}/v1/predict/any", files={"image": bus_jpg.open("rb")}, timeout=120).json()
    result = local(weights, "semantic", bus_jpg, iou=0.45)
    assert body["success"] is True and body["data"] == result.summary()
    assert np.array_equal(png_pixels(body["semantic_mask"]["data"]), result.semantic_mask.data.numpy())


def test_roboflow_semantic_hosted_and_server(semantic, weights, bus_jpg):
    result = local(weights, "semantic", bus_jpg)
    names = {str(i): name for i, name in result.names.items()}
    raw = base64.b64encode(bus_jpg.read_bytes())
    hosted = requests.post(f"{semantic.url}/project/1", data=raw, timeout=120).json()
    served = requests.post(f"{semantic.url}/infer/semantic_segmentation", timeout=120, json={
        "model_id": "project/1", "api_key": "any", "image": {"type": "base64", "value": raw.decode()}}).json()
    for body in (hosted, served):
        assert body["image"] == {"width": 810, "height": 1080}
        assert set(body["predictions"]) == {"segmentation_mask", "class_map"}
        assert body["predictions"]["class_map"] == names
        assert np.array_equal(png_pixels(body["predictions"]["segmentation_mask"]), result.semantic_mask.data.numpy())
    wrong = requests.post(f"{semantic.url}/infer/object_detection", timeout=30, json={
        "model_id": "project/1", "api_key": "any", "image": {"type": "base64", "value": raw.decode()}})
    assert wrong.status_code == 400 and "/infer/semantic_segmentation" in wrong.json()["message"]
    registry = requests.get(f"{semantic.url}/model/registry", timeout=30).json()
    assert registry["models"][0]["task_type"] == "semantic-segmentation"


def test_semantic_video_frames_equal_ultralytics(semantic, weights, bus_jpg, tmp_path):
    video = write_video(tmp_path / "walk.mp4", bus_jpg, 3, "mp4v")
    response = requests.post(semantic.url + "/predict", files={"file": video.open("rb")}, data={"imgsz": "320"},
                             timeout=120)
    assert response.status_code == 200, response.text
    frames = list(_yolo(str(weights["semantic"])).predict(str(video), stream=True, verbose=False, imgsz=320))
    images = response.json()["images"]
    assert [image["results"] for image in images] == [frame.summary() for frame in frames]
    for image, frame in zip(images, frames):
        assert np.array_equal(png_pixels(image["semantic_mask"]["data"]), frame.semantic_mask.data.numpy())


# -- depth ------------------------------------------------------------------------------------------------------------


def valid_range(result) -> tuple[float, float]:
    d = result.depth.data.numpy()
    valid = d[d > 0]
    return float(valid.min()), float(valid.max())


def test_the_test_model_sees_a_range_of_depths(weights, bus_jpg):
    low, high = valid_range(local(weights, "depth", bus_jpg))
    assert high > 10 * low


@pytest.mark.parametrize("bits", [8, 12, 16])
def test_platform_depth_reconstructs_ultralytics_within_a_step(depth, weights, bus_jpg, bits):
    fields = {"bits": str(bits), "conf": "0.9", "iou": "0.1"}  # conf and iou are accepted and change nothing
    response = requests.post(depth.url + "/predict", files={"file": bus_jpg.open("rb")}, data=fields, timeout=120)
    assert response.status_code == 200, response.text
    image = response.json()["images"][0]
    result = local(weights, "depth", bus_jpg)
    assert image["results"] == result.summary() == []
    answer = image["depth"]
    assert answer["encoding"] == "png" and answer["bits"] == bits
    assert (answer["min"], answer["max"]) == valid_range(result), "min and max exact"
    assert answer["shape"] == [640, 480], "inference resolution: long side imgsz, aspect kept"
    pixels = png_pixels(answer["data"])
    assert pixels.dtype == (np.uint8 if bits == 8 else np.uint16) and list(pixels.shape) == answer["shape"]
    decoded = pixels * answer["max"] / (255 if bits == 8 else 65535)
    truth = maps.sample(result.depth.data.numpy(), (640, 480))  # each pixel: the depth at its cell's centre
    step = answer["max"] / {8: 255, 12: 4095, 16: 65535}[bits]
    assert np.abs(decoded - truth).max() <= step, "within one quantisation step"
    assert (pixels > 0).all(), "every pixel of this map has a depth"


def test_depth_refuses_bad_bits_and_video(depth, bus_jpg, tmp_path):
    for bits in ("10", "abc", "8.0"):
        response = requests.post(depth.url + "/predict", files={"file": bus_jpg.open("rb")}, data={"bits": bits},
                                 timeout=30)
        assert response.status_code == 400 and "'bits' must be 8, 12 or 16" in response.json()["error"]["message"]
    video = write_video(tmp_path / "walk.mp4", bus_jpg, 3, "mp4v")
    response = requests.post(depth.url + "/predict", files={"file": video.open("rb")}, timeout=30)
    assert response.status_code == 400
    assert "images only" in response.json()["error"]["message"]


def test_hub_v1_depth_has_no_rows_and_the_platform_map(depth, weights, bus_jpg):
    body = requests.post(f"{depth.url}/v1/predict/any", files={"image": bus_jpg.open("rb")}, data={"bits": "16"},
                         timeout=120).json()
    assert body["success"] is True and body["data"] == []
    assert (body["depth"]["min"], body["depth"]["max"]) == valid_range(local(weights, "depth", bus_jpg))
    assert body["depth"]["bits"] == 16


def nearness_truth(result) -> np.ndarray:
    low, high = valid_range(result)
    return (high - maps.sample(result.depth.data.numpy().astype(np.float64), (640, 480))) / (high - low)


def test_roboflow_hosted_depth_is_nearness_png16_by_default(depth, weights, bus_jpg):
    raw = base64.b64encode(bus_jpg.read_bytes())
    truth = nearness_truth(local(weights, "depth", bus_jpg))
    for fmt, levels in ((None, 65535), ("png8", 255)):
        params = {"depth_map_format": fmt} if fmt else {}
        body = requests.post(f"{depth.url}/project/1", params=params, data=raw, timeout=120).json()
        assert body["depth_map_format"] == (fmt or "png16")
        pixels = png_pixels(body["normalized_depth"])
        assert np.abs(pixels / levels - truth).max() <= 0.5 / levels + 1e-9
    as_json = requests.post(f"{depth.url}/project/1", params={"depth_map_format": "json"}, data=raw, timeout=120).json()
    assert np.abs(np.array(as_json["normalized_depth"]) - truth).max() <= 1e-6
    bad = requests.post(f"{depth.url}/project/1", params={"depth_map_format": "tiff"}, data=raw, timeout=30)
    assert bad.status_code == 400 and "depth_map_format" in bad.json()["message"]


def test_inference_sdk_depth_estimation(depth, weights, bus_jpg):
    from inference_sdk import InferenceHTTPClient

    warnings.simplefilter("ignore")
    client = InferenceHTTPClient(api_url=depth.url, api_key="any")
    body = client.depth_estimation(str(bus_jpg), model_id="project/1", depth_map_format="png16")
    truth = nearness_truth(local(weights, "depth", bus_jpg))
    assert isinstance(body["normalized_depth"], np.ndarray), "inference-sdk decodes our PNG"
    assert np.abs(body["normalized_depth"] - truth).max() <= 0.5 / 65535 + 1e-6
    registry = requests.get(f"{depth.url}/model/registry", timeout=30).json()
    assert registry["models"][0]["task_type"] == "depth-estimation"


# -- the OpenAPI document describes these answers -----------------------------------------------------------------------


def assert_documented(body, schema: str):
    """The body validates against the server's own OpenAPI schema (schemathesis' random bodies never decode as an
    image, so the per-pixel answers are checked here, from real requests)."""
    import jsonschema_rs

    from function.http.openapi import document

    root = {**document(), "$ref": f"#/components/schemas/{schema}"}
    jsonschema_rs.Draft202012Validator(root).validate(body)


@pytest.mark.parametrize("task", ["semantic", "depth"])
def test_every_dialect_answer_is_documented(request, task, bus_jpg):
    import jsonschema_rs

    server = request.getfixturevalue(task)
    raw = base64.b64encode(bus_jpg.read_bytes()).decode()
    route = "semantic_segmentation" if task == "semantic" else "depth-estimation"
    platform = requests.post(server.url + "/predict", files={"file": bus_jpg.open("rb")}, data={"bits": "12"},
                             timeout=120).json()
    assert_documented(platform, "PlatformResponse")
    assert_documented(requests.post(f"{server.url}/v1/predict/any", files={"image": bus_jpg.open("rb")},
                                    timeout=120).json(), "HubEnvelope")
    for fmt in ("png16", "json"):
        assert_documented(requests.post(f"{server.url}/project/1", params={"depth_map_format": fmt}, data=raw,
                                        timeout=120).json(), "RoboflowResponse")
    served = requests.post(f"{server.url}/infer/{route}", timeout=120, json={
        "model_id": "project/1", "image": [{"type": "base64", "value": raw}], "visualize_predictions": True}).json()
    assert isinstance(served, list) and len(served) == 1
    assert_documented(served[0], "RoboflowResponse")
    key = "semantic_mask" if task == "semantic" else "depth"
    with pytest.raises(jsonschema_rs.ValidationError):  # the schema does check: a wrong map fails it
        assert_documented({**platform, "images": [{**platform["images"][0], key: {"encoding": "jpeg"}}]},
                          "PlatformResponse")
