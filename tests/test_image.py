"""The built image (`make image`, yolo-cloud-run:cpu), run the way Cloud Run runs it: a non-root uid, a read-only
filesystem with /tmp writable, $PORT, MODEL=gs://... read from a real GCS emulator (fake-gcs-server) on loopback.

Its answers are compared with `python -m function` from the venv (what `make serve` runs) on the same weights.
IMAGE= names another tag; the container engine is Docker where one answers, else podman."""

from __future__ import annotations

import concurrent.futures
import json
import time

import pytest
import requests
from conftest import held, local_summary, wait_until
from containers import API_KEY, AUTH, IMAGE, Container, engine

pytestmark = pytest.mark.integration

BUCKET = "image-weights"


@pytest.fixture(scope="module")
def image() -> str:
    if engine("image", "inspect", IMAGE, check=False).returncode != 0:
        pytest.fail(f"{IMAGE} is not built: run `make image` (make test does)")
    return IMAGE


@pytest.fixture(scope="module")
def weights_in_gcs(gcs, weights):
    gcs.bucket(BUCKET).blob("image/best.pt").upload_from_filename(str(weights["detect"]))
    return f"gs://{BUCKET}/image/best.pt"


@pytest.fixture(scope="module")
def container(image, weights_in_gcs, tmp_path_factory):
    started = Container({"MODEL": weights_in_gcs}, tmp_path_factory.mktemp("keys"))
    started.ready_s = started.wait_ready()
    print(f"\nimage {image}: ready {started.ready_s:.1f} s after `run`")
    yield started
    started.remove()


@pytest.fixture(scope="module")
def venv_server(keyed_server):
    """What `make serve` runs, on the same weights and key, for byte-for-byte comparisons (the session's keyed
    server: its MODEL_ID and URL settings change nothing compared here)."""
    return keyed_server


def test_without_a_container_engine_the_image_tests_fail_with_the_install_hint(monkeypatch):
    import shutil

    import _pytest.outcomes
    import containers

    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setattr(containers, "ENGINE", containers._engine())
    assert containers.ENGINE is None
    with pytest.raises(_pytest.outcomes.Failed, match="install Docker .* or podman"):
        containers.engine("image", "inspect", IMAGE)


def test_image_runs_as_cloud_run_expects(image):
    config = json.loads(engine("image", "inspect", image).stdout)[0]["Config"]
    env = dict(item.split("=", 1) for item in config["Env"])
    assert config["User"] == "10001:10001"
    assert config["Cmd"] == ["python", "-m", "function"]
    assert env["PORT"] == "8080" and env["YOLO_OFFLINE"] == "1" and env["YOLO_AUTOINSTALL"] == "false"
    assert env["MODEL_CACHE_DIR"].startswith("/tmp/") and env["YOLO_CONFIG_DIR"].startswith("/tmp/")
    assert "MODEL" not in env, "weights are not baked in by default"
    assert "ENGINE" not in env, "the engine is the device's default (OpenVINO on the CPU, PyTorch on a GPU)"


def test_serves_from_gcs_with_the_answers_of_make_serve(container, venv_server, weights, bus_jpg):
    for params in ({}, {"conf": "0.5", "imgsz": "320"}):
        ours = requests.post(container.url + "/predict", files={"file": bus_jpg.open("rb")}, data=params,
                             headers=AUTH, timeout=60)
        theirs = requests.post(venv_server.url + "/predict", files={"file": bus_jpg.open("rb")}, data=params,
                               headers=AUTH, timeout=60)
        assert ours.status_code == theirs.status_code == 200
        strip = lambda body: [{k: v for k, v in image.items() if k != "speed"} for image in body["images"]]  # noqa: E731
        assert strip(ours.json()) == strip(theirs.json())
        expected = local_summary(weights["detect"], str(bus_jpg), conf=float(params.get("conf", 0.25)),
                                 imgsz=int(params.get("imgsz", 640)))
        assert ours.json()["images"][0]["results"] == expected
        metadata = ours.json()["metadata"]
        assert metadata["model"] == "best.pt" and metadata["task"] == "detect"
    drawn = [requests.post(server.url + "/predict", files={"file": bus_jpg.open("rb")}, data={"format": "image"},
                           headers=AUTH, timeout=60) for server in (container, venv_server)]
    assert drawn[0].headers["content-type"] == "image/jpeg"
    assert drawn[0].content == drawn[1].content, "Ultralytics' plot with the shipped fonts, byte for byte"
    for path in ("/", "/openapi.json", "/static/predict.js"):
        page = [requests.get(server.url + path, headers=AUTH, timeout=30) for server in (container, venv_server)]
        assert page[0].status_code == 200 and page[0].content == page[1].content, path


