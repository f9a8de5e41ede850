"""The service's Prometheus metrics (`GET /metrics`), in one registry of its own.

Labels carry only route templates, methods and status codes: never a key, a raw path, a filename or image data.
Names are what the Cloud Monitoring dashboard reads through Managed Service for Prometheus
(`prometheus.googleapis.com/<name>/<kind>`); rename one and the dashboard loses it.
"""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)

disable_created_metrics()  # the `_created` series double every counter and nothing reads them
REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)  # process_resident_memory_bytes, process_cpu_seconds_total, open fds
PlatformCollector(registry=REGISTRY)
GCCollector(registry=REGISTRY)

# From 1 ms (a health check) to 2 min (a long video); inference on a GPU is milliseconds, on a CPU tenths of seconds.
_SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)

REQUESTS = Counter("yolo_requests", "HTTP requests answered", ["route", "method", "status"], registry=REGISTRY)
REQUEST_SECONDS = Histogram("yolo_request_duration_seconds", "Request latency, arrival to answer", ["route"],
                            buckets=_SECONDS, registry=REGISTRY)
QUEUE_WAIT_SECONDS = Histogram("yolo_queue_wait_seconds", "Time an image waited for the model", buckets=_SECONDS,
                               registry=REGISTRY)
INFERENCE_SECONDS = Histogram("yolo_inference_seconds", "Time of one model call (a batch)", buckets=_SECONDS,
                              registry=REGISTRY)
BATCH_SIZE = Histogram("yolo_batch_size", "Images per model call", buckets=(1, 2, 4, 8, 16, 32, 64), registry=REGISTRY)
QUEUE_DEPTH = Gauge("yolo_queue_depth", "Images waiting for the model", registry=REGISTRY)
INFLIGHT = Gauge("yolo_inflight_requests", "Predict requests admitted and not yet answered", registry=REGISTRY)
IMAGES = Counter("yolo_images", "Images run through the model", registry=REGISTRY)
VIDEO_FRAMES = Counter("yolo_video_frames", "Video frames run through the model", registry=REGISTRY)
MODEL_LOAD_SECONDS = Gauge("yolo_model_load_seconds", "Start-up time: weights, load and warm-up", ["phase"],
                           registry=REGISTRY)


def exposition() -> tuple[bytes, str]:
    """The text format and its content type."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
