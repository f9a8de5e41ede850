"""Numbers as clients and operators write them: ASCII digits only, so `０.５`, `٦٤٠` and `6_40` are not numbers."""

from __future__ import annotations

import re

_INT = re.compile(r"[+-]?[0-9]+", re.ASCII)
_FLOAT = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?", re.ASCII)


def strict_int(text: str) -> int:
    if not _INT.fullmatch(text):
        raise ValueError(f"not an integer: {text!r}")
    return int(text)


def strict_float(text: str) -> float:
    """A finite decimal number; `nan`, `inf` and Python's other spellings are refused."""
    if not _FLOAT.fullmatch(text):
        raise ValueError(f"not a number: {text!r}")
    return float(text)
