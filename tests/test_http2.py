"""HTTP/2 end to end: the real server answers cleartext HTTP/2 with prior knowledge (h2c, what Cloud Run speaks to a
port named `h2c`) and HTTP/1.1 on the same port. Over h2c a request has no 32 MiB cap, errors keep their JSON shape,
slow or silent connections are closed, and SIGTERM sends GOAWAY while the streams in progress finish."""

from __future__ import annotations

import json
import socket
import subprocess
import time

import numpy as np
import pytest
import requests
import zttp
from conftest import metric, wait_until

from function.http.h1 import HEADER_TIMEOUT_S, LINGER_BYTES, LINGER_S
from function.http.h2 import H2_MAX_STREAMS

pytestmark = pytest.mark.integration

CLOUD_RUN_HTTP1_CAP = 32 * 2**20
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


@pytest.fixture(scope="module")
def server(detect_server):
    """The session's default endpoint (conftest.detect_server); the SIGTERM test below starts its own."""
    return detect_server


def write_video(path, source, frames: int, pad_bytes: int = 0, size=(288, 384)):
    """An MP4 of the source image sliding sideways; `pad_bytes` more in a top-level `free` box, which MP4 allows
    anywhere and every reader skips: a big upload that decodes as fast as a small one."""
    import cv2

    image = cv2.resize(cv2.imread(str(source)), size)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, size)
    assert writer.isOpened()
    for i in range(frames):
        writer.write(np.roll(image, i * 9, axis=1))
    writer.release()
    if pad_bytes:
        with open(path, "ab") as f:
            f.write((pad_bytes + 8).to_bytes(4, "big") + b"free")
            f.write(bytes(pad_bytes))
    return path


def curl(*args: str, timeout: float = 120) -> tuple[dict, bytes]:
    """curl's own account of the transfer (`-w %{json}`: http_version, response_code, size_upload…) and the body."""
    done = subprocess.run(["curl", "-sS", "--max-time", str(timeout), "-o", "-", "-w", "\n%{json}", *args],
                          capture_output=True, timeout=timeout + 10)
    body, _, info = done.stdout.rpartition(b"\n")
    return {**json.loads(info), "exit": done.returncode, "stderr": done.stderr.decode()}, body


def assert_json_error(body: bytes, status: int) -> dict:
    error = json.loads(body)["error"]
    assert set(error) == {"code", "status", "message"} and error["code"] == status
    assert "Traceback" not in error["message"]
    return error


def test_a_video_over_32_mib_is_answered_over_h2c_as_over_http1(server, bus_jpg, tmp_path):
    video = write_video(tmp_path / "walk.mp4", bus_jpg, 9, pad_bytes=CLOUD_RUN_HTTP1_CAP + 2**20)
    fields = {"vid_stride": "3", "imgsz": "320"}
    started = time.monotonic()
    info, body = curl("--http2-prior-knowledge", "-F", f"file=@{video}", *[f"-F{k}={v}" for k, v in fields.items()],
                      server.url + "/predict")
    seconds = time.monotonic() - started
    assert info["exit"] == 0, info["stderr"]
    assert info["http_version"] == "2" and info["response_code"] == 200, body[:300]
    assert info["size_upload"] > CLOUD_RUN_HTTP1_CAP
    over_h2 = json.loads(body)

    with video.open("rb") as f:
        over_h1 = requests.post(server.url + "/predict", files={"file": f}, data=fields, timeout=120)
    assert over_h1.status_code == 200, over_h1.text
    frames = [(image["frame"], image["results"]) for image in over_h2["images"]]
    assert frames == [(image["frame"], image["results"]) for image in over_h1.json()["images"]]
    assert [frame for frame, _ in frames] == [2, 5, 8] and all(results for _, results in frames)

    server.sync_log()
    logged = [e["httpRequest"] for e in server.log_entries() if "httpRequest" in e]
    assert any(r["protocol"] == "HTTP/2" and int(r["requestSize"]) > CLOUD_RUN_HTTP1_CAP for r in logged)
    print(f"h2c upload of {info['size_upload'] / 2**20:.1f} MiB answered in {seconds:.2f} s")


def test_the_same_port_answers_http1_and_h2c(server):
    for flags, version in ((["--http2-prior-knowledge"], "2"), (["--http1.1"], "1.1"),
                           (["--http2"], "1.1")):  # an Upgrade: h2c offer is answered in HTTP/1.1
        info, body = curl(*flags, server.url + "/readyz", timeout=10)
        assert (info["http_version"], info["response_code"]) == (version, 200), (flags, info["stderr"])
        assert json.loads(body)["status"] == "ready"
    assert requests.get(server.url + "/healthz", timeout=10).status_code == 200


