"""One neutral view of an image's Ultralytics Results, chosen by the model's task, that the dialects encode from.

A dialect says how to write a detection (its keys, its units); this says what a detection of each task is made of —
the class, the confidence, the box, and by task the mask outline, the rotated box's corners or the keypoints — and,
for the two per-pixel tasks, what their map is (a class id or a depth in metres per pixel), so no encoder guesses the
task from which of the Results' attributes happen to be set. The Platform's own JSON is
Ultralytics' `Results.summary()`, the serializer of record; this view serves the other dialects.
"""

from __future__ import annotations

from ..models.params import TASKS

# What each task adds to a detection's box: the outline of its mask, the corners of its rotated box, its keypoints.
# The per-pixel tasks have no detections: their answer is one map per image.
SHAPES = {"detect": None, "segment": "outline", "obb": "corners", "pose": "keypoints", "classify": None,
          "semantic": None, "depth": None}
PER_PIXEL = ("semantic", "depth")
assert set(SHAPES) == set(TASKS)


class View:
    def __init__(self, result, task: str):
        if task not in SHAPES:
            raise ValueError(f"unknown task {task!r}")
        self.result, self.task, self.names = result, task, result.names
        self.shape = SHAPES[task]
        # Rotated boxes are Results.obb; every other detecting task's boxes are Results.boxes.
        self._boxes = None if task in ("classify", *PER_PIXEL) else result.obb if task == "obb" else result.boxes

    def height_width(self) -> tuple[int, int]:
        height, width = (int(v) for v in self.result.orig_shape)
        return height, width

    def top5(self) -> list[tuple[int, str, float]]:
        """classify: the five likeliest (class id, name, confidence), as Ultralytics' summary() lists them."""
        probs = self.result.probs
        return [(int(i), self.names[int(i)], float(probs.data[int(i)])) for i in probs.top5]

    def scores(self) -> list[float]:
        """classify: every class's confidence, by class id."""
        return self.result.probs.data.tolist()

    def detections(self) -> list[tuple[int, int, str, float]]:
        """Detecting tasks: (row, class id, name, confidence) per detection, in Ultralytics' order."""
        return [(i, int(cls), self.names[int(cls)], float(conf))
                for i, (cls, conf) in enumerate(zip(self._boxes.cls.tolist(), self._boxes.conf.tolist()))]

    def xyxy(self) -> list[list[float]]:
        """Per detection, its box in pixels (a rotated box: the axis-aligned box around it)."""
        return self._boxes.xyxy.tolist()

    def xywhn(self, row: int) -> list[float]:
        """A detection's centre and size as fractions of the image."""
        return self._boxes.xywhn[row].tolist()

    def points(self, row: int, normalized: bool = False) -> list[list[float]]:
        """segment: the mask's outline; obb: the rotated box's 4 corners. [x, y] pairs, pixels or fractions."""
        if self.shape == "outline":
            return (self.result.masks.xyn if normalized else self.result.masks.xy)[row].tolist()
        return (self._boxes.xyxyxyxyn if normalized else self._boxes.xyxyxyxy)[row].tolist()

    def keypoints(self, row: int, normalized: bool = False) -> list[tuple[float, float, float]]:
        """pose: (x, y, confidence) per keypoint; a model without keypoint confidences gives 1.0."""
        keypoints = self.result.keypoints
        xy = (keypoints.xyn if normalized else keypoints.xy)[row].tolist()
        conf = keypoints.conf[row].tolist() if keypoints.conf is not None else [1.0] * len(xy)
        return [(x, y, c) for (x, y), c in zip(xy, conf)]

    def class_map(self):
        """semantic: the class id of every pixel, at the image's size (uint8; int16 past 256 classes; 255 where
        `classes` excluded the pixel)."""
        from .maps import as_numpy

        return as_numpy(self.result.semantic_mask.data)

    def depth_map(self):
        """depth: metres per pixel, at the image's size, as Ultralytics scaled it back."""
        from .maps import as_numpy

        return as_numpy(self.result.depth.data)
