"""The core's types: what every dialect's request becomes (PredictRequest, with the model's PredictParams), and what
the core hands back to the dialect's encoder (Prediction, with a video's Frames). No web types, no behaviour."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Mapping

from ..models.params import PredictParams

if TYPE_CHECKING:
    from ..models.loaded import LoadedModel


@dataclass(frozen=True)
class Slicing:
    """Sliced inference (core/slicing.py): run the model on overlapping tiles of `size` pixels at full resolution,
    shift their detections back into the image and merge the duplicates along the seams. Not a model argument: every
    tile of every request with the same PredictParams shares the model's batches."""

    size: int
    overlap: float = 0.2
    # The defaults were measured (docs/calling.md, bench/slicing.py): on mosaics of small copies of photos, NMS by
    # intersection over the smaller box at 0.6 found no object twice and joined no neighbours into one box.
    merge: str = "nms"  # or "nmm": merge a group into one box (sahi's GREEDYNMM)
    match: str = "ios"  # or "iou": intersection over the smaller box's area, or over the union
    threshold: float = 0.6
    full: bool = True  # also run the whole image and merge its detections in (sahi's perform_standard_pred)


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
    # For a video: follow its objects from frame to frame with this tracker (core/tracking.py TRACKERS); None: don't.
    track: str | None = None
    options: Mapping = field(default_factory=dict)
    slicing: Slicing | None = None  # None: the whole image at once, as Ultralytics runs it


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
    tracks: list[dict] | None = None  # a tracked video's tracks (core/tracking.py TrackLog), one entry per track id