def test_a_tracked_video_is_answered_as_make_serve_answers_it(container, venv_server, bus_jpg, tmp_path):
    """The image has Ultralytics' trackers and what they import (lap): nothing is installed at run time."""
    from test_tracking import pan_video

    video = tmp_path / "pan.webm"
    pan_video(video, bus_jpg, 12)
    answers = [requests.post(server.url + "/predict", files={"file": video.open("rb")},
                             data={"track": "true", "tracker": tracker, "imgsz": "320"}, headers=AUTH, timeout=120)
               for tracker in ("bytetrack", "botsort") for server in (container, venv_server)]
    assert [answer.status_code for answer in answers] == [200] * 4, answers[0].text
    strip = lambda body: ([{k: v for k, v in image.items() if k != "speed"} for image in body["images"]],  # noqa: E731
                          body["metadata"]["tracks"], body["metadata"]["counts"])
    assert strip(answers[0].json()) == strip(answers[1].json()) and strip(answers[2].json()) == strip(answers[3].json())
    assert answers[0].json()["metadata"]["tracks"]


def test_a_live_stream_is_answered_as_make_serve_answers_it(container, venv_server, zidane_jpg):
    """GET /stream upgrades to a WebSocket in the image too (its protocol library is in the lock)."""
    from test_streams import lockstep, pan_frames

    frames = pan_frames(zidane_jpg, 6, window=(480, 320))
    answers = [lockstep(server.url.replace("http://", "ws://") + "/stream?track=true", frames, additional_headers=AUTH)
               for server in (container, venv_server)]
    strip = lambda stream: [{k: v for k, v in answer.items() if k != "speed"} for answer in stream]  # noqa: E731
    assert strip(answers[0]) == strip(answers[1])
    assert [a["frame"] for a in answers[0]] == list(range(6)) and any(a["results"] for a in answers[0])


def test_slices_a_large_image_as_make_serve_does(container, venv_server, bus_jpg):
    """Sliced inference (issue 26) in the built image: the tiles, the merge and the answer of `make serve`."""
    from sahi.slicing import get_slice_bboxes

    answers = [requests.post(server.url + "/predict", files={"file": bus_jpg.open("rb")},
                             data={"slice_size": "320", "slice_merge": "nmm"}, headers=AUTH, timeout=120)
               for server in (container, venv_server)]
    assert [answer.status_code for answer in answers] == [200, 200]
    ours, theirs = (answer.json() for answer in answers)
    tiles = len(get_slice_bboxes(1080, 810, 320, 320, False, 0.2, 0.2))
    assert ours["metadata"]["slices"] == theirs["metadata"]["slices"] == tiles
    rows = [body["images"][0]["results"] for body in (ours, theirs)]
    assert len(rows[0]) == len(rows[1]) > 0
    for mine, reference in zip(*rows):  # the image may serve OpenVINO by now: equal within its float rounding
        assert mine["class"] == reference["class"]
        assert mine["box"] == pytest.approx(reference["box"], abs=1e-3)


