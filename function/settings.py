"""Every environment variable the service reads, read in one place into one `Settings` object."""

from __future__ import annotations

import ipaddress
import json
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Mapping

from .errors import ConfigError
from .models.params import TASKS
from .numbers import strict_float, strict_int

TRUE = {"1", "true", "yes", "on"}
FALSE = {"0", "false", "no", "off", ""}


@dataclass(frozen=True)
class DialectSettings:
    """The little of the configuration a dialect may read: the model id clients must name, and HUB's envelope."""

    model_id: str | None = None
    hub_v1_data: str = "hub"


@dataclass(frozen=True)
class Settings:
    model: str
    model_id: str | None = None
    model_task: str | None = None
    model_cache_dir: Path = Path("/tmp/model-cache")
    device: str | None = None
    api_keys: tuple[str, ...] = field(default=(), repr=False)
    allow_unauthenticated: bool = False
    on_cloud_run: bool = False
    host: str = "0.0.0.0"
    port: int = 8080
    threads: int = 8
    max_upload_bytes: int = 10 * 1024 * 1024
    max_images: int = 16
    max_video_bytes: int = 100 * 1024 * 1024
    max_video_frames: int = 3000
    hub_v1_data: str = "hub"  # the HUB v1 envelope's `data`: "hub" (per-task flat lists) or "tojson" (results[0].tojson())
    max_image_pixels: int = 89_478_485  # Pillow's own default bomb threshold
    max_slices: int = 256  # tiles of one image in sliced inference: an 8000x8000 photo at slice_size=640
    decode_budget_pixels: int = 89_478_485
    request_timeout_s: float = 60.0
    max_queue: int = 32
    max_connections: int = 1000
    max_buffered_bytes: int = 256 * 1024 * 1024
    forwarded_hops: int = 0
    max_batch_size: int = 1
    max_batch_wait_ms: float = 0.0  # no waiting for a batch to fill: what is queued when the model is free is a batch
    engine: str | None = None  # pytorch, onnx, openvino, tensorrt, auto; None (unset, "default"): engines.choose_engine
    url_timeout_s: float = 10.0
    url_allowed_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    allowed_source_buckets: tuple[str, ...] = ()  # buckets a gs:// `source` may name; none: gs:// sources are off
    gcs_chunk_mb: int = 32
    gcs_workers: int = 8
    log_level: str = "INFO"
    project: str | None = None
    graceful_timeout_s: int = 8
    cors_origins: tuple[str, ...] = ()
    # Several models (docs/models.md): id -> weights, beside MODEL (the default); loaded on demand into an LRU.
    models: tuple[tuple[str, str], ...] = ()
    max_loaded_models: int = 3  # models of MODELS loaded at once (the default model is not one of them)
    model_memory_bytes: int = 0  # their measured footprints' sum; 0: no bound but the count
    preload: tuple[str, ...] = ()  # loaded at start, evictable
    pin: tuple[str, ...] = ()  # loaded at start, never evicted; /readyz waits for them
    # Live streams (GET /stream, docs/streams.md): open at once per instance (0: from the device, core/admission.py),
    # and how long one may go without a frame.
    max_streams: int = 0
    stream_idle_s: float = 30.0

    @property
    def default_model_id(self) -> str:
        """The id the default model answers to: MODEL_ID, else its weights' file name without the suffix."""
        return self.model_id or Path(self.model.rstrip("/")).stem or "default"

    @property
    def dialects(self) -> DialectSettings:
        return DialectSettings(self.model_id, self.hub_v1_data)

    @property
    def auth_required(self) -> bool:
        return bool(self.api_keys)

    @property
    def max_body_bytes(self) -> int:
        """The largest request body worth reading: MAX_IMAGES files, or one base64 `source` (4/3 of an image), plus
        the multipart framing, or one video."""
        return max(self.max_upload_bytes * self.max_images, self.max_field_bytes, self.max_video_bytes) + 64 * 1024

    @property
    def max_field_bytes(self) -> int:
        """The largest non-file form field: a base64 `source`."""
        return self.max_upload_bytes * 4 // 3 + 4096


