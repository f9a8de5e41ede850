"""Sliced inference (SAHI: Akyon et al., ICIP 2022): small objects in large images.

The image is cut into overlapping tiles of one size (views of the decoded image, never copies). Every tile goes
through the model's loop as any image does, so equal-shaped tiles share model calls (with each other and with other
requests' tiles), and the whole image goes too unless `full` is off. Each answer's detections are shifted back into the
image and merged where tiles overlap, into one Results over the whole image: `summary()`, `normalize`, the dialects'
encoders and `plot()` read it as they read an unsliced one.

Tiles and merge are sahi's (`slicing.get_slice_bboxes`; `get_sliced_prediction`'s postprocess, class by class), so the
answer equals `sahi.predict.get_sliced_prediction` for the same model and parameters (tests/test_slicing.py). Where we
differ, on purpose (docs/calling.md says why): `nmm` is sahi's GREEDYNMM; a segment detection keeps the model's box
(sahi boxes the outline); rotated boxes are matched by their exact rotated overlap and never merged into one; at most
`max_det` detections are kept after the merge.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from concurrent.futures import Executor, Future
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from ultralytics.engine.results import OBB, Boxes, Results
from ultralytics.utils import ops
from ultralytics.utils.plotting import colors

from ..errors import BadParameter
from ..models.registry import Lease
from .requests import PredictRequest, Slicing

SLICEABLE = ("detect", "segment", "obb")
# Chunks of one image's tiles queued at once: while the model answers one, the next is already waiting.
CHUNKS_IN_FLIGHT = 2


def check(request: PredictRequest, task: str) -> None:
    """BadParameter when the request's model or input cannot be sliced."""
    if task not in SLICEABLE:
        raise BadParameter(f"A {task} model cannot be sliced: slice_size and the other slice_* parameters take "
                           "detect, segment and obb models")
    if request.video is not None:
        raise BadParameter("Slicing takes images: send an image, not a video, with 'slice_size'")
    if task == "obb" and request.slicing.merge == "nmm":
        # Two rotated boxes have no rotated box that is their union.
        raise BadParameter("'slice_merge' must be nms for rotated boxes (OBB): they are never merged into one, "
                           "got 'nmm'")


# -- tiles ------------------------------------------------------------------------------------------------------------


def _starts(length: int, size: int, step: int) -> list[int]:
    """Where tiles start along one side: every `step` pixels, the last one moved back to end at the edge."""
    starts, start = [], 0
    while start + size < length:
        starts.append(start)
        start += step
    return starts + [max(0, length - size)]


def tile_boxes(height: int, width: int, size: int, overlap: float) -> list[tuple[int, int, int, int]]:
    """(x0, y0, x1, y1) of each tile, row by row: sahi's `get_slice_bboxes` for square slices. All tiles have one shape
    (`size`, or the image's side where the image is smaller)."""
    step = size - int(overlap * size)
    xs, ys = _starts(width, size, step), _starts(height, size, step)
    return [(x, y, min(x + size, width), min(y + size, height)) for y in ys for x in xs]


def model_inputs(image: np.ndarray, slicing: Slicing,
                 max_slices: int) -> tuple[list[np.ndarray], list[tuple[int, int]]]:
    """What the model runs for a sliced image, and where each starts in it: the tiles (views into the image, never
    copies), then the whole image when `full` asks for it and there is more than one tile (one tile is the image)."""
    height, width = image.shape[:2]
    boxes = tile_boxes(height, width, slicing.size, slicing.overlap)
    if len(boxes) > max_slices:
        raise BadParameter(f"slice_size={slicing.size} with slice_overlap={slicing.overlap:g} cuts this "
                           f"{width}x{height} image into {len(boxes)} tiles, over MAX_SLICES={max_slices}: use a "
                           "larger slice_size or a smaller slice_overlap")
    inputs = [image[y0:y1, x0:x1] for x0, y0, x1, y1 in boxes]
    origins = [(x0, y0) for x0, y0, _, _ in boxes]
    if slicing.full and len(boxes) > 1:  # sahi skips it too
        inputs.append(image)
        origins.append((0, 0))
    return inputs, origins


# -- detections in the image's pixels ---------------------------------------------------------------------------------


