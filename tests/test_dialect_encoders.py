"""Each dialect's encoder, per task, without a server: real Ultralytics Results from real weights, encoded, compared
with the seeds' documented key sets and with conversions read straight off the Results' tensors."""

from __future__ import annotations

import base64
import io
import time
from functools import lru_cache

import pytest
from PIL import Image

from function.core.requests import Frame, Prediction, PredictRequest
from function.dialects import Incoming, hub, platform, roboflow, roboflow_server
from function.encode.annotate import FONTS, FONTS_DIR, install_fonts
from function.errors import BadParameter, ModelNotFound, TooLarge, Unauthorized
from function.models.loaded import LoadedModel
from function.models.params import PredictParams
from function.settings import load_settings

TASKS = ["detect", "segment", "pose", "classify", "obb"]


@lru_cache(maxsize=None)
def _yolo(path: str):
    from ultralytics import YOLO

    return YOLO(path)


def local_result(weights, task: str, image, **params):
    return _yolo(str(weights[task])).predict(str(image), verbose=False, **params)[0]


def prediction(weights, task, result, **fields) -> Prediction:
    model = LoadedModel(yolo=None, name=weights[task].name, task=task, device="cpu", half=False, versions={"python": "3"})
    now = time.monotonic()
    return Prediction(results=[result], model=model, started=now, process_started=now - 5, **fields)


def incoming(**fields) -> Incoming:
    return Incoming(**{"method": "POST", "path": "/", **fields})


# -- HUB v1 -----------------------------------------------------------------------------------------------------------

HUB_KEYS = {  # seed 001, per task
    "detect": {"class", "name", "confidence", "xcenter", "ycenter", "width", "height"},
    "classify": {"class", "name", "confidence"},
    "obb": {"class", "name", "confidence", "obb"},
    "segment": {"class", "name", "confidence", "segment"},
    "pose": {"class", "name", "confidence", "keypoints"},
}


@pytest.mark.parametrize("task", TASKS)
def test_hub_v1_data_is_seed_001_per_task(weights, bus_jpg, task):
    result = local_result(weights, task, bus_jpg, iou=0.45)
    request = PredictRequest(images=(b"",), params=PredictParams(iou=0.45), options={"format": "json", "envelope": "hub"})
    body = hub.encode(request, prediction(weights, task, result)).body
    assert list(body) == ["success", "message", "data"] and body["success"] is True
    assert body["message"] == "Inference complete."
    data = body["data"]
    assert data, f"the {task} model finds something in bus.jpg"
    assert all(set(entry) == HUB_KEYS[task] for entry in data)
    if task == "classify":
        assert [d["class"] for d in data] == list(result.probs.top5)
        return
    boxes = result.obb if task == "obb" else result.boxes
    assert [d["class"] for d in data] == [int(c) for c in boxes.cls]
    assert [d["confidence"] for d in data] == pytest.approx(boxes.conf.tolist(), abs=1e-7)
    first = data[0]
    if task == "detect":
        assert [first[k] for k in ("xcenter", "ycenter", "width", "height")] == pytest.approx(boxes.xywhn[0].tolist())
    elif task == "obb":
        assert first["obb"] == pytest.approx(result.obb.xyxyxyxyn[0].reshape(-1).tolist()) and len(first["obb"]) == 8
    elif task == "segment":
        polygon = result.masks.xyn[0]
        assert first["segment"] == pytest.approx(polygon.reshape(-1).tolist()) and len(first["segment"]) == 2 * len(polygon)
    elif task == "pose":
        triples = [first["keypoints"][i:i + 3] for i in range(0, len(first["keypoints"]), 3)]
        assert len(triples) == 17
        assert [v for t in triples for v in t[:2]] == pytest.approx(result.keypoints.xyn[0].reshape(-1).tolist())
        assert [t[2] for t in triples] == pytest.approx(result.keypoints.conf[0].tolist())
    if task in ("detect", "segment"):  # (an untrained OBB model's corners may leave the image)
        values = [v for entry in data for k, v in entry.items() if k not in ("class", "name", "confidence")]
        flat = [x for v in values for x in (v if isinstance(v, list) else [v])]
        assert all(0 <= x <= 1 for x in flat), "seed 001 coordinates are normalized"


@pytest.mark.parametrize("normalize", [False, True])
def test_hub_v1_tojson_data_is_seed_000_results_tojson(weights, bus_jpg, normalize):
    import json

    result = local_result(weights, "segment", bus_jpg, iou=0.45)
    request = PredictRequest(images=(b"",), params=PredictParams(iou=0.45, normalize=normalize),
                             options={"format": "json", "envelope": "tojson"})
    body = hub.encode(request, prediction(weights, "segment", result)).body
    assert body["data"] == json.loads(result.to_json(normalize=normalize))