@pytest.mark.parametrize("args, status", [
    (["-X", "GET", "/nope"], 404),
    (["-X", "GET", "/predict"], 405),
    (["-X", "POST", "/predict"], 400),  # no body at all: HEADERS with END_STREAM
    (["-F", "file=@{text}", "/predict"], 415),
    (["-F", "conf=7", "-F", "file=@{bus}", "/predict"], 400),
    (["-F", "source=<{huge}", "/predict"], 413),  # refused mid-body: the client stops on the answer
])
def test_errors_over_h2c_have_our_json_shape_and_status(server, bus_jpg, tmp_path, args, status):
    text, huge = tmp_path / "notes.txt", tmp_path / "huge.txt"
    text.write_text("not an image")
    if status == 413:
        huge.write_bytes(b"A" * (20 * 2**20))  # a base64 `source` field over MAX_UPLOAD_MB × 4/3
    args = [a.format(text=text, bus=bus_jpg, huge=huge) for a in args]
    info, body = curl("--http2-prior-knowledge", *args[:-1], server.url + args[-1], timeout=30)
    assert info["exit"] == 0, info["stderr"]
    assert (info["http_version"], info["response_code"]) == ("2", status)
    assert_json_error(body, status)


class H2Client:
    """A raw HTTP/2 client on a socket (zttp, the server's own HTTP/2 library, in its client role)."""

    def __init__(self, server):
        self.sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
        self.conn = zttp.Connection(zttp.CLIENT, zttp.HTTP2)
        self.conn.initiate_connection()
        self.flush()

    def flush(self) -> None:
        if data := self.conn.data_to_send():
            self.sock.sendall(data)

    def request(self, method: str, path: str, headers=(), body: bytes | None = None):
        stream = self.conn.send_request(method.encode(), path.encode(), b"2",
                                        [(b"host", b"127.0.0.1"), *headers])
        if body is not None:
            stream.send_data(body)
        stream.end_message()
        self.flush()
        return stream.stream_id

    def poll(self, timeout: float) -> list:
        """Whatever events arrive within `timeout` (none is fine)."""
        try:
            return self.read(lambda events: bool(events), timeout)
        except AssertionError:
            return []

    def read(self, until, timeout: float) -> list:
        """Events until `until(events)` is true or the server closes the connection (then CONNECTION_CLOSED is last)."""
        events, deadline = [], time.monotonic() + timeout
        while not until(events):
            self.sock.settimeout(max(deadline - time.monotonic(), 0.01))
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                raise AssertionError(f"nothing more within {timeout} s; so far: {events}") from None
            except ConnectionResetError:
                data = b""
            self.conn.receive_data(data)
            while (event := self.conn.next_event()) is not zttp.NEED_DATA:
                events.append(event)
                if event is zttp.CONNECTION_CLOSED:
                    break
            self.flush()
            if not data:
                events.append(zttp.CONNECTION_CLOSED)
                break
        return events

    def response(self, stream_id: int, events: list) -> tuple[int, bytes]:
        heads = [e for e in events if isinstance(e, zttp.Response) and e.stream_id == stream_id]
        body = b"".join(e.data for e in events if isinstance(e, zttp.Data) and e.stream_id == stream_id)
        return heads[0].status_code, body


def _ended(stream_id):
    return lambda events: any(isinstance(e, zttp.EndOfMessage) and e.stream_id == stream_id for e in events)


def _closed(events) -> bool:
    return bool(events) and events[-1] is zttp.CONNECTION_CLOSED


