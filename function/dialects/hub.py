"""The Ultralytics HUB Inference API, v1 (seeds 000, 001, 002): `POST /v1/predict/{model_id}`.

Two generations of clients share this URL, and each parses its own response:

* the newer (002) sends multipart `file` (and `imgsz`, `conf`, `iou`) and gets the Platform's
  `{"images": [...], "metadata": {...}}`, exactly as from `/predict`;
* the older (000, 001) sends `image` (or `url`) with `size`, `confidence`, `iou`, `normalize` and gets the envelope
  `{"success": true, "message": "Inference complete.", "data": [...]}`. `data` is, per HUB_V1_DATA, seed 001's
  per-task shape (`hub`, the default) or seed 000's, what `results[0].tojson()` gives (`tojson`).

The per-pixel tasks, which the HUB never served: a semantic model's `data` is its summary() rows (class, name,
pixel_ratio) and a depth model's `data` is `[]` (no rows, as its summary() is); beside `data`, the envelope carries the
Platform's `semantic_mask` or `depth` object, which a v1 client ignores and a newer one can read.

Both generations default `iou` to 0.45, as the HUB documented. Errors carry both shapes at once —
`{"success": false, "message": ..., "error": {"code", "status", "message"}}` — because a refusal can come before the
body says which generation the client is (a missing key, an oversized upload).
"""

from __future__ import annotations

from ..core.requests import Prediction, PredictRequest
from ..encode.views import PER_PIXEL, View
from ..errors import BadParameter, ServiceError
from ..models.params import PredictParams
from . import Incoming, Reply, bearer_or_x_api_key, platform, retry_headers

name = "hub"
key_in_body = False
HUB_DEFAULTS = PredictParams(iou=0.45)
# What marks a request as the newer generation's (Platform fields); anything else is answered in the v1 envelope.
PLATFORM_FIELDS = ("file", "source")


def api_key(incoming: Incoming) -> str | None:
    return bearer_or_x_api_key(incoming)


def model_id(incoming: Incoming) -> str | None:
    return incoming.path_params.get("model_id")


def parse(incoming: Incoming) -> PredictRequest:
    request = platform.parse_with(incoming, HUB_DEFAULTS)
    form = incoming.form
    sent = {name for name, _ in (form.fields if form else [])} | {upload.field for upload in (form.files if form else [])}
    sent |= {name for name, _ in incoming.query}
    if sent & set(PLATFORM_FIELDS):
        return request
    if request.video is not None:
        raise BadParameter("Send a video as 'file'; 'image' takes an image")
    if len(request.images) > 1:
        raise BadParameter("'image' takes one image; send several as repeated 'file' fields")
    data = incoming.settings.hub_v1_data
    return PredictRequest(images=request.images, params=request.params, track=request.track,
                          options={**request.options, "envelope": data}, slicing=request.slicing)


def encode(request: PredictRequest, prediction: Prediction) -> Reply:
    envelope = request.options.get("envelope")
    if envelope is None or request.options.get("format") == "image":
        return platform.encode(request, prediction)
    result = prediction.results[0]
    params, task = request.params, prediction.model.task
    per_pixel = task in PER_PIXEL
    data = result.summary(normalize=params.normalize, decimals=params.decimals) if envelope == "tojson" or per_pixel \
        else hub_data(View(result, task))
    maps = platform.per_pixel(result, task, params.imgsz, request.options.get("bits", 8))
    return Reply(200, {"success": True, "message": "Inference complete.", "data": data, **maps})


def hub_data(view: View) -> list[dict]:
    """Seed 001's `data`: per detection `class`, `name`, `confidence` and, by task, the normalized box centre and
    size, a flat `obb` (4 corners), a flat `segment` polygon or flat `keypoints` (x, y, confidence triples)."""
    if view.task == "classify":
        return [{"class": cls, "name": name, "confidence": conf} for cls, name, conf in view.top5()]
    entries = []
    for row, cls, name, conf in view.detections():
        entry = {"class": cls, "name": name, "confidence": conf}
        if view.task == "obb":
            entry["obb"] = [float(v) for point in view.points(row, normalized=True) for v in point]
        elif view.task == "segment":
            entry["segment"] = [float(v) for point in view.points(row, normalized=True) for v in point]
        elif view.task == "pose":
            entry["keypoints"] = [float(v) for keypoint in view.keypoints(row, normalized=True) for v in keypoint]
        else:
            x, y, w, h = view.xywhn(row)
            entry.update(width=float(w), height=float(h), xcenter=float(x), ycenter=float(y))
        entries.append(entry)
    return entries


def error(error: ServiceError) -> Reply:
    headers = retry_headers(error)
    if error.status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="predict"'
    return Reply(error.status, {"success": False, "message": error.message, **error.body()}, headers=headers)
