"""The predict API against the real server (gunicorn + functions-framework) with a real trained detect model."""

from __future__ import annotations

import base64
import io
import platform
import struct
import threading
import zlib
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import numpy as np
import pytest
import requests
from conftest import IMAGE_HOST, KEYS, MODEL_ID, local_summary
from PIL import Image

pytestmark = pytest.mark.integration

AUTH = {"Authorization": f"Bearer {KEYS[0]}"}
# The test image host lives on IMAGE_HOST (127.0.0.2), which the server explicitly allows; the rest of loopback is not.


@pytest.fixture(scope="module")
def server(keyed_server):
    """The session's detect server with two API keys, MODEL_ID, URL_ALLOWED_NETWORKS=IMAGE_HOST and URL_TIMEOUT_S=3."""
    return keyed_server


def post(server, files=None, data=None, params=None, headers=AUTH, path="/predict", **kwargs):
    return requests.post(server.url + path, files=files, data=data, params=params, headers=headers, timeout=60, **kwargs)


def bgr(image: Image.Image) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(image.convert("RGB"))[..., ::-1])


def assert_error(response, status: int, *words: str):
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "status", "message"}
    assert body["error"]["code"] == status
    for word in words:
        assert word in body["error"]["message"], body
    assert "Traceback" not in response.text
    return body


# -- the success path ---------------------------------------------------------------------------------------------


def test_predict_returns_the_platform_shape_and_the_local_summary(server, weights, bus_jpg):
    import torch
    import torchvision
    import ultralytics

    response = post(server, files={"file": bus_jpg.open("rb")})
    assert response.status_code == 200, response.text
    body = response.json()
    assert list(body) == ["images", "metadata"]
    (image,) = body["images"]
    assert list(image) == ["shape", "results", "speed"]
    assert image["shape"] == [1080, 810]
    assert set(image["speed"]) == {"preprocess", "inference", "postprocess"}
    assert all(isinstance(v, float) and v >= 0 for v in image["speed"].values())
    assert image["results"] == local_summary(weights["detect"], str(bus_jpg), conf=0.25, iou=0.7, imgsz=640)
    assert image["results"], "the trained model finds people in bus.jpg"
    first = image["results"][0]
    assert list(first) == ["name", "class", "confidence", "box"] and first["name"] in ("Normal", "Fall")
    meta = body["metadata"]
    assert meta["imageCount"] == 1 and meta["model"] == "best.pt"
    assert 0 < meta["functionTimeCall"] < 60
    assert meta["version"] == {
        "ultralytics": ultralytics.__version__,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "python": platform.python_version(),
    }


@pytest.mark.parametrize(
    "fields, local",
    [
        ({"conf": "0.6", "iou": "0.3", "imgsz": "320"}, {"conf": 0.6, "iou": 0.3, "imgsz": 320}),
        ({"confidence": "0.4", "size": "480"}, {"conf": 0.4, "imgsz": 480}),
        ({"normalize": "true", "decimals": "2"}, {"normalize": True, "decimals": 2}),
        ({"conf": "0.01", "iou": "0.95", "imgsz": "1280", "decimals": "0"}, {"conf": 0.01, "iou": 0.95, "imgsz": 1280, "decimals": 0}),
    ],
)
def test_parameters_reach_the_model(server, weights, zidane_jpg, fields, local):
    response = post(server, files={"file": zidane_jpg.open("rb")}, data=fields)
    assert response.status_code == 200, response.text
    expected = local_summary(weights["detect"], str(zidane_jpg), **{"conf": 0.25, "iou": 0.7, "imgsz": 640, **local})
    assert response.json()["images"][0]["results"] == expected


def test_query_parameters_legacy_image_field_and_platform_route(server, weights, bus_jpg):
    response = post(server, files={"image": bus_jpg.open("rb")}, params={"conf": "0.5"}, path=f"/api/models/{MODEL_ID}/predict")
    assert response.status_code == 200, response.text
    assert response.json()["images"][0]["results"] == local_summary(weights["detect"], str(bus_jpg), conf=0.5)