def test_hub_v1_file_requests_get_the_platform_shape_and_errors_carry_both_shapes(weights, bus_jpg):
    result = local_result(weights, "detect", bus_jpg, iou=0.45)
    request = PredictRequest(images=(b"",), params=PredictParams(iou=0.45), options={"format": "json"})
    body = hub.encode(request, prediction(weights, "detect", result)).body
    assert list(body) == ["images", "metadata"] and body["images"][0]["results"] == result.summary()
    reply = hub.error(Unauthorized("no key"))
    assert reply.status == 401 and reply.body["success"] is False and reply.body["message"] == "no key"
    assert reply.body["error"] == {"code": 401, "status": "Unauthorized", "message": "no key"}


def test_hub_v1_parse_tells_the_generations_apart():
    from function.dialects import Form, Upload

    old = incoming(form=Form(fields=[("size", "320"), ("confidence", "0.5")], files=[Upload("image", "a.jpg", "", b"x")]))
    new = incoming(form=Form(fields=[("imgsz", "320")], files=[Upload("file", "a.jpg", "", b"x")]))
    settings = load_settings({"MODEL": "m.pt", "HUB_V1_DATA": "tojson"}).dialects
    old.settings = settings
    parsed = hub.parse(old)
    assert parsed.options["envelope"] == "tojson" and parsed.params.imgsz == 320 and parsed.params.conf == 0.5
    assert parsed.params.iou == 0.45, "HUB's documented default"
    assert "envelope" not in hub.parse(new).options and hub.parse(new).params.iou == 0.45


# -- Roboflow ---------------------------------------------------------------------------------------------------------

ROBOFLOW_DETECTION = ["x", "y", "width", "height", "confidence", "class", "class_id", "detection_id"]
ROBOFLOW_KEYS = {
    "detect": ROBOFLOW_DETECTION,
    "obb": ROBOFLOW_DETECTION + ["points"],
    "segment": ROBOFLOW_DETECTION + ["points", "mask_format"],
    "pose": ROBOFLOW_DETECTION + ["keypoints"],
}


@pytest.mark.parametrize("task", TASKS)
def test_roboflow_response_per_task(weights, bus_jpg, task):
    result = local_result(weights, task, bus_jpg, conf=0.4, iou=0.3)
    request = PredictRequest(images=(b"",), params=PredictParams(conf=0.4, iou=0.3), options={"format": "json"})
    body = roboflow.encode(request, prediction(weights, task, result)).body
    assert body["image"] == {"width": 810, "height": 1080}
    assert isinstance(body["time"], float) and isinstance(body["inference_id"], str)
    predictions = body["predictions"]
    if task == "classify":
        assert set(body) == {"inference_id", "time", "image", "predictions", "top", "confidence"}
        scores = result.probs.data.tolist()
        assert {p["class_id"]: p["confidence"] for p in predictions} == pytest.approx(dict(enumerate(scores)))
        assert [p["confidence"] for p in predictions] == sorted(scores, reverse=True)
        assert all(list(p) == ["class", "class_id", "confidence"] for p in predictions)
        assert body["top"] == predictions[0]["class"] and body["confidence"] == predictions[0]["confidence"]
        assert len(predictions) == len(result.names)
        return
    assert set(body) == {"inference_id", "time", "image", "predictions"}
    assert predictions and all(list(p) == ROBOFLOW_KEYS[task] for p in predictions)
    boxes = result.obb if task == "obb" else result.boxes
    x1, y1, x2, y2 = boxes.xyxy[0].tolist()
    first = predictions[0]
    assert [first[k] for k in ("x", "y", "width", "height")] == pytest.approx([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1])
    assert first["class"] == result.names[first["class_id"]]
    assert len({p["detection_id"] for p in predictions}) == len(predictions)
    if task == "segment":
        assert [v for p in first["points"] for v in (p["x"], p["y"])] == pytest.approx(result.masks.xy[0].reshape(-1).tolist())
    if task == "pose":
        assert [k["class"] for k in first["keypoints"]][:3] == ["nose", "left_eye", "right_eye"]
        assert [v for k in first["keypoints"] for v in (k["x"], k["y"])] == pytest.approx(result.keypoints.xy[0].reshape(-1).tolist())
        assert all(list(k) == ["x", "y", "confidence", "class_id", "class"] for k in first["keypoints"])


