"""The plain functions behind the handler, tested without a server: settings, parameters, addresses, the loop."""

from __future__ import annotations

import ipaddress
import json
import queue
import re
import threading

import numpy as np
import pytest
from conftest import ROOT

from function.core.service import Service
from function.core.sources import is_forbidden_address
from function.dialects.params import parse_params
from function.errors import BadParameter, ConfigError, InferenceTimeout, ModelNotReady, Overloaded
from function.http.server import create_app, gunicorn_options
from function.models.batcher import InferenceLoop, Job, collect_batch, run_batch
from function.models.params import PredictParams
from function.settings import load_settings

# -- settings ------------------------------------------------------------------------------------------------------


def _documented_defaults() -> dict[str, str]:
    """Each variable the docs' tables give one plain default (a number, a word, a path), as the docs write it."""
    documented = {}
    for page in ("configuration.md", "limits.md"):
        for line in (ROOT / "docs" / page).read_text().splitlines():
            row = re.fullmatch(r"\| `([A-Z0-9_]+)` \| `?([\w./:,-]+)`? \|.*", line)
            if row:
                documented[row[1]] = row[2].replace(",", "") if row[2].replace(",", "").isdigit() else row[2]
    return documented


def test_the_documented_defaults_are_the_defaults():
    """Setting a variable to the default the docs give it changes nothing."""
    documented = _documented_defaults()
    assert {"PORT", "THREADS", "MAX_UPLOAD_MB", "REQUEST_TIMEOUT_S", "MAX_QUEUE", "MAX_BATCH_SIZE", "ENGINE",
            "MAX_VIDEO_FRAMES", "HUB_V1_DATA", "LOG_LEVEL"} <= set(documented), documented
    unset = load_settings({"MODEL": "gs://b/best.pt"})
    for name, value in documented.items():
        assert load_settings({"MODEL": "gs://b/best.pt", name: value}) == unset, f"{name}={value} is not the default"


def test_without_keys_no_key_is_required():
    s = load_settings({"MODEL": "gs://b/best.pt"})
    assert s.api_keys == () and not s.auth_required and not s.on_cloud_run


def test_api_keys_from_env_and_file_are_merged_and_hidden_from_repr(tmp_path):
    keys = tmp_path / "keys"
    keys.write_text("b-key\n  c-key  \n\n")
    s = load_settings({"MODEL": "m.pt", "API_KEYS": "a-key, b-key,", "API_KEYS_FILE": str(keys)})
    assert s.api_keys == ("a-key", "b-key", "c-key")
    assert "a-key" not in repr(s)


@pytest.mark.parametrize(
    "env",
    [{"PORT": "0"}, {"PORT": "http"}, {"THREADS": "1000"}, {"MODEL_TASK": "track"}, {"LOG_LEVEL": "LOUD"},
     {"REQUEST_TIMEOUT_S": "-1"}, {"K_SERVICE": "svc"}, {"K_SERVICE": "svc", "ALLOW_UNAUTHENTICATED": "yes please"}],
)
def test_bad_settings_raise_config_error(env):
    with pytest.raises(ConfigError):
        load_settings({"MODEL": "m.pt", **env})


def test_cloud_run_may_serve_unauthenticated_when_told_to():
    assert load_settings({"MODEL": "m.pt", "K_SERVICE": "svc", "ALLOW_UNAUTHENTICATED": "true"}).on_cloud_run


CLOUD_RUN_SIGTERM_GRACE_S = 10  # Cloud Run sends SIGKILL this long after SIGTERM
CLOUD_RUN_IDLE_TIMEOUT_S = 600  # Cloud Run's and Google's front ends' idle keep-alive


