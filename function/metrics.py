"""The service's Prometheus metrics (`GET /metrics`), in one registry of its own.

Labels carry only route templates, methods, status codes and configured model ids (MODEL's and MODELS' ids: a client
naming another id gets a 404 before anything is counted under it): never a key, a raw path, a filename or image data.
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
QUEUE_WAIT_SECONDS = Histogram("yolo_queue_wait_seconds", "Time an image waited for the model", ["model"],
                               buckets=_SECONDS, registry=REGISTRY)
INFERENCE_SECONDS = Histogram("yolo_inference_seconds", "Time of one model call (a batch)", ["model"],
                              buckets=_SECONDS, registry=REGISTRY)
BATCH_SIZE = Histogram("yolo_batch_size", "Images per model call", ["model"], buckets=(1, 2, 4, 8, 16, 32, 64),
                       registry=REGISTRY)
QUEUE_DEPTH = Gauge("yolo_queue_depth", "Images waiting for the model", ["model"], registry=REGISTRY)
INFLIGHT = Gauge("yolo_inflight_requests", "Predict requests admitted and not yet answered", registry=REGISTRY)
IMAGES = Counter("yolo_images", "Images run through the model", ["model"], registry=REGISTRY)
VIDEO_FRAMES = Counter("yolo_video_frames", "Video frames run through the model", registry=REGISTRY)
# Tracking: sequences (a video in a request, a stream) with a tracker of their own now, and the tracker's own time.
TRACKED_SEQUENCES = Gauge("yolo_tracked_sequences", "Videos and streams being tracked now", registry=REGISTRY)
TRACKER_SECONDS = Histogram("yolo_tracker_update_seconds", "One frame through a tracker (after the model)",
                            buckets=_SECONDS, registry=REGISTRY)
# Live streams (GET /stream): open now, and their frames answered or dropped (replaced by a newer one unanswered).
STREAMS_OPEN = Gauge("yolo_streams_open", "Live streams open now", ["model"], registry=REGISTRY)
STREAM_FRAMES = Counter("yolo_stream_frames", "Live stream frames, answered or dropped", ["model", "outcome"],
                        registry=REGISTRY)
MODEL_LOAD_SECONDS = Gauge("yolo_model_load_seconds", "Start-up time: weights, load and warm-up", ["phase"],
                           registry=REGISTRY)
# Several models (MODELS): loads on demand, evictions, and what each loaded model holds.
MODEL_LOADS = Counter("yolo_model_loads", "Model loads (MODELS), by outcome", ["model", "outcome"], registry=REGISTRY)
MODEL_EVICTIONS = Counter("yolo_model_evictions", "Models unloaded to make room (MODELS)", ["model"], registry=REGISTRY)
MODEL_LOADED = Gauge("yolo_model_loaded", "1 while the model is loaded", ["model"], registry=REGISTRY)
MODEL_MEMORY_BYTES = Gauge("yolo_model_memory_bytes", "A loaded model's measured footprint (RSS, or GPU memory)",
                           ["model"], registry=REGISTRY)
MODEL_SWITCH_SECONDS = Histogram("yolo_model_load_duration_seconds", "Loading a model on demand: weights, load, warm-up",
                                 ["model"], buckets=_SECONDS, registry=REGISTRY)


def exposition() -> tuple[bytes, str]:
    """The text format and its content type."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
