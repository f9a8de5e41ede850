"""Roboflow's inference server API, v1 (what `inference-sdk` speaks to any self-hosted URL):
`POST /infer/object_detection|instance_segmentation|semantic_segmentation|keypoints_detection|classification` and
`POST /infer/depth-estimation` (Roboflow's own spelling), plus `GET /model/registry`
and `POST /model/add`, which the client calls first to learn the model's task.

Request: JSON `{"model_id": "project/1", "api_key": ..., "image": {"type": "base64"|"url", "value": ...} or a list of
them, "confidence": 0.4, "iou_threshold": 0.3, "max_detections": 300, "class_filter": [...],
"visualize_predictions": false, "visualization_labels": false, "visualization_stroke_width": 1}`, and for depth
`"depth_map_format": "png16"|"png8"|"json"`; fractions, not percentages; unknown fields are ignored. The key may also
be the `api_key` query parameter or `Authorization: Bearer`.
Response: the hosted API's per-image body (`roboflow.inference_response`), a list of them for a list of images.
Errors: `{"message": ...}`.

The model id's project is the model's id here (its version is not read): with MODELS, `"pose/1"` is the model `pose`,
an id not configured is a 404, and `/model/add` loads the model it names. Without MODELS the registry holds one model,
this endpoint's, under whatever id the client asks for (`/model/add` answers with that id added), unless MODEL_ID is
set: then only that project's ids (`MODEL_ID/<version>`) are served and others are 404.
"""

from __future__ import annotations

import asyncio
import base64

from ..core.requests import Prediction, PredictRequest
from ..core.service import Service
from ..encode.views import View
from ..errors import BadParameter, InferenceTimeout, ServiceError
from . import Incoming, Reply, bearer_or_x_api_key, retry_headers
from .params import Number, parse_class_names, parse_slicing
from .roboflow import draw, inference_response, parse_depth_format, roboflow_params

name = "roboflow-server"
key_in_body = True
# The route's task -> Roboflow's task type; and each Ultralytics task's Roboflow task type (OBB has none of its own:
# its answers are detections, each with its 4 corners as `points`).
ROUTE_TASKS = {
    "object_detection": "object-detection",
    "instance_segmentation": "instance-segmentation",
    "semantic_segmentation": "semantic-segmentation",
    "keypoints_detection": "keypoint-detection",
    "classification": "classification",
    "depth-estimation": "depth-estimation",
}
TASK_TYPES = {"detect": "object-detection", "obb": "object-detection", "segment": "instance-segmentation",
              "pose": "keypoint-detection", "classify": "classification", "semantic": "semantic-segmentation",
              "depth": "depth-estimation"}


def api_key(incoming: Incoming) -> str | None:
    key = next((value for value in incoming.query_values("api_key") if value), None) or bearer_or_x_api_key(incoming)
    if key is None and incoming.body is not None:
        try:
            body = incoming.json()
        except BadParameter:  # parse() says so, after the key check
            return None
        key = body.get("api_key") if isinstance(body, dict) and isinstance(body.get("api_key"), str) else None
    return key or None


def model_id(incoming: Incoming) -> str | None:
    """The project of the body's `model_id` (the edge reads this dialect's body first); a body without one is
    refused by parse()."""
    try:
        body = incoming.json() if incoming.body is not None else None
    except BadParameter:  # parse() says so
        return None
    given = body.get("model_id") if isinstance(body, dict) else None
    return project_of(given) if isinstance(given, str) and given.strip() else None


def project_of(model_id: str) -> str:
    return model_id.strip().split("/", 1)[0]


def check_model_id(given) -> str:
    """`project/version` (or `project`); whether the project is served is the edge's question (Service.resolve)."""
    if not isinstance(given, str) or not given.strip():
        raise BadParameter("'model_id' is required: the Roboflow model id, e.g. \"my-project/1\"")
    return given


# The JSON body's numeric fields (fractions, unlike the hosted API's 0-100).
BODY_NUMBERS = {
    "confidence": Number(float, 0.0, 1.0, 0.4, "Minimum confidence, a fraction"),
    "iou_threshold": Number(float, 0.0, 1.0, 0.3, "NMS IoU threshold, a fraction"),
    "max_detections": Number(int, 1, 1000, 300, "Most detections per image"),
    "visualization_stroke_width": Number(int, 1, 100, 1, "Box line width"),
}


def _number(body: dict, field: str, default):
    number, value = BODY_NUMBERS[field], body.get(field)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        kind = "an integer" if number.kind is int else "a number"
        raise BadParameter(f"'{field}' must be {kind} in {number.low}-{number.high}, got {value!r}")
    return number.parse(field, repr(value))