def _int(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = strict_int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not an integer (expected {low}-{high})") from None
    if not low <= value <= high:
        raise ConfigError(f"{name}={value} is out of range (expected {low}-{high})")
    return value


def _float(env: Mapping[str, str], name: str, default: float, low: float, high: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = strict_float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number (expected {low}-{high})") from None
    if not low <= value <= high:
        raise ConfigError(f"{name}={value} is out of range (expected {low}-{high})")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool = False) -> bool:
    raw = env.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in TRUE:
        return True
    if value in FALSE:
        return False
    raise ConfigError(f"{name}={raw!r} is not a boolean (expected true or false)")


def _choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    value = env.get(name, "").strip().lower() or default
    if value not in choices:
        raise ConfigError(f"{name}={value!r} must be one of {', '.join(choices)}")
    return value


def _engine(env: Mapping[str, str]) -> str | None:
    value = _choice(env, "ENGINE", "default", ("default", "pytorch", "onnx", "openvino", "tensorrt", "auto"))
    return None if value == "default" else value


def _api_keys(env: Mapping[str, str]) -> tuple[str, ...]:
    keys = [k.strip() for k in env.get("API_KEYS", "").split(",")]
    path = env.get("API_KEYS_FILE", "").strip()
    if path:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"API_KEYS_FILE={path} cannot be read: {exc.strerror or exc}") from None
        keys += [line.strip() for line in text.splitlines()]
        if not any(keys):
            raise ConfigError(f"API_KEYS_FILE={path} holds no key")
    return tuple(dict.fromkeys(k for k in keys if k))


def _networks(env: Mapping[str, str], name: str) -> tuple:
    networks = []
    for item in env.get(name, "").split(","):
        if item.strip():
            try:
                networks.append(ipaddress.ip_network(item.strip(), strict=False))
            except ValueError:
                raise ConfigError(f"{name}: {item.strip()!r} is not an IP network (e.g. 10.0.0.0/8)") from None
    return tuple(networks)


_BUCKET = re.compile(r"[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]")


def _buckets(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    buckets = []
    for item in env.get(name, "").split(","):
        bucket = item.strip().removeprefix("gs://").rstrip("/")
        if bucket:
            if not _BUCKET.fullmatch(bucket):
                raise ConfigError(f"{name}: {item.strip()!r} is not a Cloud Storage bucket name")
            buckets.append(bucket)
    return tuple(dict.fromkeys(buckets))


_MODEL_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def _models_text(raw: str) -> str:
    """MODELS as written, or the JSON it names (a local file, or a gs:// object read with the service's identity)."""
    if "=" in raw or not raw:
        return raw
    if raw.startswith("gs://"):
        bucket, _, name = raw[len("gs://"):].partition("/")
        try:
            from google.cloud import storage

            return storage.Client().bucket(bucket).blob(name).download_as_text()
        except Exception as exc:
            raise ConfigError(f"MODELS={raw} cannot be read: {type(exc).__name__}: {exc}") from None
    try:
        return Path(raw).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"MODELS={raw} cannot be read: {exc.strerror or exc}") from None


