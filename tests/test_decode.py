"""Decoding equals how Ultralytics reads a file: pixels equal its `imread`, and the endpoint's answer for an uploaded
file equals `YOLO(weights).predict(path)` on that same file."""

from __future__ import annotations

import io

import numpy as np
import pytest
import requests
from conftest import local_summary
from PIL import Image

# Every format Ultralytics reads from a path (OpenCV, or Pillow for HEIC/AVIF), written the way a camera or an
# editor would; the EXIF ones are stored sideways (orientation 6) and must come out upright.
FILES = {
    "bus.jpg": ("JPEG", {"quality": 90}),
    "sideways.jpg": ("JPEG", {"quality": 95, "exif": 6}),
    "bus.png": ("PNG", {}),
    "sideways.png": ("PNG", {"exif": 6}),
    "bus.webp": ("WEBP", {"quality": 90}),
    "lossless.webp": ("WEBP", {"lossless": True}),
    "bus.bmp": ("BMP", {}),
    "bus.tiff": ("TIFF", {}),
    "bus.jp2": ("JPEG2000", {}),
    "bus.gif": ("GIF", {}),
    "bus.mpo": ("MPO", {}),
    "bus.avif": ("AVIF", {"quality": 90}),
    "bus.heic": ("HEIF", {"quality": 90}),
    "gray.png": ("PNG", {"mode": "L"}),
    "palette.png": ("PNG", {"mode": "P"}),
    "alpha.png": ("PNG", {"mode": "RGBA"}),
    "deep.png": ("PNG", {"mode": "I;16"}),
    "cmyk.jpg": ("JPEG", {"mode": "CMYK"}),
}


@pytest.fixture(scope="module")
def files(bus_jpg, tmp_path_factory) -> dict:
    from pillow_heif import register_heif_opener

    register_heif_opener()
    folder = tmp_path_factory.mktemp("formats")
    source = Image.open(bus_jpg).resize((405, 540))
    written = {}
    for name, (fmt, options) in FILES.items():
        options = dict(options)
        image = source
        mode = options.pop("mode", None)
        if mode == "I;16":
            image = Image.fromarray(np.asarray(source.convert("L"), dtype=np.uint16) * 257)
        elif mode:
            image = source.convert(mode)
        if "exif" in options:
            exif = Image.Exif()
            exif[0x0112] = options.pop("exif")
            options["exif"] = exif.tobytes()
        if fmt == "MPO":
            options.update(save_all=True, append_images=[source.rotate(180)])
        path = folder / name
        image.save(path, fmt, **options)
        written[name] = path
    return written


@pytest.mark.parametrize("name", sorted(FILES))
def test_pixels_equal_ultralytics_imread(files, name):
    from ultralytics.utils.patches import imread

    from function.core.images import decode_image

    path = files[name]
    decoded = decode_image(path.read_bytes(), 10**8)
    expected = imread(str(path))
    assert decoded.dtype == np.uint8 and decoded.flags.c_contiguous
    assert decoded.shape == expected.shape and np.array_equal(decoded, expected)
    if name.startswith("sideways"):
        assert decoded.shape[:2] == (405, 540), "EXIF orientation applied"


def test_corrupt_files_are_400_and_print_nothing(bus_jpg, capfd):
    from function.core.images import decode_image
    from function.errors import BadImage

    for fmt in ("PNG", "TIFF", "JPEG2000", "BMP", "GIF"):
        buffer = io.BytesIO()
        Image.open(bus_jpg).save(buffer, fmt)
        with pytest.raises(BadImage):
            decode_image(buffer.getvalue()[: len(buffer.getvalue()) // 2], 10**8)
    with pytest.raises(BadImage):
        decode_image(bus_jpg.read_bytes()[:5000], 10**8)
    assert capfd.readouterr().err == "", "codec complaints never reach stderr (it would not be a JSON log line)"


@pytest.mark.integration
def test_endpoint_answers_equal_predict_on_the_file(detect_server, weights, files):
    for name, path in sorted(files.items()):
        response = requests.post(detect_server.url + "/predict", files={"file": (name, path.read_bytes())},
                                 data={"conf": "0.1"}, timeout=60)
        assert response.status_code == 200, (name, response.text)
        assert response.json()["images"][0]["results"] == local_summary(weights["detect"], str(path), conf=0.1), name