def test_roboflow_parse_reads_roboflows_scales_and_the_raw_base64_body(bus_jpg):
    raw = base64.b64encode(bus_jpg.read_bytes())
    request = roboflow.parse(incoming(query=[("api_key", "k"), ("confidence", "40"), ("overlap", "30"), ("classes", "Fall,Normal"),
                                             ("format", "image_and_json"), ("name", "x.jpg"), ("whatever", "1")],
                                      body=raw + b"\n", content_type="application/x-www-form-urlencoded"))
    assert (request.params.conf, request.params.iou, request.params.class_names) == (0.4, 0.3, ("Fall", "Normal"))
    assert request.images == (raw.decode(),), "the body is kept raw: a form decoder would turn '+' into ' '"
    assert request.options == {"format": "image_and_json", "labels": False, "stroke": 1}
    fractions = roboflow.parse(incoming(query=[("confidence", "0.5"), ("overlap", "0.45")], body=raw))
    assert (fractions.params.conf, fractions.params.iou) == (0.5, 0.45), "below 1 is a fraction, as Roboflow's server reads it"
    assert roboflow.parse(incoming(query=[("image", "https://example.com/a.jpg")])).images == ("https://example.com/a.jpg",)
    for query in ([("confidence", "400")], [("overlap", "-1")], [("format", "xml")], [("stroke", "0")], [("labels", "maybe")]):
        with pytest.raises(BadParameter):
            roboflow.parse(incoming(query=query, body=raw))


def test_roboflow_errors_are_roboflows():
    assert roboflow.error(Unauthorized("x")).status == 403
    assert roboflow.error(Unauthorized("x")).body == {"Message": "User is not authorized to access this resource"}
    assert roboflow.error(TooLarge("too big")).body == {"message": "too big"}
    assert roboflow_server.error(ModelNotFound("nope")).body == {"message": "nope"}


def test_roboflow_server_parse_takes_json_fractions_lists_and_names_the_model():
    settings = load_settings({"MODEL": "m.pt", "MODEL_ID": "fall"}).dialects
    body = (b'{"model_id": "fall/3", "api_key": "k", "image": [{"type": "base64", "value": "QUJD"}, '
            b'{"type": "url", "value": "https://example.com/a.jpg"}], "confidence": 0.5, "iou_threshold": 0.4, '
            b'"class_filter": ["Fall"], "max_detections": 7, "visualize_predictions": true, "unknown": 1}')
    request = roboflow_server.parse(incoming(path="/infer/object_detection", model_task="detect", body=body, settings=settings))
    assert request.images == ("QUJD", "https://example.com/a.jpg")
    params = request.params
    assert (params.conf, params.iou, params.class_names, params.max_det) == (0.5, 0.4, ("Fall",), 7)
    assert request.options["many"] and request.options["visualize"]
    assert roboflow_server.api_key(incoming(body=body)) == "k"
    # Which model: the body's project, which the edge resolves (an id not served is its 404: test_dialects, test_models).
    assert roboflow_server.model_id(incoming(body=body)) == "fall"
    assert roboflow_server.model_id(incoming(body=b'{"model_id": " other/1 ", "image": []}')) == "other"
    for bad in (b'{"model_id": "fall/1"}', b'[1]', b'not json', b'{"model_id": "fall/1", "image": {"type": "numpy", "value": "x"}}',
                b'{"model_id": "fall/1", "image": {"type": "base64", "value": "QUJD"}, "confidence": "high"}',
                b'{"model_id": "fall/1", "image": {"type": "base64", "value": "QUJD"}, "confidence": 4}'):
        with pytest.raises(BadParameter):
            roboflow_server.parse(incoming(path="/infer/object_detection", model_task="detect", body=bad, settings=settings))
    # The route's task against the loaded model's, at parse: a pose model on /infer/object_detection is refused before
    # anything is fetched or run; an OBB model is Roboflow's object detection.
    with pytest.raises(BadParameter, match="keypoint-detection: use /infer/keypoints_detection"):
        roboflow_server.parse(incoming(path="/infer/object_detection", model_task="pose", body=body, settings=settings))
    assert roboflow_server.parse(incoming(path="/infer/object_detection", model_task="obb", body=body, settings=settings))


# -- Platform ---------------------------------------------------------------------------------------------------------


def test_platform_metadata_has_every_dedicated_endpoint_field(weights, bus_jpg):
    result = local_result(weights, "pose", bus_jpg)
    body = platform.encode(PredictRequest(images=(b"",), params=PredictParams()), prediction(weights, "pose", result)).body
    meta = body["metadata"]
    assert list(meta) == ["imageCount", "functionTimeAlive", "functionTimeCall", "model", "task", "version"]
    assert meta["task"] == "pose" and meta["imageCount"] == 1 and meta["functionTimeAlive"] >= 5 > meta["functionTimeCall"]


