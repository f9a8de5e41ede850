"""Bytes in, one upright 8-bit BGR array out (what Ultralytics expects of a numpy image).

Pillow reads the header first (format allow-list, pixel-bomb refusal before any pixel is decoded); OpenCV then decodes
what it can, straight into BGR with no copy: that is how Ultralytics reads a file (`cv2.imdecode` in its `imread`), so
our pixels, and hence our results, equal `YOLO(weights).predict(path)`. Pillow decodes what OpenCV cannot or what
Ultralytics itself hands to Pillow (HEIF, AVIF), and LibRaw (rawpy) develops DNG.
"""

from __future__ import annotations

import functools
import io
import sys
import warnings
from typing import TYPE_CHECKING

from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import BadImage, NotAnImage, TooLarge

if TYPE_CHECKING:
    import numpy as np

# Only raster formats a camera or phone produces; nothing that runs an interpreter (EPS) or a plugin zoo.
# MPO has no entry of its own: Pillow's JPEG opener returns MPO files.
FORMATS = ("JPEG", "PNG", "WEBP", "AVIF", "HEIF", "JPEG2000", "TIFF", "BMP", "GIF")
_DNG_VERSION_TAG = 50706
_TIFF_MAGIC = (b"II*\0", b"MM\0*")
# Leading bytes of the formats above: a file that starts like one of them but cannot be read is a corrupt image (400),
# not something other than an image (415).
_SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"BM", b"II*\0", b"MM\0*",
               b"\x00\x00\x00\x0cjP  \r\n\x87\n", b"\xff\x4f\xff\x51")
# Formats OpenCV decodes exactly as Ultralytics' imread would (EXIF orientation included); the rest go to Pillow, as
# Ultralytics sends .heic/.avif files to Pillow too.
_OPENCV_FORMATS = frozenset({"JPEG", "MPO", "PNG", "WEBP", "BMP", "TIFF", "GIF", "JPEG2000"})
_PNG_END = b"IEND\xaeB`\x82"
_NOT_AN_IMAGE = "Not an image: supported formats are JPEG, PNG, WebP, AVIF, HEIC/HEIF, JP2, TIFF, BMP, MPO, GIF and DNG"
_registered = False



@functools.cache
def _opencv():
    """OpenCV, imported where images are decoded (the worker), not in gunicorn's master, where it would cost ~28 MB
    that the worker holds again (numpy likewise, ~14 MB). Its own log is silenced: a corrupt upload is the client's error, answered as a 400,
    and OpenCV would also print it on stderr, which is not a JSON log line."""
    import cv2

    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    return cv2


def register_openers() -> None:
    """Teach Pillow HEIC/HEIF (pillow-heif); AVIF, JPEG 2000 and the rest are built in."""
    global _registered
    if not _registered:
        from pillow_heif import register_heif_opener

        register_heif_opener()
        _registered = True


def _pillow_open():
    """Pillow's own Image.open. Ultralytics replaces it with a wrapper that, on any unidentified file, tries to
    pip-install pi-heif; here HEIF comes from pillow-heif and a non-image must stay a plain 415."""
    return getattr(sys.modules.get("ultralytics.utils.patches"), "_image_open", Image.open)


def _to_rgb(image: Image.Image) -> Image.Image:
    import numpy as np

    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        # 16-bit samples: keep the top 8 bits rather than clipping everything above 255 to white.
        pixels = np.asarray(image, dtype=np.uint32) >> 8
        return Image.fromarray(pixels.astype(np.uint8), "L").convert("RGB")
    if image.mode == "F":
        pixels = np.nan_to_num(np.asarray(image, dtype=np.float32))
        top = float(pixels.max()) or 1.0
        scale = 255.0 if top <= 1.0 else 255.0 / top
        return Image.fromarray(np.clip(pixels * scale, 0, 255).astype(np.uint8), "L").convert("RGB")
    if image.mode == "P" or image.mode.endswith("A"):
        image = image.convert("RGBA")
    return image.convert("RGB")