def test_gunicorn_options_give_one_worker_a_graceful_stop_and_no_silent_kill():
    """What the options must guarantee, read back through gunicorn's own configuration (which also refuses any option
    it does not know)."""
    import logging

    import gunicorn.config
    from uvicorn_worker import UvicornWorker

    from function.http.protocol import Protocol
    from function.logs import JsonFormatter

    settings = load_settings({"MODEL": "m.pt", "PORT": "9000", "MAX_CONNECTIONS": "500"})
    cfg = gunicorn.config.Config()
    for key, value in gunicorn_options(settings).items():
        cfg.set(key, value)

    assert cfg.address == [("0.0.0.0", 9000)]
    assert cfg.workers == 1, "one process owns the model and the GPU"
    assert cfg.max_requests == 0 and cfg.timeout == 0, "the worker and its loaded model: never recycled, never killed as silent"
    worker = cfg.worker_class
    assert issubclass(worker, UvicornWorker)
    uvicorn = worker.CONFIG_KWARGS
    assert uvicorn["http"] is Protocol, "our protocol: HTTP/1.1 and h2c on one port"
    assert uvicorn["limit_concurrency"] == 500 and uvicorn["proxy_headers"] is False
    # In-flight requests finish inside Cloud Run's grace; uvicorn stops waiting before gunicorn kills the worker.
    assert cfg.graceful_timeout < CLOUD_RUN_SIGTERM_GRACE_S
    assert 1 <= uvicorn["timeout_graceful_shutdown"] <= cfg.graceful_timeout - 1
    assert cfg.keepalive > CLOUD_RUN_IDLE_TIMEOUT_S, "the front end closes an idle connection first, never us under it"
    assert cfg.accesslog is None, "one log line per request, ours"
    assert cfg.control_socket_disable, "no control socket under $HOME (read-only on Cloud Run)"
    assert callable(cfg.post_worker_init) and callable(cfg.worker_exit)

    logger = cfg.logger_class(cfg)
    assert logger.error_log.handlers and all(isinstance(h.formatter, JsonFormatter) for h in logger.error_log.handlers)
    record = logging.LogRecord("gunicorn.error", logging.WARNING, __file__, 1, "worker booted", None, None)
    assert json.loads(logger.error_log.handlers[0].format(record))["severity"] == "WARNING"


# -- parameters ----------------------------------------------------------------------------------------------------


def test_params_defaults_aliases_and_precedence():
    assert parse_params({}) == PredictParams(conf=0.25, iou=0.7, imgsz=640, normalize=False, decimals=5)
    assert parse_params({"confidence": "0.5", "size": "320"}) == PredictParams(conf=0.5, imgsz=320)
    assert parse_params({"conf": "0.4"}, {"conf": "0.9", "iou": "0.1"}) == PredictParams(conf=0.4, iou=0.1)
    assert parse_params({"conf": ""}, {"conf": "0.3"}).conf == 0.3
    assert parse_params({"normalize": "TRUE"}).normalize is True
    assert PredictParams(conf=0.3, imgsz=320).model_args == {"conf": 0.3, "iou": 0.7, "imgsz": 320}


@pytest.mark.parametrize("fields", [{"conf": "inf"}, {"iou": "1"}, {"imgsz": "1e3"}, {"decimals": "-1"}, {"normalize": "2"}])
def test_params_out_of_range(fields):
    with pytest.raises(BadParameter) as error:
        parse_params(fields)
    assert next(iter(fields)) in error.value.message


# -- addresses -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1", "127.8.9.1", "10.1.2.3", "172.31.0.1", "192.168.0.1", "169.254.169.254", "100.64.0.1", "0.0.0.0",
     "224.0.0.251", "255.255.255.255", "::1", "::", "fe80::1", "fc00::1", "ff02::1", "::ffff:127.0.0.1",
     "::ffff:169.254.169.254", "2002:a9fe:a9fe::1", "64:ff9b::7f00:1", "fe80::1%eth0"],
)
def test_non_public_addresses_are_forbidden(address):
    assert is_forbidden_address(address)


@pytest.mark.parametrize("address", ["8.8.8.8", "142.250.1.1", "2607:f8b0:4004:c07::64", "::ffff:8.8.8.8"])
def test_public_addresses_are_allowed(address):
    assert not is_forbidden_address(address)


def test_allowed_networks_open_exactly_their_range():
    allowed = (ipaddress.ip_network("10.20.0.0/16"),)
    assert not is_forbidden_address("10.20.3.4", allowed)
    assert is_forbidden_address("10.21.3.4", allowed)


# -- the inference loop, with a queue and no HTTP ------------------------------------------------------------------


def _job(conf=0.25):
    return Job(np.zeros((2, 2, 3), np.uint8), PredictParams(conf=conf))


