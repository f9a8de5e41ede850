"""`GET /openapi.json`: every route of every dialect, its request fields with their ranges, each task's response and
each dialect's error shape. It is kept true by tests/test_openapi.py: schemathesis calls the real server from this
document and fails on any 5xx and on any response that breaks the schema written here.
"""

from __future__ import annotations

from functools import lru_cache

from ..core.tracking import DEFAULT_TRACKER, TRACKERS
from ..dialects import params, roboflow, roboflow_server


def _bool(default: bool, description: str) -> dict:
    return {"type": "boolean", "default": default, "description": description}


def _str(description: str, **extra) -> dict:
    return {"type": "string", "description": description, **extra}


def _object(properties: dict, required: tuple = (), **extra) -> dict:
    return {"type": "object", "properties": properties, "required": list(required), **extra}


def _array(items: dict, **extra) -> dict:
    return {"type": "array", "items": items, **extra}


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


NUMBER, INTEGER = {"type": "number"}, {"type": "integer"}
NUMBERS = _array(NUMBER)
BINARY = {"type": "string", "format": "binary"}
JPEG = {"image/jpeg": {"schema": BINARY}}

# -- request fields ----------------------------------------------------------------------------------------------------

# Sliced inference (docs/calling.md): form fields or query parameters on every route, query parameters for Roboflow's.
SLICE_FIELDS = {
    **{name: number.schema() for name, number in params.SLICE_NUMBERS.items()},
    **{name: _str(description, enum=list(choices), default=default)
       for name, (choices, default, description) in params.SLICE_CHOICES.items()},
    "slice_full": _bool(True, params.SLICE_FULL_DESCRIPTION),
}
PLATFORM_FIELDS = {
    "source": _str("An http(s) image URL the endpoint fetches, a gs://bucket/object from a bucket in "
                   "ALLOWED_SOURCE_BUCKETS, or base64 image data (a data: URL too); instead of `file`"),
    **{name: params.NUMBERS[name].schema() for name in ("conf", "iou", "imgsz")},
    "normalize": _bool(False, "Coordinates as fractions of width and height"),
    **{name: params.NUMBERS[name].schema() for name in ("decimals", "max_det")},
    "classes": _str("Comma-separated class names or ids to keep"),
    "vid_stride": params.NUMBERS["vid_stride"].schema(),
    "track": _bool(False, "For a video: follow each object across frames (rows carry track_id; metadata adds tracks "
                          "and counts); conf then defaults to 0.1, as Ultralytics' model.track"),
    "tracker": _str("With track=true: Ultralytics' tracker config", enum=list(TRACKERS), default=DEFAULT_TRACKER),
    "format": _str("`image`: the annotated image (Ultralytics' Results.plot()) as JPEG", enum=["json", "image"], default="json"),
    "show_labels": _bool(True, "format=image: draw class names"),
    "show_conf": _bool(True, "format=image: draw confidences"),
    "line_width": params.NUMBERS["line_width"].schema(),
    "bits": {"type": "integer", "enum": list(params.BITS), "default": 8, "description": params.BITS_DESCRIPTION},
    **SLICE_FIELDS,
}
HUB_FIELDS = {
    "image": _str("The image (seeds 000/001): answered in the v1 envelope", format="binary"),
    "url": _str("An http(s) image URL, instead of `image` (v1 envelope)"),
    "size": PLATFORM_FIELDS["imgsz"],
    "confidence": PLATFORM_FIELDS["conf"],
    "iou": {**PLATFORM_FIELDS["iou"], "default": 0.45},
    "normalize": PLATFORM_FIELDS["normalize"],
    "file": _str("The image or video (seed 002): answered in the Platform shape", format="binary"),
    "imgsz": PLATFORM_FIELDS["imgsz"],
    "conf": PLATFORM_FIELDS["conf"],
    "bits": PLATFORM_FIELDS["bits"],
    **SLICE_FIELDS,
}
DEPTH_MAP_FORMAT = _str("Depth models: `normalized_depth` as a 16-bit PNG, an 8-bit PNG or nested lists (base64 PNGs)",
                        enum=list(roboflow.DEPTH_FORMATS), default="png16")