def test_concurrent_requests_each_get_their_own_answer(server, weights, bus_jpg, zidane_jpg):
    cases = [(img, conf) for img in (bus_jpg, zidane_jpg) for conf in ("0.25", "0.5", "0.7")] * 2
    expected = {(img, conf): local_summary(weights["detect"], str(img), conf=float(conf)) for img, conf in set(cases)}

    def call(case):
        img, conf = case
        return case, post(server, files={"file": img.open("rb")}, data={"conf": conf})

    with ThreadPoolExecutor(max_workers=len(cases)) as pool:
        for (img, conf), response in pool.map(call, cases):
            assert response.status_code == 200, response.text
            assert response.json()["images"][0]["results"] == expected[(img, conf)]


# -- image formats -------------------------------------------------------------------------------------------------


def _encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


LOSSLESS = {"png": ("PNG", {}), "tiff": ("TIFF", {}), "bmp": ("BMP", {}), "webp-lossless": ("WEBP", {"lossless": True}),
            "jp2": ("JPEG2000", {})}
LOSSY = {"webp": ("WEBP", {"quality": 90}), "avif": ("AVIF", {"quality": 90}), "heic": ("HEIF", {"quality": 90})}


@pytest.mark.parametrize("name", sorted(LOSSLESS))
def test_lossless_formats_give_the_same_detections_as_the_jpeg(server, weights, bus_jpg, name):
    fmt, options = LOSSLESS[name]
    pixels = Image.open(bus_jpg)
    response = post(server, files={"file": (f"bus.{name}", _encode(pixels, fmt, **options))})
    assert response.status_code == 200, response.text
    assert response.json()["images"][0]["results"] == local_summary(weights["detect"], str(bus_jpg))


@pytest.mark.parametrize("name", sorted(LOSSY) + ["mpo", "gif"])
def test_other_formats_decode_like_pillow(server, weights, bus_jpg, name):
    from pillow_heif import register_heif_opener

    register_heif_opener()
    image = Image.open(bus_jpg)
    if name == "mpo":
        data = _encode(image, "MPO", save_all=True, append_images=[image.rotate(180)])
    elif name == "gif":
        data = _encode(image, "GIF")
    else:
        fmt, options = LOSSY[name]
        data = _encode(image, fmt, **options)
    decoded = Image.open(io.BytesIO(data))
    decoded.seek(0)
    response = post(server, files={"file": (f"bus.{name}", data)})
    assert response.status_code == 200, response.text
    assert response.json()["images"][0]["shape"] == [1080, 810]
    assert response.json()["images"][0]["results"] == local_summary(weights["detect"], bgr(decoded))


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "I;16", "CMYK"])
def test_pixel_modes_are_converted_to_rgb(server, weights, bus_jpg, mode):
    image = Image.open(bus_jpg)
    if mode == "I;16":
        converted = Image.fromarray(np.asarray(image.convert("L"), dtype=np.uint16) * 257)
        expected_rgb = image.convert("L").convert("RGB")  # the top 8 bits of v*257 are v
        fmt = "PNG"
    else:
        converted = image.convert(mode)
        expected_rgb = converted.convert("RGBA").convert("RGB") if mode == "P" else converted.convert("RGB")
        fmt = "JPEG" if mode == "CMYK" else "PNG"
    data = _encode(converted, fmt)
    # A CMYK JPEG is decoded the way Ultralytics reads the file (OpenCV), whose CMYK conversion differs from Pillow's by
    # one level in places.
    expected = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if mode == "CMYK" else bgr(expected_rgb)
    response = post(server, files={"file": ("img", data)})
    assert response.status_code == 200, response.text
    assert response.json()["images"][0]["results"] == local_summary(weights["detect"], expected)


def test_exif_orientation_is_applied(server, weights, bus_jpg):
    image = Image.open(bus_jpg)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways; viewers rotate it 90° clockwise
    data = _encode(image, "JPEG", quality=95, exif=exif.tobytes())
    upright = Image.open(io.BytesIO(data)).transpose(Image.Transpose.ROTATE_270)
    response = post(server, files={"file": ("sideways.jpg", data)})
    assert response.status_code == 200, response.text
    assert response.json()["images"][0]["shape"] == [810, 1080]
    assert response.json()["images"][0]["results"] == local_summary(weights["detect"], bgr(upright))