def test_collect_batch_gathers_up_to_the_size_and_stops_on_the_sentinel():
    from function.models.batcher import _STOP

    jobs = queue.Queue()
    for _ in range(5):
        jobs.put(_job())
    batch, stop = collect_batch(jobs, max_size=3, max_wait_s=0.01)
    assert len(batch) == 3 and not stop
    jobs.put(_STOP)
    batch, stop = collect_batch(jobs, max_size=8, max_wait_s=0.01)
    assert len(batch) == 2 and stop


def test_run_batch_groups_by_parameters_and_checks_the_count():
    calls = []

    def predict(images, params):
        calls.append((len(images), params.conf))
        return [f"result-{params.conf}"] * len(images)

    jobs = [_job(0.25), _job(0.5), _job(0.25)]
    run_batch(predict, jobs)
    assert sorted(calls) == [(1, 0.5), (2, 0.25)]
    assert [j.future.result(0) for j in jobs] == ["result-0.25", "result-0.5", "result-0.25"]

    short = [_job(), _job()]
    run_batch(lambda images, params: ["only one"], short)
    assert all(isinstance(j.future.exception(0), RuntimeError) and "1 results for 2 images" in str(j.future.exception(0))
               for j in short)


def test_a_model_failure_reaches_every_job_of_its_batch_and_abandoned_jobs_are_skipped():
    def predict(images, params):
        raise ValueError("CUDA out of memory")

    jobs, abandoned = [_job(), _job()], _job()
    abandoned.future.cancel()  # its request gave up before the model got to it
    run_batch(predict, jobs + [abandoned])
    assert all(isinstance(j.future.exception(0), ValueError) for j in jobs)
    assert abandoned.future.cancelled()


def test_loop_serves_threads_in_turn_and_only_its_own_thread_touches_the_model():
    owners = set()

    def predict(images, params):
        owners.add(threading.current_thread().name)
        return [params.conf for _ in images]

    loop = InferenceLoop(predict, max_queue=64, max_batch_size=4, max_batch_wait_s=0.005)
    loop.start()
    results = {}

    def call(i):
        results[i] = loop.predict_sync(np.zeros((1, 1, 3), np.uint8), PredictParams(conf=0.01 * (i + 1)), timeout_s=10)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(20)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    loop.stop(timeout=5)
    assert results == {i: 0.01 * (i + 1) for i in range(20)}
    assert owners == {"inference"}
    assert not loop.thread.is_alive()


def test_loop_times_out_slow_jobs_refuses_when_full_and_fails_late_waiters_on_stop():
    release, inside = threading.Event(), threading.Event()
    calls = []

    def predict(images, params):
        calls.append(len(images))
        inside.set()
        release.wait(5)
        return [None for _ in images]

    loop = InferenceLoop(predict, max_queue=2)
    loop.start()
    image, params = np.zeros((1, 1, 3), np.uint8), PredictParams()
    busy = threading.Thread(target=lambda: loop.predict_sync(image, params, timeout_s=10))
    busy.start()
    assert inside.wait(10), "the first job is inside predict; the queue is empty again"
    with pytest.raises(InferenceTimeout):
        loop.predict_sync(image, params, timeout_s=0.1)  # queued behind it, gives up; it still holds its slot
    late = Job(image, params)
    loop.jobs.put_nowait(late)
    with pytest.raises(Overloaded):
        loop.predict_sync(image, params, timeout_s=1)
    loop.stop(timeout=0)  # the sentinel goes in although the queue is full
    release.set()
    busy.join(5)
    loop.thread.join(5)
    assert not loop.thread.is_alive()
    assert calls == [1, 1], "the abandoned job was skipped; the late one ran before the sentinel"
    assert late.future.done() and late.future.exception(0) is None

    behind_the_sentinel = Job(image, params)
    loop2 = InferenceLoop(predict, max_queue=4)
    loop2.stop(timeout=0)
    loop2.jobs.put_nowait(behind_the_sentinel)
    loop2.start()
    loop2.thread.join(5)
    assert isinstance(behind_the_sentinel.future.exception(0), ModelNotReady)


# -- the HTTP function through Starlette's test client -------------------------------------------------------------


def _client(settings, service=None):
    from starlette.testclient import TestClient

    return TestClient(create_app(settings, service))