def test_slow_or_silent_h2c_connections_are_closed_and_idle_ones_kept(server):
    started = time.monotonic()
    half_preface = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    half_preface.sendall(PREFACE[:16])
    no_request = H2Client(server)  # preface and SETTINGS, then nothing
    dripping = H2Client(server)  # one request, then a HEADERS frame that never ends
    answered = H2Client(server)  # one request, then idle
    for client in (dripping, answered):
        stream = client.request("GET", "/healthz")
        assert client.response(stream, client.read(_ended(stream), 10))[0] == 200
    # A HEADERS frame of 40 bytes for stream 3, of which 10 are sent.
    dripping.sock.sendall((40).to_bytes(3, "big") + bytes([0x1, 0x0]) + (3).to_bytes(4, "big") + b"\x00" * 10)

    assert half_preface.recv(100) == b""
    closed_after = [time.monotonic() - started]
    for client in (no_request, dripping):
        events = client.read(_closed, HEADER_TIMEOUT_S + 5)
        assert any(isinstance(e, zttp.GoAway) and e.error_code == 0 for e in events), events
        closed_after.append(time.monotonic() - started)
    # Each by the header timeout: not at once, not much later.
    assert all(HEADER_TIMEOUT_S - 1 < seconds < HEADER_TIMEOUT_S + 5 for seconds in closed_after), closed_after
    time.sleep(max(started + HEADER_TIMEOUT_S + 1 - time.monotonic(), 0))
    stream = answered.request("GET", "/healthz")  # still open: idle connections last timeout_keep_alive
    assert answered.response(stream, answered.read(_ended(stream), 10))[0] == 200


def test_h2c_settings_allow_fast_uploads_and_many_streams(server):
    client = H2Client(server)
    stream = client.request("GET", "/healthz")
    events = client.read(_ended(stream), 10)
    settings = {}
    for event in events:
        if isinstance(event, zttp.Settings):
            settings.update(dict(event.params))
    assert settings[zttp.H2Settings.MAX_CONCURRENT_STREAMS] == H2_MAX_STREAMS  # MAX_CONNECTIONS is over it
    assert settings[zttp.H2Settings.INITIAL_WINDOW_SIZE] > 65_535


def test_an_early_answer_is_kept_and_the_rest_of_the_body_refused(server):
    client = H2Client(server)
    declared = 1024 * 2**20  # over the body limit: refused from its content-length, before a byte is read
    stream_id = client.conn.send_request(b"POST", b"/predict", b"2", [
        (b"host", b"127.0.0.1"), (b"content-type", b"application/octet-stream"),
        (b"content-length", str(declared).encode())]).stream_id
    client.flush()
    events = client.read(_ended(stream_id), 10)
    status, body = client.response(stream_id, events)
    assert status == 413
    assert_json_error(body, 413)
    # A client that keeps sending is told to stop (RST_STREAM NO_ERROR) once it passes LINGER_BYTES or LINGER_S.
    stream, sent, started = client.conn.stream(stream_id), 0, time.monotonic()
    reset = []
    while not reset and time.monotonic() - started < LINGER_S + 5:
        if (stream.pending_bytes or 0) < 2**20 and sent < 2 * LINGER_BYTES:
            stream.send_data(bytes(256 * 1024))
            sent += 256 * 1024
            client.flush()
        events = client.poll(0.05)
        reset = [e for e in events if isinstance(e, zttp.RstStream) and e.stream_id == stream_id]
    assert reset and reset[0].error_code == 0  # NO_ERROR
    assert time.monotonic() - started < LINGER_S + 2


FRAMES = 30  # a second or more of model time after the first frames: SIGTERM lands while the stream is in progress


def test_sigterm_sends_goaway_and_the_stream_in_progress_finishes(start_server, weights, bus_jpg, tmp_path):
    server = start_server({"MODEL": str(weights["detect"])})
    video = write_video(tmp_path / "long.mp4", bus_jpg, FRAMES)
    prepared = requests.Request("POST", server.url + "/predict", files={"file": video.read_bytes()},
                                data={"imgsz": "640"}).prepare()
    frames_before = metric(server.url, "yolo_video_frames_total")
    client = H2Client(server)
    stream = client.request("POST", "/predict", [(b"content-type", prepared.headers["Content-Type"].encode())],
                            prepared.body)
    early = []

    def running() -> bool:  # the video's first frames have been through the model; the rest are still to come
        early.extend(client.poll(0.05))  # (the connection's flow control keeps moving meanwhile)
        return metric(server.url, "yolo_video_frames_total") > frames_before

    wait_until(running, 60, "the video's first frames to reach the model")
    server.terminate()
    events = early + client.read(_closed, 30)
    goaway = [i for i, e in enumerate(events) if isinstance(e, zttp.GoAway)]
    ended = [i for i, e in enumerate(events) if isinstance(e, zttp.EndOfMessage) and e.stream_id == stream]
    assert goaway and ended and goaway[0] < ended[0], events  # GOAWAY at once, the answer after it
    assert events[goaway[0]].last_stream_id == stream and events[goaway[0]].error_code == 0
    status, body = client.response(stream, events)
    assert status == 200 and len(json.loads(body)["images"]) == FRAMES
    assert server.wait_exit(30) == 0
