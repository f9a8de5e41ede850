"""Sliced inference (core/slicing.py) through the real server: a mosaic of small copies of Ultralytics' two sample
photos at known places, against the model run on each photo at full size, against `sahi` (the reference: its
`get_sliced_prediction` on the same model and parameters), and against every bad parameter."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
import requests
import torch
from conftest import ROOT
from ultralytics import YOLO
from ultralytics.utils.metrics import box_iou

pytestmark = pytest.mark.integration

IMGSZ, CONF, SLICE = 320, 0.3, 320  # every tile at its own size: small copies are seen as the model sees photos
# 16 copies; 20 tiles of 320 with the default overlap. At imgsz 320 the whole image needs no letterbox padding: sahi
# resizes a padded image's masks with the padding, which would misplace the masks of its whole-image pass.
WIDTH, HEIGHT, CELL, SCALE = 1280, 1024, (320, 256), 0.2
ASK = {"imgsz": str(IMGSZ), "conf": str(CONF)}
DOCS_PICTURE = ROOT / "docs" / "slicing.jpg"  # docs/calling.md: the mosaic without and with slicing


# -- fixtures ---------------------------------------------------------------------------------------------------------


def make_mosaic(seed: int = 0, width: int = WIDTH, height: int = HEIGHT, cell: tuple[int, int] = CELL,
                scale: float = SCALE) -> tuple[np.ndarray, list[tuple[int, int, int, int, int]]]:
    """bus.jpg and zidane.jpg in turn, one copy at `scale` in the middle of each cell, give or take 8 px:
    (image, [(photo, x, y, w, h)]). bench/slicing.py makes its large images with it too."""
    from ultralytics.utils import ASSETS

    rng = np.random.default_rng(seed)
    photos = [cv2.imread(str(ASSETS / name)) for name in ("bus.jpg", "zidane.jpg")]
    image = np.full((height, width, 3), 114, np.uint8)
    places = []
    for top in range(0, height - cell[1] + 1, cell[1]):
        for left in range(0, width - cell[0] + 1, cell[0]):
            photo = len(places) % 2
            h, w = (round(side * scale) for side in photos[photo].shape[:2])
            x = left + (cell[0] - w) // 2 + int(rng.integers(-8, 9))  # at least 24 px between two copies
            y = top + (cell[1] - h) // 2 + int(rng.integers(-8, 9))
            image[y:y + h, x:x + w] = cv2.resize(photos[photo], (w, h), interpolation=cv2.INTER_AREA)
            places.append((photo, x, y, w, h))
    return image, places


@pytest.fixture(scope="module")
def mosaic():
    image, places = make_mosaic()
    return image, places, cv2.imencode(".png", image)[1].tobytes()  # PNG: the server decodes exactly these pixels


@pytest.fixture(scope="module")
def segment_weights(weights, tmp_path_factory):
    return segment_from_detect(weights["detect"], tmp_path_factory.mktemp("segment"))


def segment_from_detect(detect_weights, folder):
    """The detect model's trained weights under a segment head whose masks are its boxes: trained boxes and scores
    group as in real use (the untrained segment model's scores all tie), and masks are real masks to shift, merge and
    outline (bench/slicing.py measures their memory with it)."""
    import yaml

    detect = YOLO(str(detect_weights))
    spec = {**detect.model.yaml, "head": [*detect.model.yaml["head"][:-1], [[15, 18, 21], 1, "Segment", ["nc", 32, 256]]]}
    (folder / "segment.yaml").write_text(yaml.safe_dump(spec))
    segment = YOLO(str(folder / "segment.yaml"), task="segment")
    own = segment.model.state_dict()
    segment.model.load_state_dict({k: v for k, v in detect.model.state_dict().items()
                                   if k in own and own[k].shape == v.shape}, strict=False)
    head = segment.model.model[-1]
    with torch.no_grad():  # prototypes all positive, coefficients all one: every mask logit > 0 inside its box
        head.proto.cv3.conv.weight.zero_()
        head.proto.cv3.bn.weight.zero_()
        head.proto.cv3.bn.bias.fill_(1.0)
        for branch in head.cv4:
            branch[-1].weight.zero_()
            branch[-1].bias.fill_(1.0)
    segment.model.names = detect.model.names
    segment.save(folder / "segment.pt")
    return folder / "segment.pt"


@pytest.fixture(scope="module")
def server(start_server, weights, segment_weights):
    """The detect model, and MODELS for the other tasks (addressed as /api/models/{task}/predict)."""
    models = ",".join([f"segment={segment_weights}"] + [f"{task}={weights[task]}" for task in ("obb", "pose", "classify")])
    return start_server({"MODEL": str(weights["detect"]), "MODELS": models, "MAX_LOADED_MODELS": "4"})


def predict(server, png: bytes, path: str = "/predict", **fields) -> requests.Response:
    return requests.post(server.url + path, files={"file": ("mosaic.png", png, "image/png")},
                         data={**ASK, **fields}, timeout=120)


@pytest.fixture(scope="module")
def sliced(server, mosaic) -> dict:
    answer = predict(server, mosaic[2], slice_size=str(SLICE))
    assert answer.status_code == 200, answer.text
    return answer.json()


def rows(answer: dict) -> list[dict]:
    (image,) = answer["images"]
    return image["results"]


def xyxy(rows_: list[dict]) -> np.ndarray:
    return np.array([[r["box"][k] for k in ("x1", "y1", "x2", "y2")] for r in rows_], dtype=np.float64).reshape(-1, 4)


# -- what the model finds in each copy at full size -------------------------------------------------------------------


def truth_boxes(weights, places, conf: float = CONF) -> np.ndarray:
    """The model's boxes on each photo at its own size (Ultralytics, directly), scaled onto its copies."""
    from ultralytics.utils import ASSETS

    model = YOLO(str(weights["detect"]))
    boxes = []
    for photo, name in enumerate(("bus.jpg", "zidane.jpg")):
        image = cv2.imread(str(ASSETS / name))
        found = model.predict(image, conf=conf, verbose=False)[0].boxes.xyxy.numpy().astype(np.float64)
        for index, x, y, w, h in places:
            if index == photo:
                boxes.append(found * np.array([w / image.shape[1], h / image.shape[0]] * 2) + [x, y, x, y])
    return np.concatenate(boxes)


def found(truth: np.ndarray, boxes: np.ndarray) -> tuple[int, int]:
    """(truth boxes matched at IoU >= 0.5, truth boxes matched more than once)."""
    if not len(boxes):
        return 0, 0
    iou = box_iou(torch.from_numpy(truth), torch.from_numpy(boxes)).numpy()
    matched = iou.max(0) >= 0.5
    owners = iou.argmax(0)[matched]
    return int((iou.max(1) >= 0.5).sum()), int(len(owners) - len(set(owners.tolist())))


def test_sliced_finds_what_the_model_finds_in_each_copy_at_full_size_once_each(server, mosaic, sliced, weights):
    image, places, png = mosaic
    truth = truth_boxes(weights, places)
    boxes = xyxy(rows(sliced))
    hits, twice = found(truth, boxes)
    assert hits >= 0.75 * len(truth) and twice == 0, (hits, twice, len(truth))
    assert sliced["metadata"]["slices"] == len(sahi_tiles(HEIGHT, WIDTH, SLICE, 0.2))
    whole = predict(server, png).json()
    assert found(truth, xyxy(rows(whole)))[0] <= 0.1 * len(truth) and "slices" not in whole["metadata"]

    assert ((boxes >= 0) & (boxes <= [WIDTH, HEIGHT] * 2)).all() and (boxes[:, 2:] > boxes[:, :2]).all()
    for box in boxes:
        centre = (box[:2] + box[2:]) / 2
        meets = [(x, y, w, h) for _, x, y, w, h in places if box[0] < x + w and box[2] > x and box[1] < y + h and box[3] > y]
        assert len(meets) == 1, f"{box} meets {len(meets)} copies"
        x, y, w, h = meets[0]
        assert x <= centre[0] <= x + w and y <= centre[1] <= y + h
        # A person the copy's edge cuts may be boxed a little past it: the model sees grey there, not an image edge.
        margin = 0.08 * np.array([w, h, w, h])
        assert (box >= np.array([x, y, x, y]) - margin).all() and (box <= np.array([x + w, y + h] * 2) + margin).all()


def test_normalize_is_relative_to_the_whole_image(server, mosaic, sliced):
    normalized = rows(predict(server, mosaic[2], slice_size=str(SLICE), normalize="true").json())
    assert len(normalized) == len(rows(sliced))
    # Both are rounded to 5 decimals (`decimals`): fractions to 5e-6 of the image's side.
    assert np.allclose(xyxy(normalized), xyxy(rows(sliced)) / np.array([WIDTH, HEIGHT] * 2), rtol=0, atol=6e-6)


def test_format_image_draws_the_answer_on_the_whole_image(server, mosaic, sliced):
    answer = predict(server, mosaic[2], slice_size=str(SLICE), format="image")
    assert answer.status_code == 200 and answer.headers["content-type"] == "image/jpeg"
    drawn = cv2.imdecode(np.frombuffer(answer.content, np.uint8), cv2.IMREAD_COLOR)
    assert drawn.shape == mosaic[0].shape
    x1, y1, _, _ = xyxy(rows(sliced))[0].astype(int)  # the best box's corner is drawn over
    assert np.abs(drawn[y1 - 1:y1 + 2, x1 - 1:x1 + 2].astype(int) - mosaic[0][y1 - 1:y1 + 2, x1 - 1:x1 + 2]).max() > 60
    if not DOCS_PICTURE.exists() or os.environ.get("UPDATE_SCREENSHOTS") == "1":  # committed: rewritten on request
        whole = predict(server, mosaic[2], format="image")
        unsliced = cv2.imdecode(np.frombuffer(whole.content, np.uint8), cv2.IMREAD_COLOR)
        pair = cv2.resize(np.hstack([unsliced, np.full((HEIGHT, 16, 3), 255, np.uint8), drawn]), None, fx=0.5, fy=0.5,
                          interpolation=cv2.INTER_AREA)
        cv2.imwrite(str(DOCS_PICTURE), pair, [cv2.IMWRITE_JPEG_QUALITY, 85])


def test_segment_masks_are_drawn_from_their_outlines(server, mosaic):
    """format=image of a sliced segment answer: Ultralytics' plot() with each mask filled from its outline."""
    answer = predict(server, mosaic[2], "/api/models/segment/predict", slice_size=str(SLICE))
    drawn = predict(server, mosaic[2], "/api/models/segment/predict", slice_size=str(SLICE), format="image")
    assert drawn.status_code == 200
    image = cv2.imdecode(np.frombuffer(drawn.content, np.uint8), cv2.IMREAD_COLOR).astype(int)
    row = rows(answer.json())[0]
    inside = outline_raster([np.stack([row["segments"]["x"], row["segments"]["y"]], 1)], mosaic[0].shape)
    inside = cv2.erode(inside.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)  # clear of box lines, labels
    assert inside.sum() > 100
    tinted = np.abs(image - mosaic[0].astype(int)).sum(2)[inside]
    assert np.median(tinted) > 30, "half its class colour over every pixel of the mask"


# -- the same answer as sahi ------------------------------------------------------------------------------------------

SAHI_MERGES = {"nms": "NMS", "nmm": "GREEDYNMM"}
# (our fields, sahi's arguments): the defaults; sahi's own merge with another overlap; NMM by IoU without the whole image.
CASES = [
    ({}, {"overlap": 0.2, "merge": "NMS", "match": "IOS", "threshold": 0.6, "full": True}),
    ({"slice_merge": "nmm", "slice_match": "ios", "slice_threshold": "0.5", "slice_overlap": "0.25"},
     {"overlap": 0.25, "merge": "GREEDYNMM", "match": "IOS", "threshold": 0.5, "full": True}),
    ({"slice_merge": "nmm", "slice_match": "iou", "slice_threshold": "0.3", "slice_full": "false"},
     {"overlap": 0.2, "merge": "GREEDYNMM", "match": "IOU", "threshold": 0.3, "full": False}),
]


def sahi_tiles(height: int, width: int, size: int, overlap: float) -> list[list[int]]:
    from sahi.slicing import get_slice_bboxes

    return get_slice_bboxes(height, width, size, size, False, overlap, overlap)


def sahi_predictions(weights_path, image: np.ndarray, case: dict) -> list:
    """`sahi.predict.get_sliced_prediction` on the same weights, image (RGB, as sahi takes it) and parameters."""
    from sahi.models.ultralytics import UltralyticsDetectionModel
    from sahi.predict import get_sliced_prediction

    model = UltralyticsDetectionModel(model_path=str(weights_path), confidence_threshold=CONF, image_size=IMGSZ,
                                      device="cpu")
    return get_sliced_prediction(
        np.ascontiguousarray(image[..., ::-1]), model, slice_height=SLICE, slice_width=SLICE,
        overlap_height_ratio=case["overlap"], overlap_width_ratio=case["overlap"], perform_standard_pred=case["full"],
        postprocess_type=case["merge"], postprocess_match_metric=case["match"],
        postprocess_match_threshold=case["threshold"], force_postprocess_type=True, verbose=0).object_prediction_list


def assert_same_detections(ours: list[dict], theirs: list) -> list[int]:
    """One to one: the same class and confidence, the box within 1e-3 px. Returns our row for each of theirs."""
    assert len(ours) == len(theirs) > 0, (len(ours), len(theirs))
    boxes, matched = xyxy(ours), []
    for prediction in theirs:
        distance = np.abs(boxes - prediction.bbox.to_xyxy()).max(1)
        best = int(distance.argmin())
        assert distance[best] <= 1e-3 and best not in matched, (prediction, ours[best])
        matched.append(best)
        assert ours[best]["class"] == prediction.category.id
        assert abs(ours[best]["confidence"] - float(prediction.score.value)) <= 6e-6  # rounded to 5 decimals
    return matched


@pytest.mark.parametrize("fields, case", CASES, ids=["defaults", "sahi-merge", "nmm-iou-tiles-only"])
def test_detect_equals_sahi(server, mosaic, weights, fields, case):
    answer = predict(server, mosaic[2], slice_size=str(SLICE), **fields)
    assert answer.status_code == 200, answer.text
    assert_same_detections(rows(answer.json()), sahi_predictions(weights["detect"], mosaic[0], case))


def outline_raster(polygons, shape) -> np.ndarray:
    raster = np.zeros(shape[:2], np.uint8)
    for polygon in polygons:
        points = np.asarray(polygon, np.float64).reshape(-1, 2)
        if len(points):
            cv2.fillPoly(raster, [np.round(points * 16).astype(np.int32)], 1, cv2.LINE_8, 4)
    return raster.astype(bool)


@pytest.fixture
def sahi_keeps_the_models_boxes(monkeypatch):
    """sahi replaces a segment detection's box by its mask outline's extent; ours keep the model's box, as an unsliced
    answer does (docs/calling.md). Told to keep the box it is given, sahi merges by the same boxes as we do, and its
    masks (resized, outlined, shifted and unioned its own way) can be compared with ours detection by detection."""
    from sahi.annotation import BoundingBox, ObjectAnnotation

    build = ObjectAnnotation.__init__

    def keep_box(self, bbox=None, **kwargs):
        build(self, bbox=bbox, **kwargs)
        if bbox is not None:
            self.bbox = BoundingBox([max(bbox[0], 0), max(bbox[1], 0), bbox[2], bbox[3]], self.bbox.shift_amount)

    monkeypatch.setattr(ObjectAnnotation, "__init__", keep_box)


@pytest.mark.parametrize("fields, case", CASES[:2], ids=["defaults", "sahi-merge"])
def test_segment_equals_sahi_with_the_models_boxes(server, mosaic, segment_weights, fields, case,
                                                   sahi_keeps_the_models_boxes):
    image = mosaic[0]
    answer = predict(server, mosaic[2], "/api/models/segment/predict", slice_size=str(SLICE), **fields)
    assert answer.status_code == 200, answer.text
    ours = rows(answer.json())
    theirs = sahi_predictions(segment_weights, image, case)
    matched = assert_same_detections(ours, theirs)
    assert any(len(p.mask.segmentation) for p in theirs)
    for prediction, row in zip(theirs, matched):
        mask = outline_raster([np.stack([ours[row]["segments"]["x"], ours[row]["segments"]["y"]], 1)], image.shape)
        reference = outline_raster(prediction.mask.segmentation, image.shape)
        assert (mask & reference).sum() / (mask | reference).sum() >= 0.99


# -- refusals ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fields, message", [
    ({"slice_size": "63"}, "'slice_size' must be an integer in 64-1280, got '63' (at most 4 × imgsz=320)"),
    ({"slice_size": "1281"}, "'slice_size' must be an integer in 64-1280, got '1281' (at most 4 × imgsz=320)"),
    ({"slice_size": "2560", "imgsz": "640"}, None),  # 4 × imgsz is allowed: one tile, the image
    ({"slice_size": "320.5"}, "'slice_size' must be an integer in 64-1280, got '320.5' (at most 4 × imgsz=320)"),
    ({"slice_size": "320", "slice_overlap": "0.95"}, "'slice_overlap' must be a number in 0.0-0.9, got '0.95'"),
    ({"slice_size": "320", "slice_overlap": "-0.1"}, "'slice_overlap' must be a number in 0.0-0.9, got '-0.1'"),
    ({"slice_size": "320", "slice_threshold": "1.5"}, "'slice_threshold' must be a number in 0.0-1.0, got '1.5'"),
    ({"slice_size": "320", "slice_merge": "wbf"}, "'slice_merge' must be nms or nmm, got 'wbf'"),
    ({"slice_size": "320", "slice_match": "giou"}, "'slice_match' must be ios or iou, got 'giou'"),
    ({"slice_size": "320", "slice_full": "maybe"}, "'slice_full' must be true or false, got 'maybe'"),
    ({"slice_overlap": "0.3"}, "'slice_overlap' applies to sliced inference: send 'slice_size' too"),
    ({"slice_merge": "nmm"}, "'slice_merge' applies to sliced inference: send 'slice_size' too"),
])
def test_every_bad_parameter_is_a_400_naming_it_and_its_range(server, fields, message):
    small = cv2.imencode(".png", np.full((64, 64, 3), 114, np.uint8))[1].tobytes()
    answer = predict(server, small, **fields)
    if message is None:
        assert answer.status_code == 200 and answer.json()["metadata"]["slices"] == 1
    else:
        assert answer.status_code == 400 and answer.json()["error"]["message"] == message