def test_clean_start_logs_no_error_and_writes_nothing_outside_tmp(container):
    ready = container.wait_for_log("ready:")  # logged just after /readyz turns 200; every earlier line is written too
    entries = container.log_entries()
    assert not [e for e in entries if e.get("severity") in ("WARNING", "ERROR", "CRITICAL") or "unparsed" in e]
    assert ready["device"] == "cpu"
    assert any(e.get("message", "").startswith("downloaded gs://") for e in entries)
    changed = set(engine("diff", container.name).stdout.split()[1::2])
    # Only the engine's own mount points (its /etc/hosts and resolv.conf, the secret's folder).
    assert changed <= {"/etc", "/secrets"}, "the image's filesystem is read-only on Cloud Run: all goes to /tmp"


def test_by_default_the_cpu_image_serves_openvino_exact_and_shares_it_through_gcs(image, gcs, weights_in_gcs,
                                                                                 weights, bus_jpg, tmp_path):
    """ENGINE unset (what users deploy): ready with PyTorch, then OpenVINO exported, checked and swapped in; its answers
    are the .pt's within float noise (1e-4 in confidence, 1e-3 px); the engine lands next to the weights in GCS."""
    from test_engines import assert_as_the_pt

    server = Container({"MODEL": weights_in_gcs, "ENGINE": None}, tmp_path)
    try:
        server.wait_ready()
        deadline, swapped = time.monotonic() + 240, None
        while swapped is None and time.monotonic() < deadline:
            swapped = next((e for e in server.log_entries() if e.get("message", "").startswith("serving with ")), None)
            assert server.running(), server.log_text()
            time.sleep(0.5)
        assert swapped is not None and swapped["engine"] == "openvino", server.log_text()
        assert swapped["artefact"].startswith(f"gs://{BUCKET}/image/best.pt.engines/openvino-fp32-")
        assert gcs.bucket(BUCKET).get_blob(swapped["artefact"].removeprefix(f"gs://{BUCKET}/")) is not None
        response = requests.post(server.url + "/predict", files={"file": bus_jpg.open("rb")}, headers=AUTH, timeout=60)
        assert response.status_code == 200, response.text
        assert_as_the_pt(response.json()["images"][0]["results"], local_summary(weights["detect"], str(bus_jpg)))
        entries = server.log_entries()
        assert not [e for e in entries if e.get("severity") in ("WARNING", "ERROR", "CRITICAL")], entries
    finally:
        server.remove()


@pytest.mark.parametrize("load", [
    {"requests": 8, "imgsz": "640"},  # all of them can finish inside the grace period
    {"requests": 24, "imgsz": "1280"},  # more queued work than the grace period holds: those that cannot finish, 503
], ids=["finishes", "overloaded"])
def test_sigterm_with_requests_in_flight_answers_every_request_and_exits_0(image, weights_in_gcs, bus_jpg, tmp_path,
                                                                          load):
    server = Container({"MODEL": weights_in_gcs}, tmp_path)
    try:
        server.wait_ready()
        body = bus_jpg.read_bytes()

        def predict(_):
            sent = time.monotonic()
            response = requests.post(server.url + "/predict", files={"file": ("bus.jpg", body)},
                                     data={"imgsz": load["imgsz"]}, headers=AUTH, timeout=30)
            return response.status_code, response.headers.get("retry-after"), response.json(), time.monotonic() - sent

        for _ in range(2):  # a warm server: it knows how long an image takes, and refuses what cannot fit at once
            predict(None)
        before = held(server.url)
        with concurrent.futures.ThreadPoolExecutor(load["requests"]) as pool:
            futures = [pool.submit(predict, i) for i in range(load["requests"])]
            # SIGTERM once the server holds every request (admitted, or already answered): none is still connecting.
            wait_until(lambda: held(server.url) - before >= load["requests"], 60,
                       f"the server to hold all {load['requests']} requests")
            engine("kill", "--signal", "TERM", server.name)
            signalled = time.monotonic()
            answers = [future.result() for future in futures]  # a cut connection would raise here
        code = server.wait_exit(timeout=30)
        elapsed = time.monotonic() - signalled
    finally:
        log = server.log_text()
        server.remove()
    assert code == 0 and elapsed < 10, (code, elapsed, log[-3000:])
    statuses = [status for status, _, _, _ in answers]
    assert set(statuses) <= {200, 503}, statuses
    for status, retry_after, payload, _ in answers:
        if status == 200:
            assert len(payload["images"]) == 1 and payload["images"][0]["results"]
        else:
            assert retry_after == "1" and payload["error"]["code"] == 503
    if load["requests"] == 24:
        assert 503 in statuses, "this much work cannot finish in the grace period: some must be told to retry"
    else:
        assert statuses == [200] * 8, "work that fits in the grace period is done, not refused"
    print(f"\nSIGTERM with {load['requests']} in flight (imgsz {load['imgsz']}): {statuses.count(200)} answered 200, "
          f"{statuses.count(503)} 503 (the last after {max(t for s, _, _, t in answers if s == 503) if 503 in statuses else 0:.1f} s), "
          f"exit {code} {elapsed:.1f} s after SIGTERM")