ROBOFLOW_QUERY = {
    "api_key": _str("The API key (also accepted: Authorization: Bearer, x-api-key)"),
    "image": _str("An http(s) image URL, instead of a body"),
    **{name: roboflow.QUERY_NUMBERS[name].schema() for name in ("confidence", "overlap")},
    "classes": _str("Comma-separated class names to keep"),
    "max_detections": roboflow.QUERY_NUMBERS["max_detections"].schema(),
    "format": _str("json, image (annotated JPEG) or image_and_json (`visualization`, base64 JPEG)",
                   enum=["json", "image", "image_and_json"], default="json"),
    "labels": _bool(False, "Draw class names on the annotated image"),
    "stroke": roboflow.QUERY_NUMBERS["stroke"].schema(),
    "name": _str("The image's file name (ignored)"),
    "depth_map_format": DEPTH_MAP_FORMAT,
    **SLICE_FIELDS,
}
ROBOFLOW_IMAGE = _object({"type": _str("How `value` is given", enum=["base64", "url"]), "value": _str("Base64 data or an http(s) URL")},
                         ("type", "value"))
ROBOFLOW_V1_REQUEST = _object({
    "model_id": _str("`project/version`; the project must be MODEL_ID when that is set"),
    "api_key": _str("The API key (or the `api_key` query parameter, or Authorization: Bearer)"),
    "image": {"oneOf": [ROBOFLOW_IMAGE, _array(ROBOFLOW_IMAGE, minItems=1)]},
    **{name: roboflow_server.BODY_NUMBERS[name].schema() for name in ("confidence", "iou_threshold", "max_detections")},
    "class_filter": _array(_str("A class name"), description="Class names to keep"),
    "visualize_predictions": _bool(False, "Add `visualization`, the annotated image as base64 JPEG"),
    "visualization_labels": _bool(False, "Draw class names"),
    "visualization_stroke_width": roboflow_server.BODY_NUMBERS["visualization_stroke_width"].schema(),
    "depth_map_format": DEPTH_MAP_FORMAT,
}, ("model_id", "image"))

# -- responses ---------------------------------------------------------------------------------------------------------

BOX4 = _object({k: NUMBER for k in ("x1", "y1", "x2", "y2")}, ("x1", "y1", "x2", "y2"))
BOX8 = _object({f"{a}{i}": NUMBER for i in range(1, 5) for a in "xy"}, tuple(f"{a}{i}" for i in range(1, 5) for a in "xy"))
SUMMARY_ENTRY = _object({  # Ultralytics' Results.summary(), every task
    "name": {"type": "string"}, "class": INTEGER, "confidence": NUMBER,
    "box": {"oneOf": [BOX4, BOX8]},
    "segments": _object({"x": NUMBERS, "y": NUMBERS}, ("x", "y")),
    "keypoints": _object({"x": NUMBERS, "y": NUMBERS, "visible": NUMBERS}, ("x", "y")),
    "pixel_ratio": {**NUMBER, "description": "semantic: the fraction of the image's pixels of this class"},
    "track_id": {**INTEGER, "description": "track=true: the object's id, the same in every frame it is in"},
}, ("name", "class"),
    description="detect: box; segment: box + segments; pose: box + keypoints; obb: box with 4 corners; classify: top 5, "
                "no box; semantic: one row per class present, with its pixel_ratio and no confidence; depth: no rows")
