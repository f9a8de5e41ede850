"""The Ultralytics Platform dialect (seeds 002, 003): `POST /predict` and `POST /api/models/{model_id}/predict`.

Request: multipart `file` (or legacy `image`; repeated for several images), or `source` / `url` with an http(s) URL
or base64 data; `conf`/`confidence`, `iou`, `imgsz`/`size`, `normalize`, `decimals` as form fields or query
parameters (a form field wins). Response: `{"images": [{"shape", "results", "speed"}], "metadata": {...}}` where
`results` is Ultralytics' own `Results.summary()`. Errors: `{"error": {"code", "status", "message"}}`.
"""

from __future__ import annotations

import time

from ..errors import BadParameter, ServiceError
from ..params import PredictParams, lookup, parse_params
from ..service import Prediction, PredictRequest
from . import Incoming, Reply, bearer_or_x_api_key

name = "platform"
key_in_body = False
IMAGE_FIELDS = ("file", "image")
SOURCE_FIELDS = ("source", "url")


def api_key(incoming: Incoming) -> str | None:
    return bearer_or_x_api_key(incoming)


def model_id(incoming: Incoming) -> str | None:
    return incoming.path_params.get("model_id")


def parse(incoming: Incoming) -> PredictRequest:
    form = incoming.form
    fields = form.fields if form else []
    params = parse_params(fields, incoming.query)
    uploads = [upload.data for upload in (form.files if form else []) if upload.field in IMAGE_FIELDS]
    source = lookup((fields, incoming.query), *SOURCE_FIELDS)
    if uploads and source:
        raise BadParameter(f"Send the image as 'file' or as '{source[0]}', not both")
    images: tuple[bytes | str, ...] = tuple(uploads) if uploads else ((source[1],) if source else ())
    return PredictRequest(images=images, params=params)


def encode_result(result, params: PredictParams) -> dict:
    """One image's entry; `results` is Ultralytics' own summary()."""
    h, w = result.orig_shape
    return {
        "shape": [int(h), int(w)],
        "results": result.summary(normalize=params.normalize, decimals=params.decimals),
        "speed": {k: round(float(result.speed.get(k) or 0.0), 3) for k in ("preprocess", "inference", "postprocess")},
    }


def encode(request: PredictRequest, prediction: Prediction) -> Reply:
    model = prediction.model
    return Reply(200, {
        "images": [encode_result(result, request.params) for result in prediction.results],
        "metadata": {
            "imageCount": len(prediction.results),
            "functionTimeCall": round(time.monotonic() - prediction.started, 5),
            "model": model.name,
            "version": model.versions,
        },
    })


def error(error: ServiceError) -> Reply:
    headers = {}
    if error.status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="predict"'
    if error.status in (429, 503):
        headers["Retry-After"] = str(getattr(error, "retry_after_s", 1))
    return Reply(error.status, error.body(), headers=headers)