@dataclass
class Found:
    """Detections shifted into the image's pixels, before the merge: boxes (x1, y1, x2, y2; a rotated box's enclosing
    box), and by task each rotated box (cx, cy, w, h, radians) or each mask's outline."""

    boxes: np.ndarray  # (N, 4) float64
    scores: np.ndarray  # (N,) float32
    classes: np.ndarray  # (N,) int64
    rotated: np.ndarray | None = None  # obb: (N, 5) float64
    outlines: list[np.ndarray] | None = None  # segment: (K, 2) float32 each, Ultralytics' masks.xy


def found_in(result: Results, x0: int, y0: int, task: str) -> Found:
    """One tile's (or the whole image's) detections, shifted by the tile's origin. Boxes of no area are dropped, as
    sahi drops them."""
    shift = np.array([x0, y0, x0, y0], dtype=np.float64)
    if task == "obb":
        data = result.obb.data.cpu().numpy()
        boxes = result.obb.xyxy.cpu().numpy().astype(np.float64) + shift
        rotated = data[:, :5].astype(np.float64) + np.array([x0, y0, 0, 0, 0])
    else:
        data = result.boxes.data.cpu().numpy()
        boxes, rotated = data[:, :4].astype(np.float64) + shift, None
    outlines = [xy + np.array([x0, y0], dtype=np.float32) for xy in result.masks.xy] \
        if task == "segment" and result.masks is not None else [] if task == "segment" else None
    keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    return Found(boxes[keep], data[keep, -2].astype(np.float32), data[keep, -1].astype(np.int64),
                 None if rotated is None else rotated[keep],
                 None if outlines is None else [o for o, k in zip(outlines, keep) if k])


def joined(parts: list[Found]) -> Found:
    first = parts[0]
    return Found(np.concatenate([p.boxes for p in parts]), np.concatenate([p.scores for p in parts]),
                 np.concatenate([p.classes for p in parts]),
                 None if first.rotated is None else np.concatenate([p.rotated for p in parts]),
                 None if first.outlines is None else [o for p in parts for o in p.outlines])


# -- the merge --------------------------------------------------------------------------------------------------------