PNG_DATA = _str("Base64 PNG, grayscale")
SEMANTIC_MASK = _object({
    "shape": _array(INTEGER, minItems=2, maxItems=2, description="[height, width]: the image's own"),
    "encoding": {"type": "string", "enum": ["png"]},
    "data": _str("Base64 grayscale PNG, pixel = class id (16-bit past 256 classes; 255 = excluded by `classes`)"),
}, ("shape", "encoding", "data"), description="semantic models: the class id of every pixel")
DEPTH_MAP = _object({
    "shape": _array(INTEGER, minItems=2, maxItems=2, description="[height, width]: long side imgsz, aspect kept"),
    "encoding": {"type": "string", "enum": ["png"]},
    "data": _str("Base64 grayscale PNG (8-bit for bits=8, 16-bit for 12 and 16); "
                 "depth = pixel * max / (255 for 8 bits, 65535 for 12 and 16); 0 = no depth"),
    "min": {"type": ["number", "null"], "description": "Nearest valid depth, metres (null: no pixel has one)"},
    "max": {"type": ["number", "null"], "description": "Farthest valid depth, metres"},
    "bits": {"type": "integer", "enum": [8, 12, 16]},
}, ("shape", "encoding", "data", "min", "max", "bits"), description="depth models: metres per pixel, quantised")
PLATFORM_IMAGE = _object({
    "shape": _array(INTEGER, minItems=2, maxItems=2, description="[height, width]"),
    "results": _array(SUMMARY_ENTRY),
    "speed": _object({k: NUMBER for k in ("preprocess", "inference", "postprocess")}, ("preprocess", "inference", "postprocess")),
    "frame": {**INTEGER, "description": "video only: the frame's index"},
    "timestamp": {**NUMBER, "description": "video only: seconds from the start"},
    "semantic_mask": SEMANTIC_MASK,
    "depth": DEPTH_MAP,
}, ("shape", "results", "speed"))
PLATFORM_RESPONSE = _object({
    "images": _array(PLATFORM_IMAGE),
    "metadata": _object({
        "imageCount": INTEGER, "functionTimeAlive": NUMBER, "functionTimeCall": NUMBER, "model": {"type": "string"},
        "task": _str("detect, segment, pose, classify, obb, semantic or depth"), "version": {"type": "object", "additionalProperties": {"type": "string"}},
        "tracks": _array(_object({"track_id": INTEGER, "class": INTEGER, "name": {"type": "string"},
                                  "first_frame": INTEGER, "last_frame": INTEGER, "frames": INTEGER},
                                 ("track_id", "class", "name", "first_frame", "last_frame", "frames")),
                         description="track=true: every track seen, in id order; class: the one it had in most frames"),
        "counts": {"type": "object", "additionalProperties": INTEGER,
                   "description": "track=true: unique tracks per class name"},
        "slices": {**INTEGER, "description": "With slice_size: the tiles run, for all the images"},
    }, ("imageCount", "functionTimeAlive", "functionTimeCall", "model", "task", "version")),
}, ("images", "metadata"))
PLATFORM_ERROR = _object({"error": _object({"code": INTEGER, "status": {"type": "string"}, "message": {"type": "string"}},
                                           ("code", "status", "message"))}, ("error",))
HUB_ENTRY = _object({
    "class": INTEGER, "name": {"type": "string"}, "confidence": NUMBER,
    "xcenter": NUMBER, "ycenter": NUMBER, "width": NUMBER, "height": NUMBER,  # detect
    "obb": NUMBERS, "segment": NUMBERS, "keypoints": NUMBERS,  # obb, segment, pose (flat, normalized)
    "box": {"oneOf": [BOX4, BOX8]}, "segments": SUMMARY_ENTRY["properties"]["segments"],  # HUB_V1_DATA=tojson
    "pixel_ratio": SUMMARY_ENTRY["properties"]["pixel_ratio"],  # semantic (its summary() rows)
}, ("class", "name"))
HUB_ENVELOPE = _object({"success": {"type": "boolean"}, "message": {"type": "string"}, "data": _array(HUB_ENTRY),
                        "semantic_mask": SEMANTIC_MASK, "depth": DEPTH_MAP}, ("success", "message", "data"))
HUB_ERROR = _object({"success": {"type": "boolean", "enum": [False]}, "message": {"type": "string"},
                     "error": PLATFORM_ERROR["properties"]["error"]}, ("success", "message", "error"))
POINT = _object({"x": NUMBER, "y": NUMBER}, ("x", "y"))
ROBOFLOW_PREDICTION = _object({
    "x": NUMBER, "y": NUMBER, "width": NUMBER, "height": NUMBER, "confidence": NUMBER,
    "class": {"type": "string"}, "class_id": INTEGER, "detection_id": {"type": "string"},
    "points": _array(POINT, description="instance segmentation: the polygon; OBB: the 4 corners"),
    "mask_format": {"type": "string", "enum": ["polygon"]},
    "keypoints": _array(_object({"x": NUMBER, "y": NUMBER, "confidence": NUMBER, "class_id": INTEGER, "class": {"type": "string"}},
                                ("x", "y", "confidence", "class_id", "class"))),
}, ("x", "y", "width", "height", "confidence", "class", "class_id", "detection_id"))
ROBOFLOW_CLASS = _object({"class": {"type": "string"}, "class_id": INTEGER, "confidence": NUMBER}, ("class", "class_id", "confidence"))
ROBOFLOW_COMMON = {"inference_id": {"type": "string"}, "time": NUMBER,
                   "image": _object({"width": INTEGER, "height": INTEGER}, ("width", "height")),
                   "visualization": _str("format=image_and_json / visualize_predictions: the annotated image, base64 JPEG")}
