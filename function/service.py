"""The service behind the HTTP function: start-up (weights → model → warm-up → ready) and predict, with no web types."""

from __future__ import annotations

import hmac
import os
import threading
import time

from PIL import Image

from .config import Settings
from .errors import BadImage, ModelNotReady, Unauthorized, WeightsError
from .images import decode_image
from .inference import InferenceLoop
from .logs import log
from .model import LoadedModel, encode_result, load_model, pick_device
from .params import PredictParams
from .source import SourceFetcher, decode_base64, is_url
from .weights import resolve_weights

# Gunicorn halts (no respawn) when a worker exits with its APP_LOAD_ERROR code.
EXIT_MODEL_FAILED = 4
# Where the Flask app keeps the Service (app.extensions), for the entry module to find.
SERVICE_KEY = "yolo_service"


class Service:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.model: LoadedModel | None = None
        self.loop: InferenceLoop | None = None
        self.ready = threading.Event()
        self.fetcher = SourceFetcher(settings.max_upload_bytes, settings.url_timeout_s, settings.url_allowed_networks)
        self._api_keys = tuple(key.encode() for key in settings.api_keys)

    # -- start-up -------------------------------------------------------------------------------------------------

    def start(self, on_failure=None) -> threading.Thread:
        """Load in the background so /healthz answers at once; on failure call on_failure (default: exit the process)."""
        thread = threading.Thread(target=self._load, args=(on_failure or _exit_process,), name="model-loader", daemon=True)
        thread.start()
        return thread

    def _load(self, on_failure) -> None:
        s = self.settings
        # decode_image checks every header against MAX_IMAGE_PIXELS itself, with a message that names the size.
        Image.MAX_IMAGE_PIXELS = None
        try:
            t0 = time.monotonic()
            weights = resolve_weights(s.model, s.model_cache_dir, s.gcs_chunk_mb * 2**20, s.gcs_workers)
            t1 = time.monotonic()
            device = pick_device(s.device)
            model = load_model(weights, device, s.model_task)
            t2 = time.monotonic()
            model.warm_up()
            t3 = time.monotonic()
        except WeightsError as exc:
            on_failure(str(exc))
            return
        except Exception as exc:  # anything else at start-up is just as fatal; say what it was
            on_failure(f"MODEL={s.model} could not be loaded: {type(exc).__name__}: {exc}")
            return
        self.model = model
        self.loop = InferenceLoop(model.predict, s.max_queue, s.max_batch_size, s.max_batch_wait_ms / 1000)
        self.loop.start()
        self.ready.set()
        log.info(
            f"ready: model {model.name} ({model.task}) on {model.device}{' fp16' if model.half else ''}",
            extra={"fields": {
                "model": model.name, "task": model.task, "device": model.device, "half": model.half,
                "startup_s": {"weights": round(t1 - t0, 3), "load": round(t2 - t1, 3), "warmup": round(t3 - t2, 3),
                              "total": round(t3 - t0, 3)},
            }},
        )

    def stop(self) -> None:
        if self.loop is not None:
            self.loop.stop(timeout=self.settings.graceful_timeout_s)

    # -- requests -------------------------------------------------------------------------------------------------

    def check_api_key(self, authorization: str | None, x_api_key: str | None) -> None:
        if not self._api_keys:
            return
        given = x_api_key or ""
        if authorization and authorization[:7].lower() == "bearer ":
            given = authorization[7:].strip()
        given_bytes = given.encode()
        # Compare against every key, always, so timing says nothing about which key or how much matched.
        matched = False
        for key in self._api_keys:
            matched |= hmac.compare_digest(key, given_bytes)
        if not given or not matched:
            raise Unauthorized("Unauthorized: send a valid API key as 'Authorization: Bearer KEY' or 'x-api-key: KEY'")

    def require_ready(self) -> LoadedModel:
        if not self.ready.is_set() or self.model is None:
            raise ModelNotReady("the model is loading; retry in a few seconds")
        return self.model

    def image_bytes(self, upload: bytes | None, source: str | None) -> bytes:
        """The uploaded file, else the `source` field (URL or base64)."""
        if upload is not None:
            return upload
        if source:
            source = source.strip()
            if is_url(source):
                return self.fetcher.fetch(source)
            return decode_base64(source, self.settings.max_upload_bytes)
        raise BadImage("No image: send it as multipart field 'file' (or 'image'), or 'source' with a URL or base64 data")

    def predict(self, data: bytes, params: PredictParams, started: float) -> dict:
        model = self.require_ready()
        image = decode_image(data, self.settings.max_image_pixels)
        result = self.loop.submit(image, params, self.settings.request_timeout_s)
        return {
            "images": [encode_result(result, params)],
            "metadata": {
                "imageCount": 1,
                "functionTimeCall": round(time.monotonic() - started, 5),
                "model": model.name,
                "version": model.versions,
            },
        }


def _exit_process(reason: str) -> None:
    log.critical(f"cannot serve: {reason}")
    for handler in log.handlers:
        handler.flush()
    os._exit(EXIT_MODEL_FAILED)