def _models(env: Mapping[str, str], default_id: str, default_weights: str) -> tuple[tuple[str, str], ...]:
    """`id=weights,id=weights`, or a JSON object {id: weights} in a file or a gs:// object. An entry with the default
    model's id and weights is the default model itself; with other weights it is an error."""
    raw = env.get("MODELS", "").strip()
    text = _models_text(raw)
    if "=" in raw or not raw:
        pairs = [item.partition("=")[::2] for item in text.split(",") if item.strip()]
        if any(not weights.strip() for _, weights in pairs):
            raise ConfigError("MODELS must be id=weights pairs, comma-separated (or a JSON file of {id: weights})")
    else:
        try:
            mapping = json.loads(text)
        except ValueError:
            raise ConfigError(f"MODELS={raw} is not a JSON object of {{id: weights}}") from None
        if not isinstance(mapping, dict) or not all(isinstance(w, str) and w.strip() for w in mapping.values()):
            raise ConfigError(f"MODELS={raw} must hold a JSON object of {{id: weights}}, each weights a string")
        pairs = list(mapping.items())
    models: dict[str, str] = {}
    for model_id, weights in ((i.strip(), w.strip()) for i, w in pairs):
        if not _MODEL_ID.fullmatch(model_id):
            raise ConfigError(f"MODELS: {model_id!r} is not a model id (letters, digits, '.', '_', '-'; one URL segment)")
        if model_id in models:
            raise ConfigError(f"MODELS: {model_id!r} is given twice")
        if model_id == default_id:
            if weights != default_weights:
                raise ConfigError(f"MODELS: {model_id!r} is the default model's id (MODEL={default_weights}) with other weights")
            continue
        models[model_id] = weights
    return tuple(models.items())


