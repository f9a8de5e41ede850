"""Roboflow's hosted API (seed 004): `POST /{project}/{version}` (and GET, as Roboflow's own server answers it).

Request: the image as a base64 body (`base64 img.jpg | curl -d @-`; labelled `application/x-www-form-urlencoded`,
`application/json` by inference-sdk, or nothing), as multipart `file`, or as `image=<URL>` in the query (fetched by the
same guarded fetcher as the Platform's `source`). The body is read raw: form-decoding would turn base64's `+` into
spaces. Query parameters as Roboflow defines them: `api_key`, `confidence` and `overlap` on a 0-100 scale (a value
below 1 is taken as a fraction, as Roboflow's server does; defaults 40 and 30), `classes` (comma-separated names),
`max_detections`, `format=json|image|image_and_json`, `labels`, `stroke`; anything else (`name`, Roboflow's
preprocessing switches) is ignored. The model id is the project slug (MODEL_ID, when set, must equal it); any version
number is accepted.

Response, field for field what roboflow/inference returns (`inference/core/entities/responses/inference.py`):
`{"inference_id", "time", "image": {"width", "height"}, "predictions": [...]}` with centre-point pixel boxes
(`x`, `y`, `width`, `height`, `confidence`, `class`, `class_id`, `detection_id`); instance segmentation adds
`points: [{x, y}]` and `mask_format: "polygon"`; keypoints add `keypoints: [{x, y, confidence, class_id, class}]`;
classification is `{"predictions": [{"class", "class_id", "confidence"}], "top", "confidence"}`; semantic segmentation
is `{"predictions": {"segmentation_mask", "class_map"}}` (`SemanticSegmentationPrediction`: the class-id PNG at the
image's size, and every class id -> name; no `confidence_mask`, because Ultralytics keeps no per-pixel score and a
made-up one would mislead); depth is `{"normalized_depth", "depth_map_format"}` (`DepthEstimationResponse`: 1 nearest,
0 farthest and where there is no depth, relative to the image's own range, at inference resolution;
`depth_map_format=png16` (the default), `png8` or `json`). Errors are Roboflow's:
`{"message": ...}`, and a missing or wrong key is its hosted API's 403 `{"Message": "User is not authorized to access
this resource"}`.
"""

from __future__ import annotations

import base64
import time
import uuid

from ..core.requests import Prediction, PredictRequest
from ..encode.annotate import annotated_jpeg
from ..encode.maps import b64, class_map_png, nearness, png
from ..encode.views import View
from ..errors import BadImage, BadParameter, ServiceError
from ..models.params import PredictParams
from . import Incoming, Reply, bearer_or_x_api_key, retry_headers
from .params import Number, lookup, parse_bool, parse_class_names, parse_slicing

name = "roboflow"
key_in_body = False
FORMATS = ("json", "image", "image_and_json")
DEPTH_FORMATS = ("png16", "png8", "json")  # Roboflow's `depth_map_format`
FORBIDDEN = {"Message": "User is not authorized to access this resource"}
# COCO's keypoint names (what Roboflow names a 17-point person skeleton); other skeletons are numbered.
COCO_KEYPOINTS = ("nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
                  "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee",
                  "right_knee", "left_ankle", "right_ankle")


def api_key(incoming: Incoming) -> str | None:
    return next((value for value in incoming.query_values("api_key") if value), None) or bearer_or_x_api_key(incoming)


def model_id(incoming: Incoming) -> str | None:
    return incoming.path_params.get("project")


# The hosted API's numeric query parameters (confidence and overlap on Roboflow's 0-100 scale).
QUERY_NUMBERS = {
    "confidence": Number(float, 0.0, 100.0, 40, "Minimum confidence, 0-100 (below 1: a fraction)"),
    "overlap": Number(float, 0.0, 100.0, 30, "NMS overlap, 0-100 (below 1: a fraction)"),
    "max_detections": Number(int, 1, 1000, 300, "Most detections"),
    "stroke": Number(int, 1, 100, 1, "Box line width on the annotated image"),
}


def percent(given: str, raw: str) -> float:
    """Roboflow's 0-100 scale; as its server does, a value below 1 is already a fraction."""
    value = QUERY_NUMBERS[given].parse(given, raw)
    return value / 100 if value >= 1 else value


def roboflow_params(confidence: float, overlap: float, max_detections: int | None, classes: tuple[str, ...]) -> PredictParams:
    # Roboflow keeps at least 1% confidence (below that, NMS candidates explode); Ultralytics takes the rest as is.
    return PredictParams(conf=max(confidence, 0.01), iou=overlap, max_det=max_detections or 300, class_names=classes)


def parse(incoming: Incoming) -> PredictRequest:
    query = (incoming.query,)
    confidence = lookup(query, "confidence")
    overlap = lookup(query, "overlap")
    max_detections = lookup(query, "max_detections")
    classes = lookup(query, "classes")
    params = roboflow_params(
        percent(*confidence) if confidence else 0.4,
        percent(*overlap) if overlap else 0.3,
        QUERY_NUMBERS["max_detections"].parse(*max_detections) if max_detections else None,
        parse_class_names(*classes) if classes else (),
    )
    found = lookup(query, "format")
    fmt = found[1].lower() if found else "json"
    if fmt not in FORMATS:
        raise BadParameter(f"'format' must be json, image or image_and_json, got {found[1]!r}")
    labels = lookup(query, "labels")
    stroke = lookup(query, "stroke")
    depth_format = lookup(query, "depth_map_format")
    options = {"format": fmt, "labels": parse_bool(*labels) if labels else False,
               "stroke": QUERY_NUMBERS["stroke"].parse(*stroke) if stroke else 1}
    if depth_format:
        options["depth_map_format"] = parse_depth_format(*depth_format)
    slicing = parse_slicing(incoming.query, imgsz=params.imgsz)
    return PredictRequest(images=(image_of(incoming),), params=params, options=options, slicing=slicing)