class _ExplodingService(Service):
    async def predict(self, request, started, encode, lease=None):  # the signature the edge calls
        raise RuntimeError("secret internal detail /etc/passwd")


def test_an_unexpected_error_is_a_500_without_a_stack_trace(bus_jpg):
    settings = load_settings({"MODEL": "unused.pt"})
    service = _ExplodingService(settings)
    service.models.model = object()
    service.models.ready.set()
    response = _client(settings, service).post("/predict", files={"file": ("bus.jpg", bus_jpg.read_bytes())})
    assert response.status_code == 500
    assert response.json() == {
        "error": {"code": 500, "status": "Internal Server Error", "message": "Internal server error; the request was not completed"}
    }
    assert b"secret" not in response.content and b"Traceback" not in response.content


def test_a_lease_that_fails_to_release_never_changes_the_answer(bus_jpg):
    import logging
    from types import SimpleNamespace

    from function.dialects import Reply
    from function.models.registry import Lease

    class FailingLease(Lease):
        def release(self):
            raise RuntimeError("cannot schedule new futures after shutdown")

    class AnswersThenFailsToRelease(Service):
        async def acquire(self, model_id):
            return FailingLease(self.models.model, None)

        async def predict(self, request, started, encode, lease=None):
            return Reply(200, {"images": [], "metadata": {"answered": True}})

    settings = load_settings({"MODEL": "unused.pt"})
    service = AnswersThenFailsToRelease(settings)
    service.models.model = SimpleNamespace(task="detect")
    service.models.ready.set()
    errors = []
    handler = logging.Handler(logging.ERROR)
    handler.emit = lambda record: errors.append((record.getMessage(), record.exc_info is not None))
    logging.getLogger("yolo").addHandler(handler)
    try:
        response = _client(settings, service).post("/predict", files={"file": ("bus.jpg", bus_jpg.read_bytes())})
    finally:
        logging.getLogger("yolo").removeHandler(handler)
    assert response.status_code == 200 and response.json()["metadata"] == {"answered": True}
    assert errors == [("releasing a request's model lease failed; its answer stands", True)], "logged with its stack"


def test_cors_is_off_by_default_and_answers_preflights_for_allowed_origins():
    closed = _client(load_settings({"MODEL": "m.pt"}))
    assert "Access-Control-Allow-Origin" not in closed.options("/predict", headers={"Origin": "https://app.example"}).headers
    assert "Access-Control-Allow-Origin" not in closed.get("/healthz", headers={"Origin": "https://app.example"}).headers

    settings = load_settings({"MODEL": "m.pt", "CORS_ORIGINS": "https://app.example, https://admin.example/"})
    client = _client(settings)
    preflight = client.options("/predict", headers={
        "Origin": "https://admin.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization"})
    assert preflight.status_code == 204 and preflight.headers["Allow"] == "POST, OPTIONS"
    assert preflight.headers["Access-Control-Allow-Origin"] == "https://admin.example"
    assert "Authorization" in preflight.headers["Access-Control-Allow-Headers"]
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    assert client.get("/healthz", headers={"Origin": "https://app.example"}).headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert "Access-Control-Allow-Origin" not in client.get("/healthz", headers={"Origin": "https://evil.example"}).headers


def test_the_page_and_its_assets_are_served_by_the_function():
    client = _client(load_settings({"MODEL": "m.pt"}))
    page = client.get("/")
    assert page.status_code == 200 and b"predict.js" in page.content
    assert client.get("/static/predict.js").status_code == 200
    assert client.get("/static/examples/bus.jpg").headers["Content-Type"] == "image/jpeg"
    missing = client.get("/static/nothing.js")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == 404
    for sneaky in ("/static/../main.py", "/static/%2e%2e/main.py", "/static/..%2fmain.py", "/static//etc/passwd"):
        response = client.get(sneaky)
        assert response.status_code == 404 and b"import" not in response.content and b"root:" not in response.content


def test_head_is_answered_as_get_only_where_get_does_not_run_the_model():
    client = _client(load_settings({"MODEL": "m.pt"}))
    assert client.head("/healthz").status_code == 200
    assert client.head("/my-project/3").status_code == 405  # Roboflow's GET runs inference: HEAD must not