def test_more_tiles_than_max_slices_is_a_400_that_says_how_many(server, mosaic):
    needed = len(sahi_tiles(HEIGHT, WIDTH, 64, 0.9))
    answer = predict(server, mosaic[2], slice_size="64", slice_overlap="0.9")
    assert answer.status_code == 400
    assert answer.json()["error"]["message"] == (
        f"slice_size=64 with slice_overlap=0.9 cuts this {WIDTH}x{HEIGHT} image into {needed} tiles, over "
        "MAX_SLICES=256: use a larger slice_size or a smaller slice_overlap")


@pytest.mark.parametrize("task", ["pose", "classify"])
def test_tasks_that_cannot_be_sliced_are_a_400(server, mosaic, task):
    answer = predict(server, mosaic[2], f"/api/models/{task}/predict", slice_size=str(SLICE))
    assert answer.status_code == 400
    assert answer.json()["error"]["message"] == (f"A {task} model cannot be sliced: slice_size and the other slice_* "
                                                 "parameters take detect, segment and obb models")


def test_a_video_with_slicing_is_a_400(server, tmp_path, bus_jpg):
    path = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 5, (64, 48))
    for _ in range(3):
        writer.write(cv2.resize(cv2.imread(str(bus_jpg)), (64, 48)))
    writer.release()
    answer = requests.post(server.url + "/predict", files={"file": ("clip.mp4", path.read_bytes(), "video/mp4")},
                           data={"slice_size": "64"}, timeout=60)
    assert answer.status_code == 400
    assert answer.json()["error"]["message"] == "Slicing takes images: send an image, not a video, with 'slice_size'"


