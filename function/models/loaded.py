"""The model surface: load the weights once, warm up, predict a batch, encode one result as the Platform JSON."""

from __future__ import annotations

import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import WeightsError
from .params import TASKS, PredictParams

if TYPE_CHECKING:  # numpy is the worker's: gunicorn's master never imports it
    import numpy as np



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
    engine: str = "pytorch"  # or the exported engine it runs: onnx, openvino, tensorrt

    def predict(self, images: list[np.ndarray], params: PredictParams) -> list:
        """One Ultralytics call for a batch of images that share their parameters; one Results per image."""
        quantize = "fp16" if self.half else None
        results = self.yolo.predict(images, device=self.device, quantize=quantize, verbose=False, **params.model_args)
        # Ultralytics' predictor keeps its last inputs and results (batch, dataset, results) until the next call:
        # after a huge image that is hundreds of MB held by an idle model, once per replica. Every call sets them anew.
        predictor = self.yolo.predictor
        predictor.batch = predictor.dataset = predictor.results = None
        return results

    def warm_up(self) -> list:
        """The first inference (it sets everything up), on a real photo: its results are what an exported engine is
        checked against before it may serve."""
        return self.predict(warm_up_images(), PredictParams())


def warm_up_images() -> list[np.ndarray]:
    """Ultralytics' own bus.jpg (people, a bus: every task finds something), read the way Ultralytics reads it."""
    import cv2
    from ultralytics.utils import ASSETS

    return [cv2.imread(str(ASSETS / "bus.jpg"))]


def cpu_cores() -> int:
    """The cores this process may use: its CPU affinity, capped by a cgroup CPU quota (a container given 2 vCPUs on a
    64-core host). The runtimes' own defaults count the host's cores, and threads beyond the quota only fight."""
    import math
    import os

    cores = len(os.sched_getaffinity(0))
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if quota != "max":
            cores = min(cores, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError):
        pass
    return max(1, cores)


def cpu_replicas(model: LoadedModel) -> int:
    """How many copies of a PyTorch model the CPU can run side by side. Ultralytics runs PyTorch on cores - 1
    threads (its NUM_THREADS); the answers depend on that number, so it stays, and cores it leaves idle get a copy of
    their own when a whole copy fits (2 cores: two single-thread copies). An exported engine is one copy on every core
    (engines.fit_to_cpu: measured best, docs/performance.md)."""
    if model.engine != "pytorch" or not model.device.startswith("cpu"):
        return 1
    import torch

    return max(1, cpu_cores() // max(1, torch.get_num_threads()))


def load_model(weights: str, device: str, task: str | None = None, engine: str = "pytorch") -> LoadedModel:
    """Load weights with Ultralytics' YOLO(); anything that is not a usable YOLO model becomes a WeightsError."""
    from ultralytics import YOLO

    from ..logs import adopt_logger

    adopt_logger("ultralytics", "WARNING")  # Ultralytics installs its own plain-text handler on import

    try:
        yolo = YOLO(weights, task=task)
    except Exception as exc:
        raise WeightsError(f"{weights} is not a loadable YOLO model: {type(exc).__name__}: {exc}") from None
    if yolo.task not in TASKS:
        raise WeightsError(f"{weights} is a {yolo.task!r} model; this service serves {', '.join(TASKS)}")
    half = device.startswith("cuda") and engine == "pytorch"  # an exported engine's precision is built in
    return LoadedModel(yolo=yolo, name=Path(weights).name, task=yolo.task, device=device, half=half,
                       versions=versions(), engine=engine)
