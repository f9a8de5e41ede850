"""Inference parameters: parsed from form fields, then the query string; validated, typed.

Precedence: a form field beats the same field in the query string; a legacy alias (`confidence`, `size`) counts as its
field. A field given twice in the same place is refused (400), because which one the client meant is a guess.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Iterable, Mapping

from ..core.tracking import DEFAULT_TRACKER, TRACK_CONF, check_tracker
from ..core.requests import Slicing
from ..errors import BadParameter
from ..models.params import PredictParams
from ..numbers import strict_float, strict_int


@dataclass(frozen=True)
class Number:
    """A numeric field: its type, range, default and meaning, for parsing and for the OpenAPI document alike."""

    kind: type  # int or float
    low: float
    high: float
    default: float | int | None
    description: str

    def parse(self, given: str, raw: str) -> float | int:
        return parse_number(given, raw, self.kind, self.low, self.high)

    def schema(self) -> dict:
        return {"type": "integer" if self.kind is int else "number", "minimum": self.low, "maximum": self.high,
                "default": self.default, "description": self.description}


# The Platform's numeric fields (HUB's `file` requests share them); the first five are the model's (PredictParams).
NUMBERS = {
    "conf": Number(float, 0.01, 1.0, 0.25, "Minimum confidence (legacy name: `confidence`)"),
    "iou": Number(float, 0.0, 0.95, 0.7, "NMS IoU threshold"),
    "imgsz": Number(int, 32, 1280, 640, "Inference size (legacy name: `size`)"),
    "decimals": Number(int, 0, 10, 5, "Rounding of every number in `results`"),
    "max_det": Number(int, 1, 1000, 300, "Most detections per image"),
    "vid_stride": Number(int, 1, 1000, 1, "For a video: predict every Nth frame"),
    "line_width": Number(int, 1, 100, None, "format=image: line width (default: scaled to the image)"),
}
MODEL_FIELDS = ("conf", "iou", "imgsz", "decimals", "max_det")
ALIASES = {"conf": "confidence", "imgsz": "size"}  # the legacy names of Ultralytics' v1 API
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}

Source = Mapping[str, str] | Iterable[tuple[str, str]]


def _pairs(source: Source) -> list[tuple[str, str]]:
    return list(source.items()) if isinstance(source, Mapping) else list(source)


def lookup(sources: tuple[list[tuple[str, str]], ...], *names: str | None) -> tuple[str, str] | None:
    """(name as given, value) from the first source that has any of `names` with a non-empty value."""
    for pairs in sources:
        found = [(name, value.strip()) for name, value in pairs if name in names and name and value.strip() != ""]
        if len(found) > 1:
            given = " and ".join(sorted({name for name, _ in found}))
            raise BadParameter(f"'{given}' was given {len(found)} times; send it once")
        if found:
            return found[0]
    return None


def parse_number(given: str, raw: str, kind: type, low: float, high: float) -> float | int:
    expected = f"{'an integer' if kind is int else 'a number'} in {low}-{high}"
    try:
        value = strict_int(raw) if kind is int else strict_float(raw)
    except ValueError:
        raise BadParameter(f"'{given}' must be {expected}, got {raw!r}") from None
    if not low <= value <= high:
        raise BadParameter(f"'{given}' must be {expected}, got {raw!r}")
    return value


def parse_bool(given: str, raw: str) -> bool:
    value = raw.lower()
    if value not in _TRUE | _FALSE:
        raise BadParameter(f"'{given}' must be true or false, got {raw!r}")
    return value in _TRUE


# `bits`: a depth map's PNG precision (function/encode/maps.py); any other task accepts it and ignores it.
BITS = (8, 12, 16)
BITS_DESCRIPTION = "Depth models: the depth map's PNG precision, 8, 12 or 16 bits (other tasks ignore it)"


def parse_bits(given: str, raw: str) -> int:
    if raw.strip() not in {str(bits) for bits in BITS}:
        raise BadParameter(f"'{given}' must be 8, 12 or 16, got {raw!r}")
    return int(raw)


def parse_class_names(given: str, raw: str) -> tuple[str, ...]:
    """`classes`: comma-separated class names or ids (`person,car` or `0,2`), as the client wrote them."""
    names = tuple(dict.fromkeys(part.strip() for part in raw.split(",") if part.strip()))
    if not names:
        raise BadParameter(f"'{given}' must be comma-separated class names or ids, got {raw!r}")
    return names


def parse_params(*sources: Source, defaults: PredictParams | None = None) -> PredictParams:
    """Read parameters from the given sources (earlier ones win) over `defaults` (a dialect's own, e.g. HUB's iou
    0.45); raise BadParameter naming field and range."""
    pairs = tuple(_pairs(source) for source in sources)
    values: dict = {}
    for name in MODEL_FIELDS:
        found = lookup(pairs, name, ALIASES.get(name))
        if found is not None:
            values[name] = NUMBERS[name].parse(*found)
    found = lookup(pairs, "normalize")
    if found is not None:
        values["normalize"] = parse_bool(*found)
    found = lookup(pairs, "classes")
    if found is not None:
        values["class_names"] = parse_class_names(*found)
    return replace(defaults or PredictParams(), **values)


def parse_tracking(*sources: Source, params: PredictParams) -> tuple[str | None, PredictParams]:
    """`track` (true/false) and `tracker` (bytetrack, botsort): the tracker that follows a video's objects, or None.
    A tracked request takes `model.track`'s confidence default (0.1) where the client sent none."""
    pairs = tuple(_pairs(source) for source in sources)
    found = lookup(pairs, "tracker")
    tracker = check_tracker(*found) if found else DEFAULT_TRACKER
    found = lookup(pairs, "track")
    if found is None or not parse_bool(*found):
        return None, params
    if lookup(pairs, "conf", ALIASES["conf"]) is None:
        params = replace(params, conf=TRACK_CONF)
    return tracker, params


