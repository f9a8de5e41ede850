"""The core's types: what every dialect's request becomes (PredictRequest, with its PredictParams), and what the core
hands back to the dialect's encoder (Prediction, with a video's Frames). No web types, no behaviour."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Mapping

if TYPE_CHECKING:
    from ..models.loaded import LoadedModel

# The tasks this service serves: the one list (MODEL_TASK, the loader, the dialects' views and the deploy check use it).
TASKS = ("detect", "segment", "pose", "classify", "obb")


@dataclass(frozen=True)
class PredictParams:
    conf: float = 0.25
    iou: float = 0.7
    imgsz: int = 640
    normalize: bool = False
    decimals: int = 5
    max_det: int = 300
    # Class ids to keep (Ultralytics' `classes`), None for all. Requests carry names or ids as the client wrote them
    # (`class_names`); the service resolves them against the model's names (`Service.resolve_classes`).
    classes: tuple[int, ...] | None = None
    class_names: tuple[str, ...] = ()

    @property
    def model_args(self) -> dict:
        """The keyword arguments `YOLO.predict` takes; requests with equal args can share a batch."""
        args = {"conf": self.conf, "iou": self.iou, "imgsz": self.imgsz}
        if self.max_det != 300:
            args["max_det"] = self.max_det
        if self.classes is not None:
            args["classes"] = self.classes
        return args


@dataclass(frozen=True)
class PredictRequest:
    """What every dialect's request becomes: images as the client sent them (or one video), the model's parameters,
    and the dialect's own options, which the core carries untouched to the dialect's encoder.

    An image is bytes (an upload) or text: an http(s) URL to fetch, or base64 data (a data: URL too)."""

    images: tuple[bytes | str, ...]
    params: PredictParams
    video: bytes | None = None
    vid_stride: int = 1
    # For a video: what to keep of each frame's Results, called in the CPU pool as each frame is answered, so a long
    # video's Results (each holding its frame) never pile up in memory. None keeps the Results.
    reduce: Callable | None = None
    options: Mapping = field(default_factory=dict)


@dataclass(frozen=True)
class Frame:
    """Where a video frame's result came from."""

    index: int  # 0-based, in the video's own frame count
    timestamp: float  # seconds from the start


@dataclass(frozen=True)
class Prediction:
    results: list  # Ultralytics Results, one per image (or per processed video frame, reduced), in request order
    model: LoadedModel
    started: float  # time.monotonic() when the request arrived
    frames: list[Frame] | None = None  # a video's processed frames, parallel to `results`
    process_started: float = 0.0  # time.monotonic() when the service started (the Platform's functionTimeAlive)