# -- rotated boxes ----------------------------------------------------------------------------------------------------


def rotated_polygon(row: dict):
    from shapely.geometry import Polygon

    return Polygon([(row["box"][f"x{i}"], row["box"][f"y{i}"]) for i in range(1, 5)])


def test_rotated_boxes_are_kept_by_nms_on_their_exact_overlap(server, mosaic):
    answer = predict(server, mosaic[2], "/api/models/obb/predict", slice_size=str(SLICE))
    assert answer.status_code == 200, answer.text
    kept = rows(answer.json())
    assert kept and all(len(row["box"]) == 8 for row in kept)
    for i, a in enumerate(kept):  # no two of a class overlap by the default threshold, 0.6 (shapely measures)
        for b in kept[i + 1:]:
            if a["class"] == b["class"]:
                first, second = rotated_polygon(a), rotated_polygon(b)
                assert first.intersection(second).area / min(first.area, second.area) < 0.6
    refused = predict(server, mosaic[2], "/api/models/obb/predict", slice_size=str(SLICE), slice_merge="nmm")
    assert refused.status_code == 400 and refused.json()["error"]["message"] == (
        "'slice_merge' must be nms for rotated boxes (OBB): they are never merged into one, got 'nmm'")


# -- every dialect, and the batch job ---------------------------------------------------------------------------------


