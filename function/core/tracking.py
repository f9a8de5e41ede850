"""Objects followed across frames: one tracker per sequence (a video in a request, a stream's connection), fed each
answered frame's Results in frame order.

Ultralytics keeps its trackers on the model's predictor (`predictor.trackers`), so `model.track` on a model shared by
concurrent requests would mix their objects. Here a `Sequence` owns its tracker, built from Ultralytics' own tracker
classes and YAML configs, and each frame goes through Ultralytics' own per-frame step (`on_predict_postprocess_end`,
what `model.track` runs after each frame's postprocess) on a stand-in predictor that holds only that tracker. The model
call itself stays the shared, batched one; only this step is per sequence, so the answers equal `model.track` on the
same frames with the same parameters (its `conf` default of 0.1 is the dialects').

A tracker's memory is bounded by its config (`track_buffer` frames of lost tracks, a bounded list of removed ones),
not by the sequence's length. `TrackLog` keeps one small entry per track id seen, for `metadata.tracks`.
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from types import SimpleNamespace

from .. import metrics
from ..errors import BadParameter

# The trackers served, by the name clients send: Ultralytics' YAML configs of the same names. BoT-SORT runs without
# ReID (its YAML's `with_reid: False`): ReID needs a second model, which an endpoint would have to download.
TRACKERS = ("bytetrack", "botsort")
DEFAULT_TRACKER = "bytetrack"
TRACKABLE_TASKS = ("detect", "segment", "pose", "obb")  # the tasks whose results carry boxes
# model.track's own confidence default: the trackers' second association stage needs the low-confidence boxes.
TRACK_CONF = 0.1


def check_tracker(given: str, raw: str) -> str:
    name = raw.strip().lower().removesuffix(".yaml")
    if name not in TRACKERS:
        raise BadParameter(f"'{given}' must be one of {', '.join(TRACKERS)}, got {raw!r}")
    return name


def check_trackable(task: str) -> None:
    if task not in TRACKABLE_TASKS:
        raise BadParameter(f"'track' follows boxes from frame to frame; this endpoint's model is a {task} model, which "
                           f"has none (tracking serves {', '.join(TRACKABLE_TASKS)} models)")


class Sequence:
    """One sequence's tracker. `update` takes each frame's Results in order and returns it tracked: the boxes the
    tracker confirms, each with its `id` (what `Results.summary()` writes as `track_id`)."""

    def __init__(self, tracker: str, task: str, device: str):
        from ultralytics.trackers.track import TRACKER_MAP
        from ultralytics.utils import YAML, IterableSimpleNamespace
        from ultralytics.utils.checks import check_yaml

        check_trackable(task)
        config = IterableSimpleNamespace(**YAML.load(check_yaml(f"{check_tracker('tracker', tracker)}.yaml")))
        config.device = device
        # What on_predict_postprocess_end reads of a predictor: its mode and task, whether the source is a stream
        # (one tracker per stream), the trackers, and the frame's results. `persist` keeps the tracker for good.
        self._predictor = SimpleNamespace(args=SimpleNamespace(mode="track", task=task),
                                          dataset=SimpleNamespace(mode="video"),
                                          trackers=[TRACKER_MAP[config.tracker_type](args=config)],
                                          results=None)
        self.frames = 0

    def update(self, result):
        from ultralytics.trackers.track import on_predict_postprocess_end

        predictor = self._predictor
        predictor.results = [result]
        started = time.perf_counter()
        try:
            on_predict_postprocess_end(predictor, persist=True)
            tracked = predictor.results[0]
        finally:
            predictor.results = None
        metrics.TRACKER_SECONDS.observe(time.perf_counter() - started)
        self.frames += 1
        return tracked


class TrackLog:
    """Each track id seen in a sequence: its classes, first and last frame, and how many frames it was in."""

    def __init__(self):
        self._tracks: dict[int, dict] = {}

    def observe(self, frame: int, result) -> None:
        """One answered frame's tracked Results (its boxes or OBBs carry ids once the tracker confirms them)."""
        boxes = result.obb if result.obb is not None else result.boxes
        if boxes is None or not boxes.is_track:
            return
        for track_id, cls in zip(boxes.id.int().tolist(), boxes.cls.int().tolist()):
            track = self._tracks.get(track_id)
            if track is None:
                track = self._tracks[track_id] = {"classes": Counter(), "first_frame": frame, "frames": 0}
            track["classes"][cls] += 1
            track["last_frame"] = frame
            track["frames"] += 1

    def tracks(self, names: dict[int, str]) -> list[dict]:
        """One entry per track id, in id order; `class` is the one it had in most of its frames (the tracker may
        relabel a track as its detections change class), the earliest seen on a tie."""
        entries = []
        for track_id, track in sorted(self._tracks.items()):
            cls = track["classes"].most_common(1)[0][0]
            entries.append({"track_id": track_id, "class": cls, "name": names[cls], "first_frame": track["first_frame"],
                            "last_frame": track["last_frame"], "frames": track["frames"]})
        return entries


@contextlib.contextmanager
def counted(sequence: Sequence | None):
    """A sequence being tracked, counted in the metrics for as long as its frames are answered (nothing for None)."""
    if sequence is None:
        yield
        return
    metrics.TRACKED_SEQUENCES.inc()
    try:
        yield
    finally:
        metrics.TRACKED_SEQUENCES.dec()


def counts(tracks: list[dict]) -> dict[str, int]:
    """Unique tracks per class name: how many people walked past, how many cars."""
    return dict(Counter(track["name"] for track in tracks))
