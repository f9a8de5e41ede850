"""The serving core against what the internet sends: huge and endless bodies, slow clients, bursts, dripping sources,
disconnects, huge images, malformed HTTP. Real server process on loopback; each case bounded and under a minute.
"""

from __future__ import annotations

import base64
import io
import json
import os
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
from conftest import KEYS, local_summary, wait_until
from PIL import Image

pytestmark = pytest.mark.integration

KEY = "reliability-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}
IMAGE_HOST = "127.0.0.3"
MB = 2**20


@pytest.fixture(scope="module")
def tmpdir_for_server(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("server-tmp")


@pytest.fixture(scope="module")
def server(start_server, weights, tmpdir_for_server):
    return start_server({
        "MODEL": str(weights["detect"]),
        "API_KEYS": KEY,
        "MAX_UPLOAD_MB": "2",
        "MAX_IMAGES": "2",
        "MAX_VIDEO_MB": "2",
        "MAX_QUEUE": "4",
        "REQUEST_TIMEOUT_S": "8",
        "URL_TIMEOUT_S": "2",
        "URL_ALLOWED_NETWORKS": f"{IMAGE_HOST}/32",
        "FORWARDED_HOPS": "1",
        "TMPDIR": str(tmpdir_for_server),
    })


# -- helpers -------------------------------------------------------------------------------------------------------


def worker_pid(server) -> int:
    """The gunicorn worker (the process that holds the model and every request's memory)."""
    children = Path(f"/proc/{server.proc.pid}/task/{server.proc.pid}/children").read_text().split()
    assert len(children) == 1, children
    return int(children[0])


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


class PeakRss:
    """Samples a process's RSS every 20 ms while in use; `.peak` is the highest seen."""

    def __init__(self, pid: int):
        self.pid, self.peak, self._stop = pid, rss_bytes(pid), threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, rss_bytes(self.pid))

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def read_response(sock: socket.socket, timeout: float = 20) -> tuple[int, dict, bytes]:
    """Read one HTTP/1.1 response (Content-Length framed) from a raw socket."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before a response: {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    length = int(headers.get("content-length", 0))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return status, headers, body[:length]


def connect(server) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=20)


def send_endlessly(sock: socket.socket, head: bytes, chunk: bytes, limit: int, seconds: float) -> int:
    """Send the head, then `chunk` again and again until `limit` bytes, `seconds`, or the server stops reading."""
    sent = 0
    deadline = time.monotonic() + seconds
    try:
        sock.sendall(head)
        while sent < limit and time.monotonic() < deadline:
            sock.sendall(chunk)
            sent += len(chunk)
    except OSError:  # the server answered and closed: exactly what should happen
        pass
    return sent


def closed_by_server(sock: socket.socket, timeout: float = 10) -> bool:
    sock.settimeout(timeout)
    try:
        while sock.recv(65536):
            pass
        return True
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def error_json(body: bytes, status: int) -> dict:
    parsed = json.loads(body)
    assert set(parsed) == {"error"} and parsed["error"]["code"] == status, parsed
    return parsed["error"]


def healthy(server, within: float = 1.0) -> bool:
    started = time.monotonic()
    ok = requests.get(server.url + "/healthz", timeout=within).status_code == 200
    return ok and time.monotonic() - started < within


def predict(server, path, **kwargs):
    return requests.post(server.url + "/predict", files={"file": path.read_bytes()}, headers=AUTH, timeout=60, **kwargs)


# -- bodies that would not end -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "head, status",
    [
        (b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n", 401),  # no key
        (b"POST /nothing-here HTTP/1.1\r\nHost: x\r\n", 404),
        (b"PUT /healthz HTTP/1.1\r\nHost: x\r\n", 405),
        (b"POST /predict HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + KEY.encode() + b"\r\n", 413),  # too big
    ],
    ids=["401", "404", "405", "413"],
)
def test_a_declared_gigabyte_is_answered_before_reading_and_not_held(server, head, status):
    pid = worker_pid(server)
    before = rss_bytes(pid)
    answers, sent = [], []

    def attack():
        sock = connect(server)
        reader = ThreadPoolExecutor(1).submit(read_response, sock)
        sent.append(send_endlessly(sock, head + b"Content-Length: 1073741824\r\n\r\n", b"\0" * MB, 2**30, 15))
        answers.append(reader.result(20))
        sock.close()

    with PeakRss(pid) as peak:
        threads = [threading.Thread(target=attack) for _ in range(4)]
        [t.start() for t in threads]
        [t.join(60) for t in threads]
    assert [a[0] for a in answers] == [status] * 4
    for _, headers, body in answers:
        assert headers["connection"] == "close" and headers["content-type"] == "application/json"
        error_json(body, status)
    assert max(sent) < 64 * MB, "the server stopped reading long before the body's end"
    assert peak.peak - before < 64 * MB, f"RSS grew by {(peak.peak - before) / MB:.0f} MB"
    assert healthy(server)


def _disk_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


@pytest.mark.parametrize("kind", ["multipart-file", "raw"])
def test_an_endless_chunked_body_stops_at_its_cap(server, tmpdir_for_server, kind):
    pid = worker_pid(server)
    before = rss_bytes(pid)
    disk_before = _disk_bytes(tmpdir_for_server)
    if kind == "multipart-file":
        content_type = b"multipart/form-data; boundary=XyZ"
        first = b"--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.jpg\"\r\n\r\n"
    else:
        content_type, first = b"application/octet-stream", b""
    head = (b"POST /predict HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + KEY.encode() +
            b"\r\nTransfer-Encoding: chunked\r\nContent-Type: " + content_type + b"\r\n\r\n")
    block = b"\0" * MB
    chunk = f"{len(block):x}\r\n".encode() + block + b"\r\n"
    sock = connect(server)
    reader = ThreadPoolExecutor(1).submit(read_response, sock)
    with PeakRss(pid) as peak:
        sent = send_endlessly(sock, head + f"{len(first):x}\r\n".encode() + first + b"\r\n" if first else head,
                              chunk, 2**30, 20)
        status, headers, body = reader.result(20)
    sock.close()
    assert status == 413 and headers["connection"] == "close"
    message = error_json(body, 413)["message"]
    assert ("MAX_UPLOAD_MB=2" in message) if kind == "multipart-file" else ("request body" in message)
    assert sent < 64 * MB
    assert peak.peak - before < 64 * MB, f"RSS grew by {(peak.peak - before) / MB:.0f} MB"
    assert _disk_bytes(tmpdir_for_server) - disk_before < MB, "nothing was spooled to disk (TMPDIR)"
    assert healthy(server)


def test_many_large_text_fields_hit_the_form_caps(server):
    # 40 fields of 1.5 MB: each under the field cap (4/3 of MAX_UPLOAD_MB), together far over the body cap.
    fields = [(f"f{i}", "a" * (3 * MB // 2)) for i in range(40)]
    response = requests.post(server.url + "/predict", files=[(k, (None, v)) for k, v in fields], headers=AUTH, timeout=60)
    assert response.status_code == 413 and "request body" in response.json()["error"]["message"]
    one_huge = requests.post(server.url + "/predict", files={"source": (None, "a" * 3 * MB)}, headers=AUTH, timeout=60)
    assert one_huge.status_code == 413 and "Form field 'source'" in one_huge.json()["error"]["message"]
    many_small = requests.post(server.url + "/predict", data={f"f{i}": "1" for i in range(100)}, headers=AUTH, timeout=60)
    assert many_small.status_code == 413 and "more than 64 fields" in many_small.json()["error"]["message"]
    assert healthy(server)


# -- slow clients --------------------------------------------------------------------------------------------------


def test_slowloris_connections_cost_nothing_and_are_closed(server, bus_jpg):
    header_drippers, body_drippers = [], []
    for _ in range(40):  # never finish their headers
        sock = connect(server)
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\n")
        header_drippers.append(sock)
    for _ in range(10):  # finish their headers, then send a body byte now and then
        sock = connect(server)
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + KEY.encode() +
                     b"\r\nContent-Type: application/octet-stream\r\nContent-Length: 100000\r\n\r\nA")
        body_drippers.append(sock)
    started = time.monotonic()
    for _ in range(3):
        for sock in header_drippers:
            sock.sendall(b"X")
        for sock in body_drippers:
            sock.sendall(b"B")
        assert healthy(server, within=1.0)
        time.sleep(0.5)
    ok = predict(server, bus_jpg)
    assert ok.status_code == 200 and time.monotonic() - started < 30
    # The body drippers meet the request deadline (REQUEST_TIMEOUT_S=8): a 408 in our JSON, then the close.
    for sock in body_drippers:
        status, headers, body = read_response(sock, timeout=15)
        assert status == 408 and "REQUEST_TIMEOUT_S=8" in error_json(body, 408)["message"]
        assert headers["connection"] == "close"
    # The header drippers meet the header timeout (10 s after their first byte): closed without a word.
    assert all(closed_by_server(sock, timeout=15) for sock in header_drippers)
    assert time.monotonic() - started < 40
    for sock in header_drippers + body_drippers:
        sock.close()
    assert healthy(server)


class _DrippingHost(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server's name
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", "100000")
        self.end_headers()
        try:
            for _ in range(200):
                self.wfile.write(b"\xff")
                self.wfile.flush()
                time.sleep(0.25)
        except OSError:
            pass

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def dripping_host():
    httpd = ThreadingHTTPServer((IMAGE_HOST, 0), _DrippingHost)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://{IMAGE_HOST}:{httpd.server_port}/slow.jpg"
    httpd.shutdown()


def test_a_dripping_source_is_cut_at_the_wall_clock_timeout(server, dripping_host):
    started = time.monotonic()
    response = requests.post(server.url + "/predict", data={"source": dripping_host}, headers=AUTH, timeout=30)
    elapsed = time.monotonic() - started
    assert response.status_code == 504, response.text
    assert "URL_TIMEOUT_S=2" in response.json()["error"]["message"]
    assert elapsed < 4, f"answered after {elapsed:.1f} s"
    assert healthy(server)


# -- bursts --------------------------------------------------------------------------------------------------------


def test_a_burst_gets_429s_with_retry_after_and_health_stays_green(server, bus_jpg):
    data = bus_jpg.read_bytes()
    health: list[tuple[int | str, float]] = []  # (status, or the error that came instead; seconds), judged below
    stop = threading.Event()

    def watch_health():
        while not stop.is_set():
            t = time.monotonic()
            try:
                health.append((requests.get(server.url + "/healthz", timeout=2).status_code, time.monotonic() - t))
            except requests.RequestException as exc:
                health.append((f"{type(exc).__name__}: {exc}", time.monotonic() - t))
            stop.wait(0.05)

    watcher = threading.Thread(target=watch_health)
    watcher.start()

    def call(_):
        return requests.post(server.url + "/predict", files={"file": data}, headers=AUTH, timeout=60)

    try:
        with ThreadPoolExecutor(100) as pool:
            responses = list(pool.map(call, range(100)))
    finally:
        stop.set()
        watcher.join()
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {200, 429}, sorted(set(statuses))
    assert statuses.count(200) >= 4 and statuses.count(429) >= 50
    for r in responses:
        if r.status_code == 429:
            assert int(r.headers["Retry-After"]) >= 1
            assert "MAX_QUEUE=4" in r.json()["error"]["message"]
    assert len(health) >= 2, "/healthz was watched throughout the burst"
    assert [status for status, _ in health] == [200] * len(health), health
    assert max(seconds for _, seconds in health) < 1.0, f"slowest /healthz: {max(s for _, s in health):.3f} s"


# -- clients that leave --------------------------------------------------------------------------------------------


def test_a_client_that_disconnects_mid_upload_is_a_warning_without_a_trace(server, bus_jpg):
    import uuid

    agent = f"leaves-mid-upload/{uuid.uuid4().hex}"  # this request's own line, whatever else the server logs
    sock = connect(server)
    sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + KEY.encode() +
                 b"\r\nUser-Agent: " + agent.encode() +
                 b"\r\nContent-Type: multipart/form-data; boundary=B\r\nContent-Length: 1000000\r\n\r\n"
                 b"--B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.jpg\"\r\n\r\n" + b"\xff" * 50000)
    sock.close()  # the headers are whole: the server takes the request, reads what came, then finds the client gone
    gone = server.wait_for_log(lambda e: e.get("httpRequest", {}).get("userAgent") == agent, timeout=30)
    assert "client went away" in gone["message"]
    assert gone["severity"] == "WARNING" and gone["httpRequest"]["status"] == 499
    assert healthy(server)
    assert "Traceback" not in server.log_text() and "stack_trace" not in server.log_text()


# -- huge images ---------------------------------------------------------------------------------------------------


def _flat_png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (90, 120, 150)).save(buffer, "PNG")
    return buffer.getvalue()


def test_huge_images_queue_for_memory_instead_of_multiplying_it(keyed_server):
    # The session's keyed server, with the default deadline and pixel budget: four such images one after the other
    # take longer than this module's 8 s.
    server = keyed_server
    png = _flat_png(8000, 8000)  # 64 Mpx, a few hundred KB compressed; under MAX_IMAGE_PIXELS
    pid = worker_pid(server)

    def call(_):
        return requests.post(server.url + "/predict", files={"file": ("big.png", png)},
                             headers={"Authorization": f"Bearer {KEYS[0]}"}, timeout=120)

    baseline = rss_bytes(pid)
    with PeakRss(pid) as single:
        assert call(0).status_code == 200
    one = single.peak - baseline
    with PeakRss(pid) as together:
        with ThreadPoolExecutor(4) as pool:
            statuses = [r.status_code for r in pool.map(call, range(4))]
    assert statuses == [200] * 4
    four = together.peak - baseline
    assert four < 1.5 * one + 100 * MB, f"one: {one / MB:.0f} MB, four at once: {four / MB:.0f} MB"
    # The memory goes back once the answers are out (a heap trim on the event loop's next turn): wait for that.
    bound = 0.5 * one + 100 * MB
    try:
        wait_until(lambda: rss_bytes(pid) - baseline < bound, 10, "the memory to go back")
    except AssertionError:
        raise AssertionError(f"RSS stayed {(rss_bytes(pid) - baseline) / MB:.0f} MB above its baseline") from None
    assert healthy(server)


# -- malformed HTTP ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw, status",
    [
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 40000 + b"\r\n\r\n", 431),
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Huge: " + b"b" * 70000 + b"\r\n\r\n", 431),
        (b"POST /predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
        (b"GET /robots.txt HTTP/1.1\r\nHost: x\r\n\r\n", 404),
        (b"GET /favicon.ico HTTP/1.1\r\nHost: x\r\n\r\n", 404),
    ],
    ids=["garbage", "414", "431-app", "431-server", "501", "robots", "favicon"],
)
def test_malformed_requests_get_our_json(server, raw, status):
    sock = connect(server)
    sock.sendall(raw)
    got, headers, body = read_response(sock)
    sock.close()
    assert got == status and headers["content-type"] == "application/json"
    error_json(body, status)
    assert healthy(server)


# -- small things that used to go wrong ----------------------------------------------------------------------------


def test_a_latin1_filename_is_just_a_filename(server, weights, bus_jpg):
    body = (b"--B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"caf\xe9 \xfc.jpg\"\r\n"
            b"Content-Type: image/jpeg\r\n\r\n" + bus_jpg.read_bytes() + b"\r\n--B--\r\n")
    response = requests.post(server.url + "/predict", data=body, timeout=60,
                             headers={**AUTH, "Content-Type": "multipart/form-data; boundary=B"})
    assert response.status_code == 200, response.text
    assert response.json()["images"][0]["results"] == local_summary(weights["detect"], str(bus_jpg))


def test_unescaped_plus_in_urlencoded_base64_survives(server, weights, bus_jpg):
    encoded = base64.b64encode(bus_jpg.read_bytes())
    assert b"+" in encoded
    response = requests.post(server.url + "/predict", data=b"source=" + encoded, timeout=60,
                             headers={**AUTH, "Content-Type": "application/x-www-form-urlencoded"})
    assert response.status_code == 200, response.text
    assert response.json()["images"][0]["results"] == local_summary(weights["detect"], str(bus_jpg))


@pytest.mark.parametrize("field, value", [("conf", "０.５"), ("imgsz", "٦٤٠"), ("imgsz", "6_40"), ("iou", " 0x1 "),
                                          ("conf", "1e-1e"), ("decimals", "²")])
def test_numbers_are_ascii_decimal_only(server, bus_jpg, field, value):
    response = requests.post(server.url + "/predict", files={"file": bus_jpg.read_bytes()}, data={field: value},
                             headers=AUTH, timeout=60)
    assert response.status_code == 400 and f"'{field}'" in response.json()["error"]["message"]


def test_repeated_fields_several_images_and_one_parameter_once(server, weights, bus_jpg, zidane_jpg):
    files = [("file", ("bus.jpg", bus_jpg.read_bytes())), ("file", ("zidane.jpg", zidane_jpg.read_bytes()))]
    response = requests.post(server.url + "/predict", files=files, headers=AUTH, timeout=60)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["metadata"]["imageCount"] == 2
    assert [image["results"] for image in body["images"]] == [
        local_summary(weights["detect"], str(bus_jpg)), local_summary(weights["detect"], str(zidane_jpg))]
    over = requests.post(server.url + "/predict", files=files + [("file", ("c.jpg", bus_jpg.read_bytes()))],
                         headers=AUTH, timeout=60)
    assert over.status_code == 413 and "MAX_IMAGES=2" in over.json()["error"]["message"]
    twice = requests.post(server.url + "/predict", files={"file": bus_jpg.read_bytes()},
                          data=[("conf", "0.3"), ("conf", "0.6")], headers=AUTH, timeout=60)
    assert twice.status_code == 400 and "'conf' was given 2 times" in twice.json()["error"]["message"]
    form_wins = requests.post(server.url + "/predict?conf=0.9", files={"file": bus_jpg.read_bytes()},
                              data={"conf": "0.3"}, headers=AUTH, timeout=60)
    assert form_wins.json()["images"][0]["results"] == local_summary(weights["detect"], str(bus_jpg), conf=0.3)


def test_corrupt_data_behind_an_image_signature_is_400_not_415(server):
    for name, data in [("png", b"\x89PNG\r\n\x1a\n" + os.urandom(2000)), ("jpg", b"\xff\xd8\xff\xe0" + b"\0" * 2000),
                       ("webp", b"RIFF\x00\x10\x00\x00WEBPVP8 " + b"\0" * 2000)]:
        response = requests.post(server.url + "/predict", files={"file": (f"x.{name}", data)}, headers=AUTH, timeout=60)
        assert response.status_code == 400 and response.json()["error"]["status"] == "Invalid image", name
    text = requests.post(server.url + "/predict", files={"file": ("x.txt", b"just some text" * 50)}, headers=AUTH, timeout=60)
    assert text.status_code == 415


def test_logs_take_the_ip_googles_front_end_appended_and_only_valid_trace_ids(server):
    trace = "0af7651916cd43dd8448eb211c80319c"
    requests.get(server.url + "/healthz", timeout=5, headers={
        "X-Forwarded-For": "6.6.6.6, 203.0.113.9", "X-Cloud-Trace-Context": f"{trace}/42;o=1", "User-Agent": "t-valid"})
    requests.get(server.url + "/healthz", timeout=5, headers={
        "X-Forwarded-For": "6.6.6.6", "X-Cloud-Trace-Context": "../../etc/passwd\"}{", "User-Agent": "t-invalid"})
    server.sync_log()
    entries = {e["httpRequest"]["userAgent"]: e for e in server.log_entries() if "httpRequest" in e}
    valid, invalid = entries["t-valid"], entries["t-invalid"]
    assert valid["httpRequest"]["remoteIp"] == "203.0.113.9"  # FORWARDED_HOPS=1: the rightmost entry
    assert valid["logging.googleapis.com/trace"] == trace and valid["logging.googleapis.com/spanId"] == "42"
    assert invalid["httpRequest"]["remoteIp"] == "6.6.6.6"
    assert not any(k.startswith("logging.googleapis.com/") for k in invalid)


# -- metrics -------------------------------------------------------------------------------------------------------


def _samples(server) -> dict:
    from prometheus_client.parser import text_string_to_metric_families

    response = requests.get(server.url + "/metrics", timeout=5)
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/plain")
    assert KEY not in response.text
    out = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def test_metrics_count_what_was_served(server, bus_jpg):
    def value(samples, name, **labels):  # summed over the labels not named (the model's id, for one)
        return sum(v for (n, have), v in samples.items() if n == name and set(labels.items()) <= set(have))

    before = _samples(server)
    for _ in range(3):
        assert predict(server, bus_jpg).status_code == 200
    assert requests.post(server.url + "/predict", files={"file": bus_jpg.read_bytes()}, timeout=60).status_code == 401
    assert requests.get(server.url + "/no/such/thing", timeout=5).status_code == 404
    after = _samples(server)
    ok = {"route": "/predict", "method": "POST", "status": "200"}
    assert value(after, "yolo_requests_total", **ok) - value(before, "yolo_requests_total", **ok) == 3
    denied = {"route": "/predict", "method": "POST", "status": "401"}
    assert value(after, "yolo_requests_total", **denied) - value(before, "yolo_requests_total", **denied) == 1
    missing = {"route": "unmatched", "method": "GET", "status": "404"}
    assert value(after, "yolo_requests_total", **missing) - value(before, "yolo_requests_total", **missing) == 1
    assert value(after, "yolo_images_total") - value(before, "yolo_images_total") == 3
    assert value(after, "yolo_inference_seconds_count") - value(before, "yolo_inference_seconds_count") == 3
    assert value(after, "yolo_queue_wait_seconds_count") - value(before, "yolo_queue_wait_seconds_count") == 3
    assert value(after, "yolo_batch_size_sum") - value(before, "yolo_batch_size_sum") == 3
    latency = {"route": "/predict"}
    assert value(after, "yolo_request_duration_seconds_count", **latency) - value(
        before, "yolo_request_duration_seconds_count", **latency) == 4
    assert value(after, "yolo_inflight_requests") == 0 and value(after, "yolo_queue_depth") == 0
    assert value(after, "yolo_model_load_seconds", phase="total") > 0
    assert value(after, "process_resident_memory_bytes") > 100 * MB
