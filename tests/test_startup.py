"""Start-up and shutdown of the real process: readiness, refusals, clean non-zero exits, graceful SIGTERM."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import requests
from conftest import held, wait_until

pytestmark = pytest.mark.integration


def critical_messages(server) -> list[str]:
    return [e["message"] for e in server.log_entries() if e.get("severity") == "CRITICAL"]


def test_readyz_is_503_until_the_model_is_loaded_and_warm(start_server, weights, bus_jpg):
    server = start_server({"MODEL": str(weights["detect"])}, wait=False)
    deadline = time.monotonic() + 60
    while True:  # /healthz answers as soon as gunicorn listens, long before the model is ready
        assert time.monotonic() < deadline and server.proc.poll() is None
        try:
            # Generous timeout: while the loader thread imports torch it holds the GIL for long stretches.
            if requests.get(server.url + "/healthz", timeout=30).status_code == 200:
                break
        except requests.ConnectionError:
            time.sleep(0.05)
    not_ready = requests.get(server.url + "/readyz", timeout=30)
    assert not_ready.status_code == 503 and not_ready.headers["Retry-After"] == "1"
    assert not_ready.json()["error"]["code"] == 503
    early = requests.post(server.url + "/predict", files={"file": bus_jpg.open("rb")}, timeout=30)
    assert early.status_code == 503 and "loading" in early.json()["error"]["message"]
    server.wait_ready()
    assert requests.get(server.url + "/healthz", timeout=5).json() == {"status": "ok"}
    assert requests.post(server.url + "/predict", files={"file": bus_jpg.open("rb")}, timeout=60).status_code == 200

    # SIGTERM while requests are in flight: they complete, nothing new gets in, the process exits 0 within Cloud Run's
    # 10 s. The 503s /readyz gave while the model loaded were expected: logged at INFO, not as errors.
    server.sync_log()
    assert all(e["severity"] == "INFO" for e in server.log_entries() if e.get("httpRequest", {}).get("requestUrl") == "/readyz")
    data = bus_jpg.read_bytes()
    answers = []

    def call():
        answers.append(requests.post(server.url + "/predict", files={"file": data}, timeout=30).status_code)

    before = held(server.url)
    workers = [threading.Thread(target=call) for _ in range(8)]
    [w.start() for w in workers]
    wait_until(lambda: held(server.url) - before >= 8, 60, "the server to hold the 8 requests")  # none still connecting
    started = time.monotonic()
    server.terminate()

    def refused() -> bool:  # the listener is closed: Cloud Run sends new requests elsewhere
        try:
            requests.get(server.url + "/healthz", timeout=5)
            return False
        except requests.ConnectionError:
            return True

    wait_until(refused, 5, "the listener to close after SIGTERM")
    assert server.proc.wait(10) == 0
    assert time.monotonic() - started < 10
    [w.join(10) for w in workers]
    assert answers == [200] * 8
    messages = [e.get("message", "") for e in server.log_entries()]
    shutdown = next(i for i, m in enumerate(messages) if m.startswith("shutting down:"))
    assert any(m.startswith("POST /predict 200") for m in messages[shutdown:]), "requests were in flight at SIGTERM"


def test_on_cloud_run_without_keys_it_refuses_to_start(start_server, weights):
    server = start_server({"MODEL": str(weights["detect"]), "K_SERVICE": "yolo"}, wait=False)
    assert server.wait_exit(60) == 2
    (message,) = critical_messages(server)
    assert "refusing to start on Cloud Run without API keys" in message and "ALLOW_UNAUTHENTICATED=true" in message


def test_on_cloud_run_keys_come_from_a_mounted_secret_file(start_server, weights, bus_jpg, tmp_path):
    secret = tmp_path / "api-keys"
    secret.write_text("first-key-abcdef\n\nsecond-key-123456\n")
    server = start_server({"MODEL": str(weights["detect"]), "K_SERVICE": "yolo", "API_KEYS_FILE": str(secret)})
    url = server.url + "/predict"
    assert requests.post(url, files={"file": bus_jpg.open("rb")}, timeout=60).status_code == 401
    ok = requests.post(url, files={"file": bus_jpg.open("rb")}, headers={"x-api-key": "second-key-123456"}, timeout=60)
    assert ok.status_code == 200
    assert "second-key-123456" not in server.log_text() and "first-key-abcdef" not in server.log_text()
    assert server.stop() == 0


@pytest.mark.parametrize(
    "env, words",
    [
        ({"MODEL": ""}, ["MODEL is not set"]),
        ({"THREADS": "many"}, ["THREADS='many'", "integer"]),
        ({"MAX_UPLOAD_MB": "0"}, ["MAX_UPLOAD_MB=0", "out of range"]),
        ({"ALLOW_UNAUTHENTICATED": "perhaps"}, ["ALLOW_UNAUTHENTICATED"]),
        ({"API_KEYS_FILE": "/nonexistent/keys"}, ["API_KEYS_FILE=/nonexistent/keys", "cannot be read"]),
        ({"URL_ALLOWED_NETWORKS": "not-a-net"}, ["URL_ALLOWED_NETWORKS", "not an IP network"]),
    ],
)
def test_bad_configuration_exits_2_naming_the_variable(start_server, weights, env, words):
    server = start_server({"MODEL": str(weights["detect"]), **env}, wait=False)
    assert server.wait_exit(60) == 2
    (message,) = critical_messages(server)
    assert message.startswith("configuration error:")
    for word in words:
        assert word in message


def _not_yolo(tmp_path):
    import torch

    path = tmp_path / "not-yolo.pt"
    torch.save({"weights": torch.zeros(3)}, path)
    return path


@pytest.mark.parametrize(
    "make, words",
    [
        (lambda tmp: tmp / "nowhere" / "best.pt", ["no such file"]),
        (lambda tmp: (tmp / "corrupt.pt").write_bytes(b"\x80\x04garbage" * 100) and tmp / "corrupt.pt", ["is not a loadable YOLO model"]),
        (_not_yolo, ["is not a loadable YOLO model"]),
    ],
    ids=["missing", "corrupt", "not-yolo"],
)
def test_unusable_weights_exit_4_with_one_clear_line(start_server, tmp_path, make, words):
    server = start_server({"MODEL": str(make(tmp_path))}, wait=False)
    assert server.wait_exit(120) == 4
    (message,) = critical_messages(server)
    assert message.startswith("cannot serve:")
    for word in words:
        assert word in message
    assert "Traceback" not in server.log_text()


def test_weights_from_an_https_style_url_and_an_exported_torchscript_model(start_server, weights, bus_jpg, tmp_path):
    """MODEL may be a URL (downloaded into the cache) or any format YOLO() loads; here TorchScript, exported locally."""
    import functools
    import shutil
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    from conftest import local_summary
    from ultralytics import YOLO

    source = tmp_path / "fall.pt"  # export writes beside its input: keep it out of site-packages
    shutil.copy(weights["detect"], source)
    exported = Path(YOLO(str(source)).export(format="torchscript", imgsz=640))
    served = tmp_path / "served"
    served.mkdir()
    shutil.copy(exported, served / "fall.torchscript")
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(served))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{httpd.server_port}/fall.torchscript"
        server = start_server({"MODEL": url, "MODEL_CACHE_DIR": str(tmp_path / "cache")})
    finally:
        httpd.shutdown()
    assert (tmp_path / "cache" / "url" / "fall.torchscript").read_bytes() == exported.read_bytes()
    response = requests.post(server.url + "/predict", files={"file": bus_jpg.open("rb")}, timeout=60)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["metadata"]["model"] == "fall.torchscript"
    assert body["images"][0]["results"] == local_summary(exported, str(bus_jpg))
    assert body["images"][0]["results"], "the exported model still finds people"
    assert server.stop() == 0