def parse_depth_format(given: str, raw) -> str:
    if raw not in DEPTH_FORMATS:
        raise BadParameter(f"'{given}' must be png16, png8 or json, got {raw!r}")
    return raw


def image_of(incoming: Incoming) -> bytes | str:
    """The one image: `image=<URL>` in the query, a multipart `file`, or the raw body as base64 text."""
    url = lookup((incoming.query,), "image")
    if url:
        if "://" not in url[1]:
            raise BadParameter("'image' in the query must be an http(s) URL of an image")
        return url[1]
    if incoming.form is not None and incoming.content_type == "multipart/form-data":
        files = [upload.data for upload in incoming.form.files if upload.field == "file"]
        if len(files) != 1:
            raise BadImage("Expected the image in one multipart part named 'file'")
        return files[0]
    text = (incoming.body or b"").strip()
    if not text:
        raise BadImage("No image: send it base64-encoded as the request body, as multipart 'file', or as image=<URL>")
    try:
        return text.decode("ascii")
    except UnicodeDecodeError:
        raise BadImage("The request body is not base64 image data") from None


def encode(request: PredictRequest, prediction: Prediction) -> Reply:
    options = request.options
    result = prediction.results[0]
    if options["format"] == "image":
        return Reply(200, draw(result, options), "image/jpeg")
    body = inference_response(View(result, prediction.model.task), request.params, prediction.started,
                              options.get("depth_map_format", "png16"))
    if options["format"] == "image_and_json":
        body["visualization"] = base64.b64encode(draw(result, options)).decode("ascii")
    return Reply(200, body)


def draw(result, options: dict) -> bytes:
    return annotated_jpeg(result, labels=options["labels"], conf=options["labels"], line_width=options["stroke"])


def inference_response(view: View, params: PredictParams, started: float, depth_format: str = "png16") -> dict:
    """One image's Roboflow response for an Ultralytics Results."""
    height, width = view.height_width()
    body = {
        "inference_id": str(uuid.uuid4()),
        "time": round(time.monotonic() - started, 6),
    }
    if view.task == "depth":  # DepthEstimationResponse: no image size (its `image` is a visualization)
        return {**body, **normalized_depth(view, params.imgsz, depth_format)}
    body["image"] = {"width": width, "height": height}
    if view.task == "classify":
        body.update(classification(view, params))
    elif view.task == "semantic":
        body["predictions"] = {"segmentation_mask": b64(class_map_png(view.class_map())),
                               "class_map": {str(i): name for i, name in view.names.items()}}
    else:
        body["predictions"] = detections(view)
    return body


def normalized_depth(view: View, imgsz: int, depth_format: str) -> dict:
    """Roboflow's depth answer: nearness in [0, 1] (1 nearest), as 16- or 8-bit PNG or as nested lists."""
    import numpy as np

    near = nearness(view.depth_map(), imgsz)
    if depth_format == "json":
        value = np.round(near, 6).tolist()
    else:
        levels, dtype = (65535, np.uint16) if depth_format == "png16" else (255, np.uint8)
        value = b64(png(np.rint(near * levels).astype(dtype)))
    return {"normalized_depth": value, "depth_map_format": depth_format}


def classification(view: View, params: PredictParams) -> dict:
    names, scores = view.names, view.scores()
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    if params.classes is not None:  # Ultralytics filters detections itself; a classifier's scores are filtered here
        order = [i for i in order if i in params.classes]
    predictions = [{"class": names[i], "class_id": i, "confidence": float(scores[i])} for i in order]
    top = predictions[0] if predictions else {"class": "", "confidence": 0.0}
    return {"predictions": predictions, "top": top["class"], "confidence": top["confidence"]}


def detections(view: View) -> list[dict]:
    """Detections with centre-point pixel boxes; rotated boxes as their enclosing box plus their 4 corners."""
    xyxy = view.xyxy()
    predictions = []
    for row, cls, name, conf in view.detections():
        x1, y1, x2, y2 = xyxy[row]
        entry = {"x": (x1 + x2) / 2, "y": (y1 + y2) / 2, "width": x2 - x1, "height": y2 - y1,
                 "confidence": conf, "class": name, "class_id": cls, "detection_id": str(uuid.uuid4())}
        if view.task == "obb":
            entry["points"] = [{"x": x, "y": y} for x, y in view.points(row)]
        elif view.task == "segment":
            entry["points"] = [{"x": float(x), "y": float(y)} for x, y in view.points(row)]
            entry["mask_format"] = "polygon"
        elif view.task == "pose":
            entry["keypoints"] = keypoints(view, row)
        predictions.append(entry)
    return predictions


def keypoints(view: View, row: int) -> list[dict]:
    points = view.keypoints(row)
    labels = COCO_KEYPOINTS if len(points) == len(COCO_KEYPOINTS) else tuple(str(k) for k in range(len(points)))
    return [{"x": float(x), "y": float(y), "confidence": float(c), "class_id": k, "class": labels[k]}
            for k, (x, y, c) in enumerate(points)]


def error(error: ServiceError) -> Reply:
    if error.status == 401:
        return Reply(403, FORBIDDEN)
    return Reply(error.status, {"message": error.message}, headers=retry_headers(error))
