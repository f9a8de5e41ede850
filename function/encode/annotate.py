"""Annotated images: Ultralytics' own `Results.plot()` (boxes, masks, keypoints, rotated boxes, top-5 text), as JPEG.

Ultralytics draws text with `Arial.ttf` (`Arial.Unicode.ttf` for non-ASCII class names) and, when neither is in its
config directory, downloads it on first plot. An endpoint must not fetch anything at request time, so the package
ships two freely licensed fonts (function/fonts/, their licenses beside them) and puts them where Ultralytics looks
first, under the names it asks for: Arimo (SIL OFL 1.1, metric-compatible with Arial) as Arial.ttf and DejaVu Sans
(Bitstream Vera licence, wide Latin, Greek, Cyrillic, Arabic and Hebrew coverage) as Arial.Unicode.ttf.
"""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

FONTS_DIR = Path(__file__).parent.parent / "fonts"
# Ultralytics' name -> the file shipped in its place.
FONTS = {"Arial.ttf": "Arimo.ttf", "Arial.Unicode.ttf": "DejaVuSans.ttf"}
JPEG_QUALITY = 90

_installed = False
_lock = threading.Lock()


def install_fonts(config_dir: Path | None = None) -> Path:
    """Put the shipped fonts in Ultralytics' config directory (once per process); returns that directory."""
    global _installed
    if config_dir is None:
        from ultralytics.utils import USER_CONFIG_DIR

        config_dir = Path(USER_CONFIG_DIR)
    with _lock:
        if not _installed:
            config_dir.mkdir(parents=True, exist_ok=True)
            for wanted, shipped in FONTS.items():
                target = config_dir / wanted
                if not target.exists():
                    temporary = target.with_suffix(".partial")
                    shutil.copyfile(FONTS_DIR / shipped, temporary)
                    temporary.replace(target)  # atomic: a concurrent plot never reads half a font
            _installed = True
    return config_dir


def annotated_jpeg(result, labels: bool = True, conf: bool = True, line_width: int | None = None) -> bytes:
    """The image as Ultralytics draws it for `result`, at the image's own size, as JPEG bytes."""
    import cv2

    install_fonts()
    drawn = result.plot(labels=labels, conf=conf, line_width=line_width)  # BGR, the input's size
    ok, encoded = cv2.imencode(".jpg", drawn, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise RuntimeError("the annotated image could not be encoded as JPEG")
    return encoded.tobytes()