def _overlap(box: np.ndarray, others: np.ndarray, match: str) -> np.ndarray:
    """IoU or IoS of one box with many, in the boxes' own precision: float32 when grouping, float64 when checking a
    merge, as sahi computes each (so its match decisions are ours)."""
    x1, y1 = np.maximum(box[0], others[:, 0]), np.maximum(box[1], others[:, 1])
    x2, y2 = np.minimum(box[2], others[:, 2]), np.minimum(box[3], others[:, 3])
    inter = np.maximum(0, x2 - x1) * np.maximum(0, y2 - y1)
    area, areas = (box[2] - box[0]) * (box[3] - box[1]), (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    below = area + areas - inter if match == "iou" else np.minimum(area, areas)
    return np.divide(inter, below, out=np.zeros_like(inter), where=below > 0)


def _rotated_overlap(box: np.ndarray, others: np.ndarray, match: str) -> np.ndarray:
    """IoU or IoS of one rotated box (cx, cy, w, h, radians) with many: the exact area of their intersection."""
    def rect(b):
        return (float(b[0]), float(b[1])), (float(b[2]), float(b[3])), math.degrees(float(b[4]))

    values = np.zeros(len(others), dtype=np.float64)
    for i, other in enumerate(others):
        kind, points = cv2.rotatedRectangleIntersection(rect(box), rect(other))
        if kind == cv2.INTERSECT_NONE or points is None or len(points) < 3:
            continue
        inter = cv2.contourArea(cv2.convexHull(points))
        area, area_other = box[2] * box[3], other[2] * other[3]
        below = area + area_other - inter if match == "iou" else min(area, area_other)
        values[i] = inter / below if below > 0 else 0.0
    return values


def groups(found: Found, match: str, threshold: float) -> list[list[int]]:
    """Class by class, best score first (ties by x1, y1, x2, y2, as sahi orders them): each detection not yet taken
    takes every later one that overlaps it by `threshold` or more. Returns each taker followed by what it took; NMS
    keeps the takers, NMM merges each group."""
    taken_by: list[list[int]] = []
    boxes = found.boxes.astype(np.float32)
    for cls in np.unique(found.classes):
        members = np.flatnonzero(found.classes == cls)
        b, s = boxes[members], found.scores[members]
        order = np.lexsort((b[:, 3], b[:, 2], b[:, 1], b[:, 0], -s))
        free = np.ones(len(members), dtype=bool)
        for position, i in enumerate(order):
            if not free[i]:
                continue
            later = order[position + 1:]
            later = later[free[later]]
            if found.rotated is None:
                close = _overlap(b[i], b[later], match) >= threshold
            else:  # the enclosing boxes must meet for the rotated ones to
                meet = later[_overlap(b[i], b[later], "iou") > 0]
                close = np.isin(later, meet[_rotated_overlap(found.rotated[members[i]], found.rotated[members[meet]],
                                                             match) >= threshold])
            free[later[close]] = False
            taken_by.append([int(members[i])] + [int(members[j]) for j in later[close]])
    return taken_by


def _matches(box: np.ndarray, other: np.ndarray, match: str, threshold: float) -> bool:
    """sahi's check before each merge, against the merged box so far, in float64."""
    return bool(_overlap(box, other[None], match)[0] >= threshold)


def merge(found: Found, slicing: Slicing) -> tuple[np.ndarray, list[list[int]]]:
    """The merged detections: their boxes (N, 4) and the detections each one is made of (the first is the one whose
    score, class and rotated box it keeps). `nmm` grows a group's box one member at a time, each member merged only if
    it still overlaps the grown box by the threshold (sahi's GREEDYNMM); one that no longer does is dropped."""
    kept_boxes, made_of = [], []
    for group in groups(found, slicing.match, slicing.threshold):
        box, members = found.boxes[group[0]].copy(), [group[0]]
        if slicing.merge == "nmm":
            for other in group[1:]:
                if _matches(box, found.boxes[other], slicing.match, slicing.threshold):
                    box[:2] = np.minimum(box[:2], found.boxes[other, :2])
                    box[2:] = np.maximum(box[2:], found.boxes[other, 2:])
                    members.append(other)
        kept_boxes.append(box)
        made_of.append(members)
    return np.array(kept_boxes, dtype=np.float64).reshape(-1, 4), made_of


def union_outline(outlines: list[np.ndarray]) -> np.ndarray:
    """The outline of the union of masks given by their outlines: drawn into a raster over their extent only (never
    the image's size), outlined as Ultralytics outlines a mask (`masks2segments`)."""
    drawn = [o for o in outlines if len(o)]
    if len(drawn) < 2:
        return drawn[0] if drawn else np.zeros((0, 2), dtype=np.float32)
    points = np.concatenate(drawn)
    x0, y0 = np.floor(points.min(0)).astype(int)
    x1, y1 = np.ceil(points.max(0)).astype(int)
    raster = np.zeros((y1 - y0 + 1, x1 - x0 + 1), dtype=np.uint8)
    for outline in drawn:  # 4 fractional bits: sub-pixel vertices land where they are
        cv2.fillPoly(raster, [np.round((outline - (x0, y0)) * 16).astype(np.int32)], 1, cv2.LINE_8, 4)
    (union,) = ops.masks2segments(raster[None])
    return union + np.array([x0, y0], dtype=np.float32)


# -- the answer -------------------------------------------------------------------------------------------------------


class Outlines:
    """`Results.masks` of a sliced segment answer: each detection's outline in the image's pixels, which is what
    `summary()` and the encoders read (`xy`, `xyn`). No raster per detection: an 8000x8000 image's masks would not
    fit in memory. (A mask that no merge touched keeps the outline Ultralytics gave it on its tile.)"""

    def __init__(self, xy: list[np.ndarray], orig_shape: tuple[int, int]):
        self.xy, self.orig_shape = xy, orig_shape

    @property
    def xyn(self) -> list[np.ndarray]:
        height, width = self.orig_shape
        return [outline / np.array([width, height], dtype=np.float32) for outline in self.xy]

    def __len__(self) -> int:
        return len(self.xy)


class SlicedResults(Results):
    """An image's merged answer; `slices` is how many tiles ran, `inputs` how many images the model ran for it."""

    slices: int = 0
    inputs: int = 0

    def plot(self, **kwargs):
        """Ultralytics' plot(), with masks drawn from their outlines (its own mask drawing needs a raster per mask at
        the image's size), in its colours and alpha."""
        if isinstance(self.masks, Outlines) and len(self.masks) and kwargs.get("masks", True):
            image = self.orig_img if kwargs.get("img") is None else kwargs["img"]
            overlay = image.copy()
            for outline, cls in zip(self.masks.xy, self.boxes.cls.tolist()):
                if len(outline):
                    points = [np.round(outline * 16).astype(np.int32)]  # 4 fractional bits, as union_outline
                    cv2.fillPoly(overlay, points, colors(int(cls), True), cv2.LINE_8, 4)
            kwargs["img"] = cv2.addWeighted(image, 0.5, overlay, 0.5, 0)
        return super().plot(**{**kwargs, "masks": False})


def merged_result(image: np.ndarray, results: list[Results], found: Found, slicing: Slicing, task: str,
                  max_det: int) -> SlicedResults:
    """One Results over the whole image from its tiles' (and the whole image's) answers, best score first, at most
    max_det detections."""
    t0 = time.perf_counter()
    boxes, made_of = merge(found, slicing)
    keepers = np.array([members[0] for members in made_of], dtype=np.int64)
    scores = found.scores[keepers].astype(np.float64)  # a group's best: its first member
    order = np.argsort(-scores, kind="stable")[:max_det]
    rows = np.concatenate([boxes, scores[:, None], found.classes[keepers, None]], axis=1)[order]
    answer = SlicedResults(image, results[0].path, results[0].names)
    if task == "obb":
        rotated = found.rotated[keepers[order]]
        answer.obb = OBB(torch.from_numpy(np.concatenate([rotated, rows[:, 4:]], axis=1)), image.shape[:2])
    else:
        answer.boxes = Boxes(torch.from_numpy(rows), image.shape[:2])
    if task == "segment":
        outlines = [union_outline([found.outlines[m] for m in made_of[i]]) for i in order]
        answer.masks = Outlines(outlines, image.shape[:2])
    speed = {key: sum(float(r.speed.get(key) or 0.0) for r in results)
             for key in ("preprocess", "inference", "postprocess")}
    speed["postprocess"] += (time.perf_counter() - t0) * 1000
    answer.speed = speed
    answer.slices = len(results) - (1 if slicing.full and len(results) > 1 else 0)
    answer.inputs = len(results)
    return answer


async def predict(image: np.ndarray, request: PredictRequest, lease: Lease, cpu_pool: Executor, max_slices: int,
                  chunk: int, running: list[Future]) -> SlicedResults:
    """One image's sliced answer. Tiles go to the model's loop a chunk (a model batch for each model serving) at a
    time, the next chunk queued while one runs, so other requests' images queue between chunks, never behind a whole
    image's tiles; each answered chunk is reduced to its detections in the CPU pool at once (a segment tile's masks are
    not kept), then the merge runs there. Every future that holds the image is added to `running`."""
    slicing, params, task, loop = request.slicing, request.params, lease.model.task, lease.loop
    inputs, origins = model_inputs(image, slicing, max_slices)
    queued: deque[tuple[int, list[Future]]] = deque()
    reducing: list[Future] = []

    async def reduce_oldest() -> None:
        start, futures = queued.popleft()
        answered = await asyncio.gather(*(asyncio.wrap_future(f) for f in futures))
        reduced = cpu_pool.submit(_reduce, answered, origins[start:start + len(answered)], task)
        running.append(reduced)
        reducing.append(reduced)

    try:
        for start in range(0, len(inputs), chunk):
            futures = loop.submit(inputs[start:start + chunk], params)
            running.extend(futures)
            queued.append((start, futures))
            if len(queued) == CHUNKS_IN_FLIGHT:
                await reduce_oldest()
        while queued:
            await reduce_oldest()
        reduced = await asyncio.gather(*(asyncio.wrap_future(f) for f in reducing))
    except BaseException:  # given up (deadline) or failed: tiles still queued are not run
        for future in running:
            future.cancel()
        raise
    results, found = [r for results, _ in reduced for r in results], joined([f for _, f in reduced])
    merging = cpu_pool.submit(merged_result, image, results, found, slicing, task, params.max_det)
    running.append(merging)
    return await asyncio.wrap_future(merging)


def _reduce(results: list[Results], origins: list[tuple[int, int]], task: str) -> tuple[list[Results], Found]:
    """A chunk's answers as detections in the image's pixels; the Results are kept without their masks (for their
    speed, names and path)."""
    found = joined([found_in(result, x0, y0, task) for result, (x0, y0) in zip(results, origins)])
    for result in results:
        result.masks = None
    return results, found