def test_platform_video_entries_say_which_frame(weights, bus_jpg):
    result = local_result(weights, "detect", bus_jpg)
    entry = platform.encode_result(result, PredictParams())
    pred = prediction(weights, "detect", entry, frames=[Frame(index=3, timestamp=0.1)])
    body = platform.encode(PredictRequest(images=(), params=PredictParams(), video=b"v"), pred).body
    assert body["images"] == [{**entry, "frame": 3, "timestamp": 0.1}] and body["metadata"]["imageCount"] == 1


# -- annotated images -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("task", [*TASKS, "semantic", "depth"])
def test_every_dialect_draws_with_ultralytics_plot(weights, zidane_jpg, task):
    result = local_result(weights, task, zidane_jpg)
    pred = prediction(weights, task, result)
    options = {"format": "image", "labels": True, "conf": True, "line_width": 3}
    platform_reply = platform.encode(PredictRequest(images=(b"",), params=PredictParams(), options=options), pred)
    roboflow_reply = roboflow.encode(PredictRequest(images=(b"",), params=PredictParams(),
                                                    options={"format": "image_and_json", "labels": True, "stroke": 2}), pred)
    assert platform_reply.media_type == "image/jpeg"
    for jpeg in (platform_reply.body, base64.b64decode(roboflow_reply.body["visualization"])):
        image = Image.open(io.BytesIO(jpeg))
        assert image.format == "JPEG" and image.size == (1280, 720)
    plain = Image.open(zidane_jpg).convert("RGB")
    drawn = Image.open(io.BytesIO(platform_reply.body)).convert("RGB")
    assert drawn.tobytes()[::997] != plain.tobytes()[::997], "something is drawn"


def test_the_fonts_ship_with_the_package_and_go_where_ultralytics_looks(tmp_path):
    from ultralytics.utils.checks import check_font

    import function.encode.annotate as annotate

    annotate._installed = False
    install_fonts(tmp_path)
    for wanted, shipped in FONTS.items():
        assert (tmp_path / wanted).read_bytes() == (FONTS_DIR / shipped).read_bytes()
        assert (FONTS_DIR / f"LICENSE-{shipped.split('.')[0].replace('Sans', '')}.txt").exists()
    annotate._installed = False
    install_fonts()  # the real config directory: check_font now finds both without a download
    assert all(str(check_font(name)).endswith(name) for name in FONTS)


# -- the core's new fields ------------------------------------------------------------------------------------------


def test_classes_and_max_det_parse_for_every_dialect_and_hub_defaults_apply_underneath():
    from function.dialects.params import parse_params

    params = parse_params([("classes", " person, car ,person"), ("max_det", "5")], [("iou", "0.5")],
                          defaults=PredictParams(iou=0.45))
    assert (params.class_names, params.max_det, params.iou) == (("person", "car"), 5, 0.5)
    assert params.model_args == {"conf": 0.25, "iou": 0.5, "imgsz": 640, "max_det": 5}
    assert parse_params([], defaults=PredictParams(iou=0.45)).iou == 0.45
    for fields in ([("classes", " , ")], [("max_det", "0")], [("max_det", "1001")]):
        with pytest.raises(BadParameter):
            parse_params(fields)


def test_video_and_hub_settings():
    from function.errors import ConfigError

    s = load_settings({"MODEL": "m.pt"})
    assert s.max_body_bytes >= s.max_video_bytes, "a body can always hold the largest video"
    chosen = load_settings({"MODEL": "m.pt", "MAX_VIDEO_MB": "5", "HUB_V1_DATA": "tojson"})
    assert (chosen.max_video_bytes, chosen.dialects.hub_v1_data) == (5 * 2**20, "tojson")
    for env in ({"HUB_V1_DATA": "xml"}, {"MAX_VIDEO_FRAMES": "0"}, {"MAX_VIDEO_MB": "x"}):
        with pytest.raises(ConfigError):
            load_settings({"MODEL": "m.pt", **env})


@pytest.mark.parametrize("head, video", [
    (b"\x00\x00\x00\x18ftypmp42", True), (b"\x00\x00\x00\x14ftypqt  ", True), (b"RIFF\x00\x00\x00\x00AVI LIST", True),
    (b"\x1a\x45\xdf\xa3\x01\x00", True), (b"\x30\x26\xb2\x75\x8e\x66\xcf\x11\xa6\xd9", True),
    (b"\x00\x00\x00\x18ftypheic", False), (b"\x00\x00\x00\x1cftypavif", False), (b"\xff\xd8\xff\xe0", False),
    (b"GIF89a", False), (b"just text", False),
])
def test_videos_are_told_from_images_by_their_leading_bytes(head, video):
    from function.core.video import looks_like_a_video

    assert looks_like_a_video(head + bytes(64)) is video
