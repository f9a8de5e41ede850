"""Sliced inference (core/slicing.py) through the real server: a mosaic of small copies of Ultralytics' two sample
photos at known places, against the model run on each photo at full size, against `sahi` (the reference: its
`get_sliced_prediction` on the same model and parameters), and against every bad parameter."""

from __future__ import annotations

import base64
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


# -- fixtures ---------------------------------------------------------------------------------------------------------


def make_mosaic(seed: int = 0) -> tuple[np.ndarray, list[tuple[int, int, int, int, int]]]:
    """bus.jpg and zidane.jpg in turn, one copy at SCALE in the middle of each cell, give or take 8 px:
    (image, [(photo, x, y, w, h)])."""
    from ultralytics.utils import ASSETS

    rng = np.random.default_rng(seed)
    photos = [cv2.imread(str(ASSETS / name)) for name in ("bus.jpg", "zidane.jpg")]
    image = np.full((HEIGHT, WIDTH, 3), 114, np.uint8)
    places = []
    for top in range(0, HEIGHT, CELL[1]):
        for left in range(0, WIDTH, CELL[0]):
            photo = len(places) % 2
            h, w = (round(side * SCALE) for side in photos[photo].shape[:2])
            x = left + (CELL[0] - w) // 2 + int(rng.integers(-8, 9))  # at least 24 px between two copies
            y = top + (CELL[1] - h) // 2 + int(rng.integers(-8, 9))
            image[y:y + h, x:x + w] = cv2.resize(photos[photo], (w, h), interpolation=cv2.INTER_AREA)
            places.append((photo, x, y, w, h))
    return image, places


@pytest.fixture(scope="module")
def mosaic():
    image, places = make_mosaic()
    return image, places, cv2.imencode(".png", image)[1].tobytes()  # PNG: the server decodes exactly these pixels


@pytest.fixture(scope="module")
def segment_weights(weights, tmp_path_factory):
    """The detect model's trained weights under a segment head whose masks are its boxes. Trained boxes and scores
    group as in real use (the untrained segment model's scores all tie); masks that fill their boxes make sahi's
    boxes (each mask's outline's extent, where ours are the model's) within a pixel of ours, so both merge the same
    groups, and the union of merged masks is checked against sahi's."""
    import yaml

    detect = YOLO(str(weights["detect"]))
    spec = {**detect.model.yaml, "head": [*detect.model.yaml["head"][:-1], [[15, 18, 21], 1, "Segment", ["nc", 32, 256]]]}
    folder = tmp_path_factory.mktemp("segment")
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


def truth_boxes(weights, places) -> np.ndarray:
    """The model's boxes on each photo at its own size (Ultralytics, directly), scaled onto its copies."""
    from ultralytics.utils import ASSETS

    model = YOLO(str(weights["detect"]))
    boxes = []
    for photo, name in enumerate(("bus.jpg", "zidane.jpg")):
        image = cv2.imread(str(ASSETS / name))
        found = model.predict(image, conf=CONF, verbose=False)[0].boxes.xyxy.numpy().astype(np.float64)
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


# -- the same answer as sahi ------------------------------------------------------------------------------------------

SAHI_MERGES = {"nms": "NMS", "nmm": "GREEDYNMM"}
# (our fields, sahi's arguments): the defaults; sahi's own merge with another overlap; NMM by IoU without the whole image.
CASES = [
    ({}, {"overlap": 0.2, "merge": "NMS", "match": "IOS", "threshold": 0.7, "full": True}),
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