def _linear_dng(image: Image.Image) -> bytes:
    """A minimal linear (demosaiced) DNG: a TIFF with the DNG tags LibRaw needs."""
    from PIL import TiffImagePlugin

    tags = TiffImagePlugin.ImageFileDirectory_v2()
    tags[50706] = b"\x01\x04\x00\x00"  # DNGVersion 1.4
    tags.tagtype[50706] = 1
    tags[50708] = "Test Camera"  # UniqueCameraModel
    tags[262] = 34892  # PhotometricInterpretation: LinearRaw
    tags[50721] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)  # ColorMatrix1
    tags.tagtype[50721] = 10
    tags[50778] = 21  # CalibrationIlluminant1: D65
    return _encode(image, "TIFF", tiffinfo=tags)


def test_dng_is_developed_by_libraw(server, weights, bus_jpg):
    import rawpy

    data = _linear_dng(Image.open(bus_jpg).resize((405, 540)))
    with rawpy.imread(io.BytesIO(data)) as raw:
        developed = raw.postprocess(use_camera_wb=True, output_bps=8)
    response = post(server, files={"file": ("bus.dng", data)})
    assert response.status_code == 200, response.text
    assert response.json()["images"][0]["shape"] == [540, 405]
    expected = local_summary(weights["detect"], np.ascontiguousarray(developed[..., ::-1]))
    assert response.json()["images"][0]["results"] == expected


# -- the `source` field --------------------------------------------------------------------------------------------


class _ImageHost(BaseHTTPRequestHandler):
    image = b""

    def do_GET(self):  # noqa: N802 - http.server's name
        if self.path == "/bus.jpg":
            self._send(200, self.image, "image/jpeg")
        elif self.path.startswith("/redirect?to="):
            self.send_response(302)
            self.send_header("Location", self.path.split("=", 1)[1])
            self.end_headers()
        elif self.path == "/huge":
            self._send(200, b"\xff" * (11 * 2**20), "image/jpeg")
        elif self.path == "/huge-chunked":
            self.send_response(200)
            self.end_headers()
            for _ in range(12):
                self.wfile.write(b"\xff" * 2**20)
        else:
            self._send(404, b"no", "text/plain")

    def _send(self, status, body, kind):
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def image_host(bus_jpg):
    _ImageHost.image = bus_jpg.read_bytes()
    httpd = ThreadingHTTPServer((IMAGE_HOST, 0), _ImageHost)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://{IMAGE_HOST}:{httpd.server_port}"
    httpd.shutdown()


def test_source_url_is_fetched(server, weights, bus_jpg, image_host):
    response = post(server, data={"source": f"{image_host}/bus.jpg", "conf": "0.3"})
    assert response.status_code == 200, response.text
    assert response.json()["images"][0]["results"] == local_summary(weights["detect"], str(bus_jpg), conf=0.3)


@pytest.mark.parametrize("kind", ["plain", "data-url", "urlsafe-unpadded"])
def test_source_base64_is_decoded(server, weights, bus_jpg, kind):
    raw = bus_jpg.read_bytes()
    text = {
        "plain": base64.b64encode(raw).decode(),
        "data-url": "data:image/jpeg;base64," + base64.b64encode(raw).decode(),
        "urlsafe-unpadded": base64.urlsafe_b64encode(raw).decode().rstrip("="),
    }[kind]
    response = post(server, data={"source": text})
    assert response.status_code == 200, response.text
    assert response.json()["images"][0]["results"] == local_summary(weights["detect"], str(bus_jpg))


def _loopback_port(server):
    return server.port  # a real service on 127.0.0.1 — exactly what must not be reachable