def _flag(body: dict, field: str) -> bool:
    value = body.get(field, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise BadParameter(f"'{field}' must be true or false, got {value!r}")
    return value


def _image(entry) -> str:
    if not isinstance(entry, dict) or entry.get("type") not in ("base64", "url") or not isinstance(entry.get("value"), str):
        raise BadParameter("'image' must be {\"type\": \"base64\" or \"url\", \"value\": \"...\"} or a list of them")
    value = entry["value"].strip()
    if entry["type"] == "url" and "://" not in value:
        raise BadParameter("An image of type 'url' must be an http(s) URL")
    if entry["type"] == "base64" and "://" in value:
        raise BadParameter("An image of type 'base64' must be base64 data, not a URL")
    return value


def parse(incoming: Incoming) -> PredictRequest:
    body = incoming.json()
    if not isinstance(body, dict):
        raise BadParameter("The request body must be a JSON object")
    check_model_id(body.get("model_id"))
    images = body.get("image")
    many = isinstance(images, list)
    entries = images if many else [images]
    if not entries or images is None:
        raise BadParameter("'image' is required")
    class_filter = body.get("class_filter")
    if class_filter is not None and (not isinstance(class_filter, list) or not all(isinstance(c, str) for c in class_filter)):
        raise BadParameter("'class_filter' must be a list of class names")
    params = roboflow_params(
        _number(body, "confidence", 0.4),
        _number(body, "iou_threshold", 0.3),
        _number(body, "max_detections", None),
        parse_class_names("class_filter", ",".join(class_filter)) if class_filter else (),
    )
    wanted, served = ROUTE_TASKS[incoming.path.rstrip("/").rsplit("/", 1)[-1]], TASK_TYPES[incoming.model_task]
    if wanted != served:  # refused before any image is fetched, decoded or run
        route = next(route for route, kind in ROUTE_TASKS.items() if kind == served)
        raise BadParameter(f"This endpoint's model is {served}: use /infer/{route}")
    options = {
        "many": many,
        "visualize": _flag(body, "visualize_predictions"),
        "labels": _flag(body, "visualization_labels"),
        "stroke": _number(body, "visualization_stroke_width", 1),
    }
    if body.get("depth_map_format") is not None:
        options["depth_map_format"] = parse_depth_format("depth_map_format", body["depth_map_format"])
    slicing = parse_slicing(incoming.query, imgsz=params.imgsz)  # ours, not Roboflow's: query parameters
    return PredictRequest(images=tuple(_image(entry) for entry in entries), params=params, options=options,
                          slicing=slicing)


def encode(request: PredictRequest, prediction: Prediction) -> Reply:
    options = request.options
    bodies = []
    for result in prediction.results:
        task = prediction.model.task
        body = inference_response(View(result, task), request.params, prediction.started,
                                  options.get("depth_map_format", "png16"))
        if options["visualize"]:
            body["visualization"] = base64.b64encode(draw(result, options)).decode("ascii")
            if task == "depth":  # DepthEstimationResponse names its visualization `image` as well
                body["image"] = body["visualization"]
        bodies.append(body)
    return Reply(200, bodies if options["many"] else bodies[0])


def error(error: ServiceError) -> Reply:
    return Reply(error.status, {"message": error.message}, headers=retry_headers(error))


# -- the registry: system routes, answered without the model ---------------------------------------------------------


def describe(model_id: str, task: str, service: Service) -> dict:
    return {"model_id": model_id, "task_type": TASK_TYPES[task], "batch_size": service.settings.max_batch_size,
            "input_height": None, "input_width": None}


def listed(service: Service) -> list[tuple[str, str]]:
    """(id, task) of what the registry lists before any /model/add: the default model, under MODEL_ID or else the
    weights' name, and every model of MODELS that is loaded."""
    models = service.models
    loaded = [(m["id"], m["task"]) for m in models.describe()["models"] if m["loaded"] and not m["default"]]
    return [(models.default_id, models.model.task)] + loaded


async def registry(incoming: Incoming, service: Service) -> Reply:
    try:
        service.require_ready()
    except ServiceError as exc:
        return error(exc)
    return Reply(200, {"models": [describe(model_id, task, service) for model_id, task in listed(service)]})


async def add_model(incoming: Incoming, service: Service) -> Reply:
    """Roboflow's server loads the model here; so does this one for a model of MODELS (within REQUEST_TIMEOUT_S)."""
    try:
        incoming.authorize(api_key(incoming))
        body = incoming.json()
        if not isinstance(body, dict):
            raise BadParameter("The request body must be a JSON object")
        wanted = check_model_id(body.get("model_id"))
        resolved = service.resolve(project_of(wanted))
        try:
            async with asyncio.timeout(service.settings.request_timeout_s):
                lease = await service.acquire(resolved)
        except TimeoutError:
            raise InferenceTimeout(f"Model {resolved!r} did not load within REQUEST_TIMEOUT_S") from None
        lease.release()
    except ServiceError as exc:
        return error(exc)
    models = dict(listed(service))
    models.setdefault(wanted, lease.model.task)
    return Reply(200, {"models": [describe(model_id, task, service) for model_id, task in models.items()]})


add_model.reads_body = True
