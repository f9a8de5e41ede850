"""Inference parameters: parsed from plain string mappings (form fields, then query), validated, typed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from .errors import BadParameter


@dataclass(frozen=True)
class PredictParams:
    conf: float = 0.25
    iou: float = 0.7
    imgsz: int = 640
    normalize: bool = False
    decimals: int = 5

    @property
    def model_args(self) -> dict:
        """The keyword arguments `YOLO.predict` takes; requests with equal args can share a batch."""
        return {"conf": self.conf, "iou": self.iou, "imgsz": self.imgsz}


# name -> (legacy alias, kind, low, high)
_FIELDS = {
    "conf": ("confidence", float, 0.01, 1.0),
    "iou": (None, float, 0.0, 0.95),
    "imgsz": ("size", int, 32, 1280),
    "decimals": (None, int, 0, 10),
}
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def _lookup(sources: tuple[Mapping[str, str], ...], *names: str | None) -> tuple[str, str] | None:
    for source in sources:
        for name in names:
            if name and name in source and str(source[name]).strip() != "":
                return name, str(source[name]).strip()
    return None


def parse_params(*sources: Mapping[str, str]) -> PredictParams:
    """Read parameters from the given mappings (earlier ones win); raise BadParameter naming field and range."""
    values: dict = {}
    for name, (alias, kind, low, high) in _FIELDS.items():
        found = _lookup(sources, name, alias)
        if found is None:
            continue
        given, raw = found
        expected = f"{'an integer' if kind is int else 'a number'} in {low}-{high}"
        try:
            value = kind(raw) if kind is int else float(raw)
        except ValueError:
            raise BadParameter(f"'{given}' must be {expected}, got {raw!r}") from None
        if not (low <= value <= high) or value != value:  # value != value catches NaN
            raise BadParameter(f"'{given}' must be {expected}, got {raw!r}")
        values[name] = value
    found = _lookup(sources, "normalize")
    if found is not None:
        raw = found[1].lower()
        if raw not in _TRUE | _FALSE:
            raise BadParameter(f"'normalize' must be true or false, got {found[1]!r}")
        values["normalize"] = raw in _TRUE
    return PredictParams(**values)
