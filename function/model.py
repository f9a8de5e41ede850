"""The model surface: load the weights once, warm up, predict a batch, encode one result as the Platform JSON."""

from __future__ import annotations

import platform
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import WeightsError
from .params import PredictParams

TASKS = ("detect", "segment", "pose", "classify", "obb")


def pick_device(override: str | None) -> str:
    if override:
        return override
    import torch

    return "cuda:0" if torch.cuda.is_available() else "cpu"


def versions() -> dict:
    import torch
    import torchvision
    import ultralytics

    return {
        "ultralytics": ultralytics.__version__,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "python": platform.python_version(),
    }


@dataclass
class LoadedModel:
    yolo: object
    name: str
    task: str
    device: str
    half: bool
    versions: dict = field(default_factory=dict)

    def predict(self, images: list[np.ndarray], params: PredictParams) -> list:
        """One Ultralytics call for a batch of images that share their parameters; one Results per image."""
        quantize = "fp16" if self.half else None
        return self.yolo.predict(images, device=self.device, quantize=quantize, verbose=False, **params.model_args)

    def warm_up(self) -> None:
        self.predict([np.zeros((640, 640, 3), dtype=np.uint8)], PredictParams())


def load_model(weights: str, device: str, task: str | None = None) -> LoadedModel:
    """Load weights with Ultralytics' YOLO(); anything that is not a usable YOLO model becomes a WeightsError."""
    from ultralytics import YOLO

    from .logs import adopt_logger

    adopt_logger("ultralytics", "WARNING")  # Ultralytics installs its own plain-text handler on import

    try:
        yolo = YOLO(weights, task=task)
    except Exception as exc:
        raise WeightsError(f"{weights} is not a loadable YOLO model: {type(exc).__name__}: {exc}") from None
    if yolo.task not in TASKS:
        raise WeightsError(f"{weights} is a {yolo.task!r} model; this service serves {', '.join(TASKS)}")
    half = device.startswith("cuda")
    return LoadedModel(yolo=yolo, name=Path(weights).name, task=yolo.task, device=device, half=half, versions=versions())