def centre_boxes(predictions: list[dict]) -> np.ndarray:
    """Roboflow's centre-point boxes as x1, y1, x2, y2."""
    return np.array([[p["x"] - p["width"] / 2, p["y"] - p["height"] / 2, p["x"] + p["width"] / 2,
                      p["y"] + p["height"] / 2] for p in predictions]).reshape(-1, 4)


def test_hub_takes_slicing_as_form_fields(server, mosaic, sliced):
    newer = requests.post(server.url + "/v1/predict/best", files={"file": ("m.png", mosaic[2], "image/png")},
                          data={**ASK, "iou": "0.7", "slice_size": str(SLICE)}, timeout=120).json()
    assert rows(newer) == rows(sliced) and newer["metadata"]["slices"] == sliced["metadata"]["slices"]
    older = requests.post(server.url + "/v1/predict/best", files={"image": ("m.png", mosaic[2], "image/png")},
                          data={"size": str(IMGSZ), "confidence": str(CONF), "iou": "0.7", "slice_size": str(SLICE)},
                          timeout=120).json()
    assert older["success"] and len(older["data"]) == len(rows(sliced))


def test_roboflow_dialects_take_slicing_as_query_parameters(server, mosaic):
    """Roboflow's fields keep their meaning (confidence and overlap in percent, imgsz 640); ours are in the query. The
    project is the model's id (MODELS is set: the default model answers to its weights' name)."""
    crop = cv2.imencode(".png", mosaic[0][:512, :640])[1].tobytes()  # 6 tiles at imgsz 640: seconds, not tens
    expected = rows(predict(server, crop, imgsz="640", iou="0.3", slice_size=str(SLICE)).json())
    assert expected
    encoded = base64.b64encode(crop).decode()
    hosted = requests.post(f"{server.url}/best/1", params={"confidence": "30", "slice_size": str(SLICE)},
                           data=encoded, timeout=120).json()
    body = {"model_id": "best/1", "image": {"type": "base64", "value": encoded}, "confidence": CONF, "iou_threshold": 0.3}
    inference = requests.post(f"{server.url}/infer/object_detection", params={"slice_size": str(SLICE)}, json=body,
                              timeout=120).json()
    for answer in (hosted, inference):
        assert np.allclose(centre_boxes(answer["predictions"]), xyxy(expected), atol=1e-3)
        assert [p["class_id"] for p in answer["predictions"]] == [row["class"] for row in expected]
    refused = requests.post(f"{server.url}/best/1", params={"slice_size": "20"}, data=encoded, timeout=60)
    assert refused.status_code == 400 and refused.json() == {
        "message": "'slice_size' must be an integer in 64-2560, got '20' (at most 4 × imgsz=640)"}


