"""What a model call takes: the tasks this service serves, and the prediction parameters (Ultralytics' own)."""

from __future__ import annotations

from dataclasses import dataclass

# The tasks this service serves: the one list (MODEL_TASK, the loader, the encoders' views and the deploy check).
TASKS = ("detect", "segment", "pose", "classify", "obb", "semantic", "depth")


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