SSRF_URLS = [
    "http://127.0.0.1:{port}/healthz",
    "http://localhost:{port}/healthz",
    "http://2130706433:{port}/healthz",  # decimal 127.0.0.1
    "http://0x7f000001:{port}/healthz",  # hex
    "http://0177.0.0.1:{port}/healthz",  # octal
    "http://127.1:{port}/healthz",  # short form
    "http://[::1]:{port}/healthz",
    "http://[::ffff:127.0.0.1]:{port}/healthz",  # IPv4-mapped IPv6
    "http://[::ffff:7f00:1]:{port}/healthz",
    "http://0.0.0.0:{port}/healthz",
    "http://169.254.169.254/computeMetadata/v1/",
    "http://[fe80::1]/",
    "http://metadata.google.internal/computeMetadata/v1/",
    "http://10.0.0.1/",
    "http://192.168.1.1/",
    "http://172.16.0.1/",
    "http://100.64.0.1/",
    "http://224.0.0.1/",
    "http://[ff02::1]/",
    "http://[2002:7f00:1::]/",  # 6to4 wrapping 127.0.0.1
    "file:///etc/passwd",
    "ftp://example.com/image.jpg",
    "gopher://127.0.0.1:70/",
]


@pytest.mark.parametrize("template", SSRF_URLS)
def test_source_urls_into_the_network_are_refused(server, template):
    response = post(server, data={"source": template.format(port=_loopback_port(server))})
    assert_error(response, 400, "source")
    assert requests.get(server.url + "/healthz", timeout=5).status_code == 200


def test_redirect_into_the_network_is_refused(server, image_host):
    target = f"http://127.0.0.1:{server.port}/healthz"
    response = post(server, data={"source": f"{image_host}/redirect?to={target}"})
    assert_error(response, 400, "not allowed")


def test_redirect_to_an_allowed_host_is_followed(server, weights, bus_jpg, image_host):
    response = post(server, data={"source": f"{image_host}/redirect?to=/bus.jpg"})
    assert response.status_code == 200, response.text
    assert response.json()["images"][0]["results"] == local_summary(weights["detect"], str(bus_jpg))


@pytest.mark.parametrize("path", ["/huge", "/huge-chunked"])
def test_source_over_the_upload_cap_is_refused(server, image_host, path):
    assert_error(post(server, data={"source": image_host + path}), 413, "10 MB")


def test_source_url_errors(server, image_host):
    assert_error(post(server, data={"source": image_host + "/missing"}), 400, "HTTP 404")
    assert_error(post(server, data={"source": "not base64 at all!"}), 400, "base64")


# -- errors --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fields, words",
    [
        ({"conf": "abc"}, ["'conf'", "0.01-1.0"]),
        ({"conf": "0"}, ["'conf'", "0.01-1.0"]),
        ({"conf": "1.5"}, ["'conf'", "0.01-1.0"]),
        ({"conf": "nan"}, ["'conf'"]),
        ({"confidence": "2"}, ["'confidence'", "0.01-1.0"]),
        ({"iou": "0.99"}, ["'iou'", "0.0-0.95"]),
        ({"iou": "-0.1"}, ["'iou'", "0.0-0.95"]),
        ({"imgsz": "31"}, ["'imgsz'", "32-1280"]),
        ({"imgsz": "2000"}, ["'imgsz'", "32-1280"]),
        ({"imgsz": "64.5"}, ["'imgsz'", "32-1280"]),
        ({"size": "x"}, ["'size'", "32-1280"]),
        ({"decimals": "11"}, ["'decimals'", "0-10"]),
        ({"normalize": "maybe"}, ["'normalize'", "true or false"]),
    ],
)
def test_bad_parameters_are_400_naming_field_and_range(server, bus_jpg, fields, words):
    assert_error(post(server, files={"file": bus_jpg.open("rb")}, data=fields), 400, *words)


def test_missing_image_is_400(server):
    assert_error(post(server, data={"conf": "0.5"}), 400, "'file'")


def test_not_an_image_is_415(server):
    assert_error(post(server, files={"file": ("notes.txt", b"hello, this is text" * 10)}), 415, "supported formats")
    assert_error(post(server, files={"file": ("doc.pdf", b"%PDF-1.4\n" + b"0" * 100)}), 415)