ROBOFLOW_RESPONSE = {"oneOf": [
    _object({**ROBOFLOW_COMMON, "predictions": _array(ROBOFLOW_PREDICTION), "top": {"not": {}}},
            ("inference_id", "time", "image", "predictions"), title="detection, instance segmentation, keypoints"),
    _object({**ROBOFLOW_COMMON, "predictions": _array(ROBOFLOW_CLASS), "top": {"type": "string"}, "confidence": NUMBER},
            ("inference_id", "time", "image", "predictions", "top", "confidence"), title="classification"),
    _object({**ROBOFLOW_COMMON, "predictions": _object({
        "segmentation_mask": _str("Base64 grayscale PNG, pixel = class id, the image's size"),
        "class_map": {"type": "object", "additionalProperties": {"type": "string"},
                      "description": "Every class id (as a string) -> its name"},
    }, ("segmentation_mask", "class_map"))}, ("inference_id", "time", "image", "predictions"), title="semantic segmentation"),
    _object({"inference_id": {"type": "string"}, "time": NUMBER,
             "normalized_depth": {"oneOf": [_str("Base64 grayscale PNG (png16, png8)"), _array(NUMBERS)],
                                  "description": "1 nearest, 0 farthest (and no depth), relative to this image; "
                                                 "long side imgsz"},
             "depth_map_format": {"type": "string", "enum": list(roboflow.DEPTH_FORMATS)},
             "visualization": ROBOFLOW_COMMON["visualization"], "image": _str("visualize_predictions: as `visualization`")},
            ("inference_id", "time", "normalized_depth", "depth_map_format"), title="depth estimation"),
]}
ROBOFLOW_ERROR = _object({"message": {"type": "string"}}, ("message",))
ROBOFLOW_FORBIDDEN = _object({"Message": {"type": "string", "enum": ["User is not authorized to access this resource"]}}, ("Message",))
MODEL_DESCRIPTION = _object({"model_id": {"type": "string"}, "task_type": _str("Roboflow's task type", enum=sorted(set(roboflow_server.TASK_TYPES.values()))),
                             "batch_size": {"type": ["integer", "string", "null"]}, "input_height": {"type": ["integer", "null"]},
                             "input_width": {"type": ["integer", "null"]}}, ("model_id", "task_type"))
REGISTRY = _object({"models": _array(MODEL_DESCRIPTION)}, ("models",))

SCHEMAS = {
    "PlatformResponse": PLATFORM_RESPONSE, "PlatformError": PLATFORM_ERROR, "HubEnvelope": HUB_ENVELOPE, "HubError": HUB_ERROR,
    "RoboflowResponse": ROBOFLOW_RESPONSE, "RoboflowError": ROBOFLOW_ERROR, "RoboflowForbidden": ROBOFLOW_FORBIDDEN,
    "Registry": REGISTRY,
}

ERROR_STATUSES = {
    "400": "A parameter out of range, no image, an image or video that cannot be decoded, a refused `source` URL "
           "or gs:// bucket, a `source` that is unreachable or missing; slice_size for a task or a video that cannot "
           "be sliced, or cutting an image into more than MAX_SLICES tiles",
    "401": "API keys are on and the request has none or a wrong one",
    "404": "Unknown path, or a model id other than MODEL_ID",
    "405": "Wrong method",
    "413": "Over MAX_UPLOAD_MB, MAX_VIDEO_MB, MAX_IMAGES, MAX_IMAGE_PIXELS or MAX_VIDEO_FRAMES",
    "415": "Not an image (or video)",
    "429": "MAX_QUEUE images already waiting (Retry-After)",
    "503": "The model is loading (Retry-After)",
    "504": "Not done within REQUEST_TIMEOUT_S",
}