def _decode_dng(data: bytes, max_pixels: int) -> np.ndarray:
    """DNG through LibRaw (rawpy): Pillow sees at most a DNG's preview, or nothing."""
    import rawpy

    try:
        with rawpy.imread(io.BytesIO(data)) as raw:
            width, height = raw.sizes.width, raw.sizes.height
            if width * height > max_pixels:
                raise TooLarge(f"Image is {width}x{height} = {width * height} pixels, over MAX_IMAGE_PIXELS={max_pixels}")
            rgb = raw.postprocess(use_camera_wb=True, output_bps=8)
    except TooLarge:
        raise
    except rawpy.LibRawFileUnsupportedError:
        raise NotAnImage(_NOT_AN_IMAGE) from None
    except Exception as exc:  # rawpy raises LibRawError subclasses and plain errors alike
        raise BadImage(f"Invalid image: DNG could not be decoded ({type(exc).__name__})") from None
    cv2 = _opencv()
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)


def looks_like_an_image(data: bytes) -> bool:
    """True when the leading bytes name a format we read (ISO-BMFF brands for HEIF/AVIF, RIFF for WebP included)."""
    if data.startswith(_SIGNATURES):
        return True
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return True
    return data[4:8] == b"ftyp" and data[8:12] in (b"heic", b"heix", b"hevc", b"heim", b"heis", b"mif1", b"msf1", b"avif", b"avis")


def _open_header(data: bytes, max_pixels: int) -> Image.Image | None:
    """Pillow's view of the header, size checked; None for a TIFF Pillow cannot read (a DNG for LibRaw)."""
    register_openers()
    if not data:
        raise BadImage("Invalid image: the file is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = _pillow_open()(io.BytesIO(data), formats=FORMATS)
    except UnidentifiedImageError:
        if data[:4] in _TIFF_MAGIC:  # a DNG Pillow cannot open at all
            return None
        if looks_like_an_image(data):
            raise BadImage("Invalid image: the file starts like an image but its data cannot be read") from None
        raise NotAnImage(_NOT_AN_IMAGE) from None
    except Image.DecompressionBombError:
        raise TooLarge(f"Image has too many pixels (limit MAX_IMAGE_PIXELS={max_pixels})") from None
    except Exception as exc:
        raise BadImage(f"Invalid image: the header could not be read ({type(exc).__name__})") from None
    width, height = image.size
    if width * height > max_pixels:
        raise TooLarge(f"Image is {width}x{height} = {width * height} pixels, over MAX_IMAGE_PIXELS={max_pixels}")
    if width == 0 or height == 0:
        raise BadImage("Invalid image: it has no pixels")
    return image


def image_pixels(data: bytes, max_pixels: int) -> int:
    """Width × height from the header alone (refusing what decode_image would refuse from it); for a DNG, whose size
    LibRaw reads while decoding, the worst case allowed."""
    image = _open_header(data, max_pixels)
    if image is None or (image.format == "TIFF" and _DNG_VERSION_TAG in getattr(image, "tag_v2", {})):
        return max_pixels
    return image.size[0] * image.size[1]


def decode_image(data: bytes, max_pixels: int) -> np.ndarray:
    """Decode an uploaded image; refuse non-images (415), corrupt ones (400) and pixel bombs (413) before decoding."""
    image = _open_header(data, max_pixels)
    if image is None or (image.format == "TIFF" and _DNG_VERSION_TAG in getattr(image, "tag_v2", {})):
        return _decode_dng(data, max_pixels)
    if image.format in _OPENCV_FORMATS and not (image.format == "PNG" and not data.endswith(_PNG_END)):
        # A truncated PNG goes to Pillow: libpng would print its complaint on stderr, which is not a JSON log line.
        import numpy as np

        cv2 = _opencv()
        bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if bgr is not None:
            return bgr
    return _decode_with_pillow(image, max_pixels)  # OpenCV could not: Pillow decodes it or says what is wrong


def _decode_with_pillow(image: Image.Image, max_pixels: int) -> np.ndarray:
    import numpy as np

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            image.seek(0)  # MPO, GIF, animated WebP, HEIF collections: the first frame
            image.load()
            image = ImageOps.exif_transpose(image) or image
            rgb = np.asarray(_to_rgb(image))
    except Image.DecompressionBombError:
        raise TooLarge(f"Image has too many pixels (limit MAX_IMAGE_PIXELS={max_pixels})") from None
    except Exception as exc:
        raise BadImage(f"Invalid image: the {image.format} data could not be decoded ({type(exc).__name__})") from None
    cv2 = _opencv()
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