def test_the_batch_jobs_lines_equal_predicts(server, mosaic, sliced, weights, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "mosaic.png").write_bytes(mosaic[2])
    env = {"MODEL": str(weights["detect"]), "ENGINE": "pytorch", "YOLO_CONFIG_DIR": str(tmp_path / "yolo"),
           "PATH": "/usr/bin:/bin", "YOLO_OFFLINE": "1", "YOLO_AUTOINSTALL": "false"}
    args = [sys.executable, "-m", "function", "batch", "--input", str(folder), "--imgsz", str(IMGSZ), "--conf", str(CONF)]
    done = subprocess.run([*args, "--output", str(tmp_path / "out"), "--slice-size", str(SLICE)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:]
    (line,) = [json.loads(text) for path in (tmp_path / "out" / "results").glob("*.jsonl")
               for text in path.read_text().splitlines()]
    assert line["results"] == rows(sliced)
    refused = subprocess.run([*args, "--output", str(tmp_path / "refused"), "--slice-size", "320",
                              "--slice-overlap", "0.95"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and refused.stderr.strip() == (
        "error: 'slice_overlap' must be a number in 0.0-0.9, got '0.95'")


# -- the pieces, without a server -------------------------------------------------------------------------------------


@pytest.mark.parametrize("height, width, size, overlap", [
    (1024, 1280, 320, 0.2), (960, 1280, 320, 0.25), (8000, 8000, 640, 0.2), (3000, 4000, 640, 0.2), (300, 200, 640, 0.2),
    (640, 640, 640, 0.2), (641, 1000, 640, 0.0), (500, 700, 64, 0.9), (700, 500, 100, 0.33),
])
def test_tiles_are_sahis_all_one_shape_and_views_of_the_image(height, width, size, overlap):
    from function.core.requests import Slicing
    from function.core.slicing import model_inputs, tile_boxes

    assert [list(box) for box in tile_boxes(height, width, size, overlap)] == sahi_tiles(height, width, size, overlap)
    image = np.broadcast_to(np.zeros(3, np.uint8), (height, width, 3))  # any size, no memory
    inputs, origins = model_inputs(image, Slicing(size, overlap), 100_000)
    tiles = len(sahi_tiles(height, width, size, overlap))
    assert len(inputs) == tiles + (tiles > 1)  # the whole image, after the tiles, unless one tile is the whole image
    assert {tile.shape for tile in inputs[:tiles]} == {(min(size, height), min(size, width), 3)}
    assert all(np.shares_memory(tile, image) for tile in inputs) and origins[0] == (0, 0)


def test_the_rotated_overlap_is_the_exact_intersection():
    from shapely.geometry import Polygon

    from function.core.slicing import _rotated_overlap

    def corners(box):
        (cx, cy, w, h, _), c, s = box, np.cos(box[4]), np.sin(box[4])
        return Polygon([(cx + dx * c - dy * s, cy + dx * s + dy * c)
                        for dx, dy in ((-w / 2, -h / 2), (w / 2, -h / 2), (w / 2, h / 2), (-w / 2, h / 2))])

    rng = np.random.default_rng(0)
    boxes = np.column_stack([rng.uniform(0, 100, 40), rng.uniform(0, 100, 40), rng.uniform(5, 60, 40),
                             rng.uniform(5, 60, 40), rng.uniform(-np.pi, np.pi, 40)])
    for match in ("iou", "ios"):
        measured = _rotated_overlap(boxes[0], boxes[1:], match)
        first = corners(boxes[0])
        for other, value in zip(boxes[1:], measured):
            polygon = corners(other)
            inter = first.intersection(polygon).area
            below = first.area + polygon.area - inter if match == "iou" else min(first.area, polygon.area)
            assert value == pytest.approx(inter / below, abs=1e-4)
        assert (measured > 0).any()


def test_max_slices_is_a_setting():
    from function.errors import ConfigError
    from function.settings import load_settings

    assert load_settings({"MODEL": "m.pt"}).max_slices == 256
    assert load_settings({"MODEL": "m.pt", "MAX_SLICES": "1000"}).max_slices == 1000
    for bad in ("0", "many"):
        with pytest.raises(ConfigError, match="MAX_SLICES"):
            load_settings({"MODEL": "m.pt", "MAX_SLICES": bad})