def test_with_no_network_at_all_it_starts_and_answers(image, weights, bus_jpg, tmp_path):
    """Nothing but MODEL is fetched: with no network (local weights), start-up and predict do not wait on one."""
    server = Container({"MODEL": "/weights/best.pt"}, tmp_path, network="none",
                       volumes=(f"{weights['detect']}:/weights/best.pt:ro", f"{bus_jpg}:/images/bus.jpg:ro"))
    probe = f"""
import json, time, urllib.request
url = "http://127.0.0.1:{server.port}"
for _ in range(600):
    try:
        urllib.request.urlopen(url + "/readyz", timeout=5)
        break
    except OSError:
        time.sleep(0.2)
body = (b'--b\\r\\nContent-Disposition: form-data; name="file"; filename="bus.jpg"\\r\\n\\r\\n'
        + open("/images/bus.jpg", "rb").read() + b"\\r\\n--b--\\r\\n")
request = urllib.request.Request(url + "/predict", data=body, headers={{
    "Content-Type": "multipart/form-data; boundary=b", "Authorization": "Bearer {API_KEY}"}})
print(json.dumps(json.load(urllib.request.urlopen(request, timeout=60))["images"][0]["results"]))
"""
    try:
        answer = engine("exec", server.name, "python", "-c", probe, timeout=180, check=False)
        assert answer.returncode == 0, answer.stderr + server.log_text()[-2000:]
        entries = server.log_entries()
    finally:
        server.remove()
    assert json.loads(answer.stdout) == local_summary(weights["detect"], str(bus_jpg))
    assert not [e for e in entries if e.get("severity") in ("WARNING", "ERROR", "CRITICAL")], entries


@pytest.mark.parametrize("case", ["missing", "not-weights"])
def test_a_model_that_cannot_serve_stops_the_container_with_one_clear_line(image, gcs, bus_jpg, case, tmp_path):
    if case == "not-weights":
        gcs.bucket(BUCKET).blob("photos/best.pt").upload_from_filename(str(bus_jpg))
    model = f"gs://{BUCKET}/{'nothing/here.pt' if case == 'missing' else 'photos/best.pt'}"
    server = Container({"MODEL": model}, tmp_path)
    try:
        code = server.wait_exit(timeout=120)
        entries = server.log_entries()
    finally:
        server.remove()
    assert code != 0
    critical = [e["message"] for e in entries if e.get("severity") == "CRITICAL"]
    assert len(critical) == 1, entries
    assert model.split("/", 3)[-1] in critical[0], critical[0]  # the object's path, in one line that says why
    assert ("not found" if case == "missing" else "not a loadable YOLO model") in critical[0], critical[0]
