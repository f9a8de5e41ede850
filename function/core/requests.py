"""The core's types: what every dialect's request becomes (PredictRequest, with the model's PredictParams), and what
the core hands back to the dialect's encoder (Prediction, with a video's Frames). No web types, no behaviour."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Mapping

from ..models.params import PredictParams

if TYPE_CHECKING:
    from ..models.loaded import LoadedModel

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