def _errors(schema: str, forbidden: bool = False) -> dict:
    responses = {status: {"description": text, "content": {"application/json": {"schema": _ref(schema)}}}
                 for status, text in ERROR_STATUSES.items()}
    if forbidden:  # Roboflow's hosted API answers a missing or wrong key with its own 403
        del responses["401"]
        responses["403"] = {"description": "A missing or wrong key", "content": {"application/json": {"schema": _ref("RoboflowForbidden")}}}
    responses["default"] = {"description": "Any other refusal (408, 414, 431, 500...)",
                            "content": {"application/json": {"schema": _ref(schema)}}}
    return responses


def _form(fields: dict, files: dict) -> dict:
    return {"required": True, "content": {
        "multipart/form-data": {"schema": _object({**files, **fields})},
        "application/x-www-form-urlencoded": {"schema": _object(fields)},
    }}


SECURITY = [{"bearer": []}, {"apiKeyHeader": []}, {}]
PLATFORM_FILES = {"file": {"oneOf": [BINARY, _array(BINARY, maxItems=16)],
                           "description": "An image (repeat for several, up to MAX_IMAGES) or one video (MP4, MOV, AVI, MKV, WebM...)"}}


def _platform(summary: str, path_id: bool) -> dict:
    operation = {
        "summary": summary, "tags": ["Ultralytics Platform"], "security": SECURITY,
        "requestBody": _form(PLATFORM_FIELDS, PLATFORM_FILES),
        "responses": {"200": {"description": "Results per image (or per processed video frame), or the annotated JPEG",
                              "content": {"application/json": {"schema": _ref("PlatformResponse")}, **JPEG}},
                      **_errors("PlatformError")},
    }
    if path_id:
        operation["parameters"] = [{"name": "model_id", "in": "path", "required": True, "schema": {"type": "string"}}]
    return {"post": operation}


def _roboflow_hosted() -> dict:
    operation = {
        "tags": ["Roboflow"], "security": SECURITY + [{"apiKeyQuery": []}],
        "parameters": [{"name": "project", "in": "path", "required": True, "schema": {"type": "string"},
                        "description": "The project slug: MODEL_ID when that is set"},
                       {"name": "version", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 0}}]
        + [{"name": name, "in": "query", "schema": schema} for name, schema in ROBOFLOW_QUERY.items()],
        "responses": {"200": {"description": "Roboflow's response, or the annotated JPEG (format=image)",
                              "content": {"application/json": {"schema": _ref("RoboflowResponse")}, **JPEG}},
                      **_errors("RoboflowError", forbidden=True)},
    }
    body = {"content": {
        "application/x-www-form-urlencoded": {"schema": _str("The image, base64 (read raw, not form-decoded)")},
        "text/plain": {"schema": _str("The image, base64")},
        "multipart/form-data": {"schema": _object({"file": BINARY}, ("file",))},
    }}
    return {"post": {**operation, "summary": "Roboflow hosted API (seed 004)", "requestBody": body},
            "get": {**operation, "summary": "Roboflow hosted API with image=<URL>", "operationId": "roboflow_get"}}


def _roboflow_infer(route: str) -> dict:
    return {"post": {
        "summary": f"Roboflow inference server v1: {route.replace('_', ' ')} (inference-sdk)", "tags": ["Roboflow"],
        "security": SECURITY + [{"apiKeyQuery": []}],
        "parameters": [{"name": name, "in": "query", "schema": schema} for name, schema in SLICE_FIELDS.items()],
        "requestBody": {"required": True, "content": {"application/json": {"schema": ROBOFLOW_V1_REQUEST}}},
        "responses": {"200": {"description": "One response per image (a list when `image` is a list)",
                              "content": {"application/json": {"schema": {"oneOf": [_ref("RoboflowResponse"), _array(_ref("RoboflowResponse"))]}}}},
                      **_errors("RoboflowError")},
    }}


def _system(summary: str, content: dict, errors: bool = True) -> dict:
    responses = {"200": {"description": summary, "content": content}}
    if errors:
        responses["503"] = {"description": "The model is loading", "content": {"application/json": {"schema": _ref("PlatformError")}}}
    responses["default"] = {"description": "An error", "content": {"application/json": {"schema": _ref("PlatformError")}}}
    return {"get": {"summary": summary, "tags": ["System"], "responses": responses}}


