"""The Ultralytics Platform dialect (seeds 002, 003): `POST /predict` and `POST /api/models/{model_id}/predict`.

Request: multipart `file` (or legacy `image`; repeated for several images; or one video), or `source` / `url` with an
http(s) URL or base64 data; `conf`/`confidence`, `iou`, `imgsz`/`size`, `normalize`, `decimals`, `max_det`,
`classes`, `vid_stride`, `bits` (a depth map's PNG precision), and for an annotated image `format=image` with
`show_labels`, `show_conf`, `line_width`, as form fields or query parameters (a form field wins). Response:
`{"images": [{"shape", "results", "speed"}], "metadata": {...}}` where `results` is Ultralytics' own
`Results.summary()`; a semantic model's entry adds `semantic_mask` and a depth model's `depth`, each a PNG
(function/encode/maps.py); a video gives one `images` entry per processed frame, with its `frame` and `timestamp`
(a depth model takes images only, as the Platform's do); with `track=true` (and `tracker`) a video's rows carry
`track_id` and `metadata` adds `tracks` and `counts`. Errors: `{"error": {"code", "status", "message"}}`.
"""

from __future__ import annotations

import time
from functools import partial

from ..core.requests import Prediction, PredictRequest
from ..core.tracking import counts
from ..core.video import looks_like_a_video
from ..encode.annotate import annotated_jpeg
from ..encode.maps import b64, class_map_png, depth_png
from ..encode.views import View
from ..errors import BadParameter, ServiceError
from ..models.params import PredictParams
from . import Incoming, Reply, bearer_or_x_api_key
from .params import NUMBERS, lookup, parse_bits, parse_bool, parse_params, parse_slicing, parse_tracking

name = "platform"
key_in_body = False
IMAGE_FIELDS = ("file", "image")
SOURCE_FIELDS = ("source", "url")


def api_key(incoming: Incoming) -> str | None:
    return bearer_or_x_api_key(incoming)


def model_id(incoming: Incoming) -> str | None:
    return incoming.path_params.get("model_id")


def parse(incoming: Incoming) -> PredictRequest:
    return parse_with(incoming, PredictParams())


def parse_with(incoming: Incoming, defaults: PredictParams) -> PredictRequest:
    """The Platform request over a dialect's own defaults (HUB's `file` requests share it with iou 0.45)."""
    form = incoming.form
    fields = form.fields if form else []
    params = parse_params(fields, incoming.query, defaults=defaults)
    track, params = parse_tracking(fields, incoming.query, params=params)
    slicing = parse_slicing(fields, incoming.query, imgsz=params.imgsz)
    uploads = [upload.data for upload in (form.files if form else []) if upload.field in IMAGE_FIELDS]
    source = lookup((fields, incoming.query), *SOURCE_FIELDS)
    if uploads and source:
        raise BadParameter(f"Send the image as 'file' or as '{source[0]}', not both")
    images: tuple[bytes | str, ...] = tuple(uploads) if uploads else ((source[1],) if source else ())
    sources = (fields, incoming.query)
    options = annotation_options(sources)
    bits = lookup(sources, "bits")
    options["bits"] = parse_bits(*bits) if bits else 8
    video = next((upload for upload in uploads if looks_like_a_video(upload)), None)
    stride = lookup(sources, "vid_stride")
    if video is None:
        if options["format"] == "image" and len(images) > 1:
            raise BadParameter("'format=image' returns one annotated image: send one image")
        return PredictRequest(images=images, params=params, options=options, track=track, slicing=slicing)
    if len(uploads) > 1:
        raise BadParameter("Send one video per request, without images beside it")
    if incoming.model_task == "depth":
        raise BadParameter("This endpoint's model estimates depth, which takes images only: send an image, not a video")
    if options["format"] == "image":
        raise BadParameter("'format=image' annotates an image, not a video")
    vid_stride = NUMBERS["vid_stride"].parse(*stride) if stride else 1
    return PredictRequest(images=(), params=params, video=video, vid_stride=vid_stride, options=options, track=track,
                          reduce=partial(encode_result, params=params, task=incoming.model_task), slicing=slicing)