# Sliced inference (core/slicing.py): `slice_size` turns it on; its upper bound is 4 × the request's imgsz.
SLICE_SIZE_LOW, SLICE_SIZE_TIMES_IMGSZ = 64, 4
SLICE_NUMBERS = {
    "slice_size": Number(int, SLICE_SIZE_LOW, SLICE_SIZE_TIMES_IMGSZ * NUMBERS["imgsz"].high, None,
                         "Sliced inference: the tiles' side in pixels, at most 4 × imgsz (absent: no slicing)"),
    "slice_overlap": Number(float, 0.0, 0.9, Slicing.overlap, "Slicing: how much neighbouring tiles overlap, a "
                                                             "fraction of slice_size"),
    "slice_threshold": Number(float, 0.0, 1.0, Slicing.threshold, "Slicing: the overlap (slice_match) from which two "
                                                                  "detections of a class are one"),
}
SLICE_CHOICES = {
    "slice_merge": (("nms", "nmm"), Slicing.merge, "Slicing: of detections that are one, keep the best (nms) or merge "
                                                   "their boxes and masks (nmm, sahi's GREEDYNMM)"),
    "slice_match": (("ios", "iou"), Slicing.match, "Slicing: overlap as intersection over the smaller box (ios) or "
                                                   "over the union (iou)"),
}
SLICE_FULL_DESCRIPTION = "Slicing: also run the whole image and merge its detections in (large objects)"
SLICE_FIELDS = (*SLICE_NUMBERS, *SLICE_CHOICES, "slice_full")


def parse_slicing(*sources: Source, imgsz: int) -> Slicing | None:
    """The slice_* fields (earlier sources win), or None when `slice_size` is absent; any other slice_* field without
    it is a 400, since it would silently do nothing."""
    pairs = tuple(_pairs(source) for source in sources)
    size = lookup(pairs, "slice_size")
    if size is None:
        given = next((found[0] for name in SLICE_FIELDS if (found := lookup(pairs, name))), None)
        if given:
            raise BadParameter(f"'{given}' applies to sliced inference: send 'slice_size' too")
        return None
    high = SLICE_SIZE_TIMES_IMGSZ * imgsz
    try:
        values: dict = {"size": parse_number(*size, int, SLICE_SIZE_LOW, high)}
    except BadParameter as exc:
        raise BadParameter(f"{exc} (at most {SLICE_SIZE_TIMES_IMGSZ} × imgsz={imgsz})") from None
    for name in ("slice_overlap", "slice_threshold"):
        if found := lookup(pairs, name):
            values[name.removeprefix("slice_")] = SLICE_NUMBERS[name].parse(*found)
    for name, (choices, _, _) in SLICE_CHOICES.items():
        if found := lookup(pairs, name):
            if found[1].lower() not in choices:
                raise BadParameter(f"'{found[0]}' must be {' or '.join(choices)}, got {found[1]!r}")
            values[name.removeprefix("slice_")] = found[1].lower()
    if found := lookup(pairs, "slice_full"):
        values["full"] = parse_bool(*found)
    return Slicing(**values)
