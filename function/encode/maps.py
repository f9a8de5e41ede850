"""Per-pixel answers as PNG: a semantic model's class-id map and a depth model's map, the way every dialect sends them.

A class map goes out whole, at the original image's size, lossless: 8-bit grayscale, 16-bit past 256 classes (pixel
= class id; 255 where `classes` excluded the pixel, as Ultralytics marks it). A depth map is metres in float: it goes
out quantised, at inference resolution, with its range beside it, so a client multiplies back:

    depth = pixel * max / divisor        (divisor 255 for 8 bits, 65535 for 12 and 16 bits; 0 = no depth)

Inference resolution: the long side is `imgsz` (never more than the image's own), the aspect ratio kept. Each map
pixel is the depth Ultralytics reports at the centre of that pixel's cell in the original image (nearest sampling:
no blending across edges). Valid depths (d > 0) quantise to 1..divisor, so 0 stays "no depth"; `min` and `max` are
over the valid pixels of the whole `Results.depth`. 12 bits are 4095 levels spread over the 16-bit range by bit
replication (q << 4 | q >> 8), so one decoding rule serves 12 and 16 bits.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # numpy is the worker's: gunicorn's master never imports it
    import numpy as np

BITS = (8, 12, 16)
LEVELS = {8: 255, 12: 4095, 16: 65535}  # quantisation levels per bits
DIVISOR = {8: 255, 12: 65535, 16: 65535}  # what a pixel is divided by when decoding


def png(array: np.ndarray) -> bytes:
    """Lossless grayscale PNG of a uint8 or uint16 array (OpenCV writes both)."""
    import cv2

    ok, encoded = cv2.imencode(".png", array)
    if not ok:
        raise RuntimeError("the map could not be encoded as PNG")
    return encoded.tobytes()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def as_numpy(tensor) -> np.ndarray:
    return tensor.cpu().numpy() if hasattr(tensor, "cpu") else np.asarray(tensor)


def class_map_png(class_map: np.ndarray) -> bytes:
    """The class-id map, pixel for pixel: 8-bit when every id fits in a byte, 16-bit otherwise."""
    import numpy as np

    wide = class_map.dtype != np.uint8 and int(class_map.max(initial=0)) > 255
    return png(class_map.astype(np.uint16 if wide else np.uint8))


def inference_shape(height: int, width: int, imgsz: int) -> tuple[int, int]:
    """Long side `imgsz` (at most the image's own), aspect kept, at least 1 pixel each way."""
    scale = min(1.0, imgsz / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


def sample(depth: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Nearest sampling at the centres of a `shape` grid laid over the map."""
    import numpy as np

    height, width = depth.shape
    rows = ((np.arange(shape[0]) + 0.5) * height / shape[0]).astype(np.int64).clip(0, height - 1)
    cols = ((np.arange(shape[1]) + 0.5) * width / shape[1]).astype(np.int64).clip(0, width - 1)
    return depth[np.ix_(rows, cols)]


def valid_range(depth: np.ndarray) -> tuple[float, float] | None:
    """(min, max) over the pixels with a depth (finite, > 0); None when there are none."""
    import numpy as np

    valid = depth[np.isfinite(depth) & (depth > 0)]
    return (float(valid.min()), float(valid.max())) if valid.size else None


@dataclass(frozen=True)
class DepthPng:
    shape: tuple[int, int]
    data: bytes
    min: float | None
    max: float | None
    bits: int

    def platform(self) -> dict:
        return {"shape": list(self.shape), "encoding": "png", "data": b64(self.data), "min": self.min,
                "max": self.max, "bits": self.bits}


def depth_png(depth: np.ndarray, imgsz: int, bits: int = 8) -> DepthPng:
    """The depth map in metres -> a quantised PNG at inference resolution (see the module's docstring)."""
    import numpy as np

    if bits not in BITS:
        raise ValueError(f"bits must be one of {BITS}")
    depth = depth.astype(np.float32, copy=False)
    found = valid_range(depth)
    small = sample(depth, inference_shape(*depth.shape, imgsz))
    levels = LEVELS[bits]
    if found is None:
        q = np.zeros(small.shape, np.int64)
    else:
        valid = np.isfinite(small) & (small > 0)
        q = np.where(valid, np.clip(np.rint(np.where(valid, small, 0) * (levels / found[1])), 1, levels), 0)
        q = q.astype(np.int64)
    if bits == 8:
        pixels = q.astype(np.uint8)
    elif bits == 12:
        pixels = ((q << 4) | (q >> 8)).astype(np.uint16)
    else:
        pixels = q.astype(np.uint16)
    low, high = found if found else (None, None)
    return DepthPng(small.shape, png(pixels), low, high, bits)


def decode_depth(pixels: np.ndarray, high: float | None, bits: int) -> np.ndarray:
    """The client's side of `depth_png`: metres again (0 where there is no depth)."""
    import numpy as np

    return pixels.astype(np.float64) * ((high or 0.0) / DIVISOR[bits])


def nearness(depth: np.ndarray, imgsz: int) -> np.ndarray:
    """Roboflow's `normalized_depth`: 1 nearest, 0 farthest, relative to this image's valid range, at inference
    resolution; pixels without a depth are 0. A flat map (max = min) is all 1 where it has depth."""
    import numpy as np

    depth = depth.astype(np.float32, copy=False)
    found = valid_range(depth)
    small = sample(depth, inference_shape(*depth.shape, imgsz))
    if found is None:
        return np.zeros(small.shape, np.float64)
    low, high = found
    valid = np.isfinite(small) & (small > 0)
    spread = high - low
    near = (high - small.astype(np.float64)) / spread if spread > 0 else np.ones(small.shape)
    return np.where(valid, near.clip(0.0, 1.0), 0.0)