def _model_ids(env: Mapping[str, str], name: str, models: tuple[tuple[str, str], ...]) -> tuple[str, ...]:
    ids = tuple(dict.fromkeys(i.strip() for i in env.get(name, "").split(",") if i.strip()))
    known = {model_id for model_id, _ in models}
    for model_id in ids:
        if model_id not in known:
            raise ConfigError(f"{name}: {model_id!r} is not an id in MODELS")
    return ids


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read and validate the environment; raise ConfigError naming the bad variable."""
    env = os.environ if env is None else env
    model = env.get("MODEL", "").strip()
    if not model:
        raise ConfigError("MODEL is not set: give gs://bucket/path/best.pt, a local path, an https URL or a name like yolo26n.pt")
    device = env.get("DEVICE", "").strip() or None
    task = env.get("MODEL_TASK", "").strip() or None
    if task and task not in TASKS:
        raise ConfigError(f"MODEL_TASK={task!r} must be one of {', '.join(TASKS)}")
    on_cloud_run = bool(env.get("K_SERVICE"))
    max_pixels = _int(env, "MAX_IMAGE_PIXELS", 89_478_485, 1024, 2**31 - 1)
    level = env.get("LOG_LEVEL", "INFO").strip().upper() or "INFO"
    if level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise ConfigError(f"LOG_LEVEL={level!r} must be DEBUG, INFO, WARNING or ERROR")
    settings = Settings(
        model=model,
        model_id=env.get("MODEL_ID", "").strip() or None,
        model_task=task,
        model_cache_dir=Path(env.get("MODEL_CACHE_DIR", "").strip() or "/tmp/model-cache"),
        device=device,
        api_keys=_api_keys(env),
        allow_unauthenticated=_bool(env, "ALLOW_UNAUTHENTICATED"),
        on_cloud_run=on_cloud_run,
        host=env.get("HOST", "").strip() or "0.0.0.0",
        port=_int(env, "PORT", 8080, 1, 65535),
        threads=_int(env, "THREADS", 8, 1, 256),
        max_upload_bytes=_int(env, "MAX_UPLOAD_MB", 10, 1, 1024) * 1024 * 1024,
        max_images=_int(env, "MAX_IMAGES", 16, 1, 256),
        max_video_bytes=_int(env, "MAX_VIDEO_MB", 100, 1, 4096) * 1024 * 1024,
        max_video_frames=_int(env, "MAX_VIDEO_FRAMES", 3000, 1, 1_000_000),
        hub_v1_data=_choice(env, "HUB_V1_DATA", "hub", ("hub", "tojson")),
        max_image_pixels=max_pixels,
        max_slices=_int(env, "MAX_SLICES", 256, 1, 100_000),
        decode_budget_pixels=_int(env, "DECODE_BUDGET_PIXELS", max_pixels, max_pixels, 2**40),
        request_timeout_s=_float(env, "REQUEST_TIMEOUT_S", 60.0, 0.1, 3600.0),
        max_queue=_int(env, "MAX_QUEUE", 32, 1, 100_000),
        max_connections=_int(env, "MAX_CONNECTIONS", 1000, 1, 1_000_000),
        max_buffered_bytes=_int(env, "MAX_BUFFERED_MB", 256, 1, 1_000_000) * 1024 * 1024,
        forwarded_hops=_int(env, "FORWARDED_HOPS", 1 if on_cloud_run else 0, 0, 16),
        max_batch_size=_int(env, "MAX_BATCH_SIZE", 1, 1, 256),
        max_batch_wait_ms=_float(env, "MAX_BATCH_WAIT_MS", 0.0, 0.0, 1000.0),
        engine=_engine(env),
        url_timeout_s=_float(env, "URL_TIMEOUT_S", 10.0, 0.1, 120.0),
        url_allowed_networks=_networks(env, "URL_ALLOWED_NETWORKS"),
        allowed_source_buckets=_buckets(env, "ALLOWED_SOURCE_BUCKETS"),
        gcs_chunk_mb=_int(env, "GCS_CHUNK_MB", 32, 1, 1024),
        gcs_workers=_int(env, "GCS_WORKERS", 8, 1, 64),
        log_level=level,
        project=env.get("GOOGLE_CLOUD_PROJECT", "").strip() or None,
        cors_origins=tuple(o.strip().rstrip("/") for o in env.get("CORS_ORIGINS", "").split(",") if o.strip()),
        max_streams=_int(env, "MAX_STREAMS", 0, 0, 10_000),
        stream_idle_s=_float(env, "STREAM_IDLE_S", 30.0, 1.0, 3600.0),
    )
    models = _models(env, settings.default_model_id, settings.model)
    pin = _model_ids(env, "PIN", models)
    max_loaded = _int(env, "MAX_LOADED_MODELS", 3, 1, 1000)
    if len(pin) > max_loaded:
        raise ConfigError(f"PIN names {len(pin)} models, more than MAX_LOADED_MODELS={max_loaded}")
    preload = tuple(i for i in _model_ids(env, "PRELOAD", models) if i not in pin)
    if len(pin) + len(preload) > max_loaded:  # they would evict one another before serving anyone
        raise ConfigError(f"PIN and PRELOAD name {len(pin) + len(preload)} models, more than MAX_LOADED_MODELS="
                          f"{max_loaded}: preload fewer, or raise MAX_LOADED_MODELS")
    settings = replace(settings, models=models, max_loaded_models=max_loaded, pin=pin,
                       model_memory_bytes=_int(env, "MODEL_MEMORY_MB", 0, 0, 10_000_000) * 2**20, preload=preload)
    if settings.on_cloud_run and not settings.api_keys and not settings.allow_unauthenticated:
        raise ConfigError(
            "refusing to start on Cloud Run without API keys: set API_KEYS or API_KEYS_FILE, "
            "or ALLOW_UNAUTHENTICATED=true to serve without them"
        )
    return settings


@dataclass(frozen=True)
class TaskShare:
    """Which task of a Cloud Run Job execution this process is (`python -m function batch`): outside a job, the only
    one. Cloud Run sets CLOUD_RUN_TASK_INDEX (0-based), CLOUD_RUN_TASK_COUNT and CLOUD_RUN_TASK_ATTEMPT."""

    index: int = 0
    count: int = 1
    attempt: int = 0


def load_task_share(env: Mapping[str, str] | None = None) -> TaskShare:
    env = os.environ if env is None else env
    count = _int(env, "CLOUD_RUN_TASK_COUNT", 1, 1, 10_000)
    index = _int(env, "CLOUD_RUN_TASK_INDEX", 0, 0, 9_999)
    if index >= count:
        raise ConfigError(f"CLOUD_RUN_TASK_INDEX={index} must be below CLOUD_RUN_TASK_COUNT={count}")
    return TaskShare(index, count, _int(env, "CLOUD_RUN_TASK_ATTEMPT", 0, 0, 1_000))