def annotation_options(sources) -> dict:
    """`format=json|image` and how Ultralytics' plot() draws: `show_labels`, `show_conf`, `line_width`."""
    found = lookup(sources, "format")
    fmt = found[1].lower() if found else "json"
    if fmt not in ("json", "image"):
        raise BadParameter(f"'format' must be json or image, got {found[1]!r}")
    options = {"format": fmt, "labels": True, "conf": True, "line_width": None}
    for field, key in (("show_labels", "labels"), ("show_conf", "conf")):
        if found := lookup(sources, field):
            options[key] = parse_bool(*found)
    if found := lookup(sources, "line_width"):
        options["line_width"] = NUMBERS["line_width"].parse(*found)
    return options


def annotated_reply(result, options: dict) -> Reply:
    return Reply(200, annotated_jpeg(result, labels=options["labels"], conf=options["conf"],
                                     line_width=options["line_width"]), "image/jpeg")


def encode_result(result, params: PredictParams, task: str | None = None, bits: int = 8) -> dict:
    """One image's entry; `results` is Ultralytics' own summary(); the per-pixel tasks add their map."""
    h, w = result.orig_shape
    entry = {
        "shape": [int(h), int(w)],
        "results": result.summary(normalize=params.normalize, decimals=params.decimals),
        "speed": {k: round(float(result.speed.get(k) or 0.0), 3) for k in ("preprocess", "inference", "postprocess")},
    }
    entry.update(per_pixel(result, task, params.imgsz, bits))
    return entry


def per_pixel(result, task: str | None, imgsz: int, bits: int) -> dict:
    """semantic: `semantic_mask`, the class-id PNG at the image's size; depth: `depth`, the quantised PNG at
    inference resolution with its `min`, `max` and `bits`. Nothing for the other tasks."""
    if task == "semantic":
        class_map = View(result, task).class_map()
        return {"semantic_mask": {"shape": list(class_map.shape), "encoding": "png",
                                  "data": b64(class_map_png(class_map))}}
    if task == "depth":
        return {"depth": depth_png(View(result, task).depth_map(), imgsz, bits).platform()}
    return {}


def encode(request: PredictRequest, prediction: Prediction) -> Reply:
    if request.options.get("format") == "image":
        return annotated_reply(prediction.results[0], request.options)
    if prediction.frames is None:
        task, bits = prediction.model.task, request.options.get("bits", 8)
        images = [encode_result(result, request.params, task, bits) for result in prediction.results]
    else:  # a video: the entries were encoded frame by frame (`reduce`); say which frame each is
        images = [{**entry, "frame": frame.index, "timestamp": frame.timestamp}
                  for entry, frame in zip(prediction.results, prediction.frames)]
    return Reply(200, {"images": images, "metadata": metadata(prediction, len(images))})


def metadata(prediction: Prediction, count: int) -> dict:
    """What the Platform's dedicated endpoints put beside the images (times in seconds); with slicing, `slices`: the
    tiles run for all the images (core/slicing.py's SlicedResults count them)."""
    model = prediction.model
    now = time.monotonic()
    body = {
        "imageCount": count,
        "functionTimeAlive": round(now - prediction.process_started, 3),
        "functionTimeCall": round(now - prediction.started, 5),
        "model": model.name,
        "task": model.task,
        "version": model.versions,
        # A tracked video: every track seen, and how many of each class (core/tracking.py).
        **({"tracks": prediction.tracks, "counts": counts(prediction.tracks)} if prediction.tracks is not None else {}),
    }
    slices = [result.slices for result in prediction.results if hasattr(result, "slices")]
    if slices:
        body["slices"] = sum(slices)
    return body


def error(error: ServiceError) -> Reply:
    headers = {}
    if error.status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="predict"'
    if error.status in (429, 503):
        headers["Retry-After"] = str(getattr(error, "retry_after_s", 1))
    return Reply(error.status, error.body(), headers=headers)