def test_corrupt_image_is_400(server, bus_jpg):
    truncated = bus_jpg.read_bytes()[:5000]
    assert_error(post(server, files={"file": ("cut.jpg", truncated)}), 400, "Invalid image")
    assert_error(post(server, files={"file": ("empty.jpg", b"")}), 400, "empty")


def test_upload_over_the_limit_is_413(server):
    assert_error(post(server, files={"file": ("big.jpg", b"\xff\xd8" + b"0" * (11 * 2**20))}), 413, "MAX_UPLOAD_MB=10")
    # Over what any valid request can be (base64 included): refused from Content-Length, before parsing.
    assert_error(post(server, files={"file": ("huge.jpg", b"\xff\xd8" + b"0" * (20 * 2**20))}), 413, "MAX_UPLOAD_MB=10")
    big_source = "A" * (15 * 2**20)
    assert_error(post(server, data={"source": big_source}), 413)
    assert requests.get(server.url + "/healthz", timeout=5).status_code == 200


def _png_header_only(width: int, height: int) -> bytes:
    def chunk(kind, payload):
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def test_decompression_bomb_is_refused_before_decoding(server):
    body = assert_error(post(server, files={"file": ("bomb.png", _png_header_only(30000, 30000))}), 413, "MAX_IMAGE_PIXELS")
    assert "30000x30000" in body["error"]["message"]
    assert requests.get(server.url + "/healthz", timeout=5).status_code == 200


def test_auth(server, bus_jpg):
    files = lambda: {"file": bus_jpg.open("rb")}  # noqa: E731
    assert_error(post(server, files=files(), headers={}), 401, "Unauthorized")
    assert_error(post(server, files=files(), headers={"Authorization": "Bearer wrong"}), 401)
    assert_error(post(server, files=files(), headers={"Authorization": f"Basic {KEYS[0]}"}), 401)
    assert_error(post(server, files=files(), headers={"x-api-key": KEYS[0][:-1]}), 401)
    assert post(server, files=files(), headers={"x-api-key": KEYS[1]}).status_code == 200
    assert post(server, files=files(), headers={"Authorization": f"bearer {KEYS[1]}"}).status_code == 200
    assert requests.get(server.url + "/healthz", timeout=5).status_code == 200
    assert requests.get(server.url + "/readyz", timeout=5).status_code == 200
    server.sync_log()
    assert all(key not in server.log_text() for key in KEYS)


def test_unknown_model_id_is_404(server, bus_jpg):
    assert_error(post(server, files={"file": bus_jpg.open("rb")}, path="/api/models/other/predict"), 404, "Model not found")


def test_routes_and_methods(server):
    assert_error(requests.get(server.url + "/predict", timeout=5), 405, "POST")
    assert_error(requests.delete(server.url + "/healthz", timeout=5), 405, "GET")
    assert_error(requests.get(server.url + "/nothing-here", timeout=5), 404)
    assert_error(requests.get(server.url + f"/api/models/{MODEL_ID}/predict", timeout=5), 405)
    assert requests.head(server.url + "/healthz", timeout=5).status_code == 200


def test_every_request_is_one_structured_log_line(server, bus_jpg):
    import uuid

    trace = uuid.uuid4().hex  # this request's own, on a server the session shares
    post(server, files={"file": bus_jpg.open("rb")}, headers={**AUTH, "X-Cloud-Trace-Context": f"{trace}/123;o=1"})
    server.sync_log()  # every line of that request is written by now
    entries = [e for e in server.log_entries() if e.get("logging.googleapis.com/trace") == trace]
    assert len(entries) == 1
    (entry,) = entries
    assert entry["severity"] == "INFO"
    assert entry["httpRequest"]["status"] == 200 and entry["httpRequest"]["requestMethod"] == "POST"
    assert entry["httpRequest"]["latency"].endswith("s") and float(entry["httpRequest"]["latency"][:-1]) > 0
    assert entry["logging.googleapis.com/spanId"] == "123"
    assert all("unparsed" not in e for e in server.log_entries()), "every stdout line is JSON"