@lru_cache(maxsize=1)
def document() -> dict:
    paths = {
        "/predict": _platform("Predict (Ultralytics Platform dedicated endpoint)", path_id=False),
        "/api/models/{model_id}/predict": _platform("Predict (Ultralytics Platform URL shape)", path_id=True),
        "/v1/predict/{model_id}": {"post": {
            "summary": "Ultralytics HUB Inference API v1 (seeds 000, 001, 002)", "tags": ["Ultralytics HUB v1"],
            "security": SECURITY,
            "parameters": [{"name": "model_id", "in": "path", "required": True, "schema": {"type": "string"}}],
            "requestBody": _form({k: v for k, v in HUB_FIELDS.items() if k not in ("image", "file")},
                                 {"image": HUB_FIELDS["image"], "file": HUB_FIELDS["file"]}),
            "responses": {"200": {"description": "`image`/`url` requests: the v1 envelope; `file` requests: the Platform shape",
                                  "content": {"application/json": {"schema": {"oneOf": [_ref("HubEnvelope"), _ref("PlatformResponse")]}}, **JPEG}},
                          **_errors("HubError")},
        }},
        **{f"/infer/{route}": _roboflow_infer(route) for route in roboflow_server.ROUTE_TASKS},
        "/model/registry": {"get": {"summary": "Roboflow: the models served", "tags": ["Roboflow"], "responses": {
            "200": {"description": "The one model", "content": {"application/json": {"schema": _ref("Registry")}}},
            "default": {"description": "An error", "content": {"application/json": {"schema": _ref("RoboflowError")}}}}}},
        "/model/add": {"post": {
            "summary": "Roboflow: register a model id (the endpoint's one model, under that id)", "tags": ["Roboflow"],
            "security": SECURITY + [{"apiKeyQuery": []}],
            "requestBody": {"required": True, "content": {"application/json": {"schema": _object(
                {"model_id": ROBOFLOW_V1_REQUEST["properties"]["model_id"], "api_key": ROBOFLOW_V1_REQUEST["properties"]["api_key"]},
                ("model_id",))}}},
            "responses": {"200": {"description": "The registry, with the id", "content": {"application/json": {"schema": _ref("Registry")}}},
                          **_errors("RoboflowError")},
        }},
        "/{project}/{version}": _roboflow_hosted(),
        "/healthz": _system("Liveness", {"application/json": {"schema": _object({"status": {"type": "string"}}, ("status",))}}, errors=False),
        "/readyz": _system("Readiness: the model is loaded and warmed", {"application/json": {"schema": _object(
            {"status": {"type": "string"}, "model": {"type": "string"}, "task": {"type": "string"},
             "models": {"type": "integer", "description": "With MODELS: how many models GET /models lists"}},
            ("status", "model", "task"))}}),
        "/models": {"get": {**_system("Every model this endpoint serves: the default (MODEL) and MODELS' ids, each with its "
                                      "task, whether it is loaded, its measured memory and load seconds", {"application/json": {
            "schema": _object({"default": {"type": "string"}, "max_loaded_models": {"type": "integer"},
                               "model_memory_mb": {"type": ["integer", "null"]}, "models": _array(_object({
                                   "id": {"type": "string"}, "task": {"type": ["string", "null"]},
                                   "loaded": {"type": "boolean"}, "pinned": {"type": "boolean"},
                                   "default": {"type": "boolean"}, "memory_mb": {"type": ["number", "null"]},
                                   "load_seconds": {"type": ["number", "null"]}, "loads": {"type": "integer"},
                                   "inflight": {"type": ["integer", "null"]}, "error": {"type": ["string", "null"]}},
                                   ("id", "task", "loaded", "default")))},
                              ("default", "models"))}}, errors=False)["get"], "security": SECURITY}},
        "/metrics": _system("Prometheus metrics", {"text/plain": {"schema": {"type": "string"}}}, errors=False),
        "/openapi.json": _system("This document", {"application/json": {"schema": {"type": "object"}}}, errors=False),
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "YOLO on Cloud Run", "version": "1",
                 "description": "Ultralytics YOLO inference in the request and response shapes of the Ultralytics "
                                "Platform, Ultralytics HUB v1 and Roboflow (hosted API and inference server v1)."},
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKeyHeader": {"type": "apiKey", "in": "header", "name": "x-api-key"},
                "apiKeyQuery": {"type": "apiKey", "in": "query", "name": "api_key"},
            },
        },
    }
