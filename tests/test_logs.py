"""function/logs.py: one JSON object a line on stdout, written by a thread of the process's own. A log pipe nobody
reads (a stuck or slow log agent) stalls that thread, never the requests; nothing is lost while the queue has room,
and what it had no room for is counted in the log itself."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
import requests
from conftest import ROOT, free_port, json_lines, wait_until


def test_a_stuck_log_pipe_never_stalls_requests(weights, tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if k not in ("K_SERVICE", "API_KEYS", "API_KEYS_FILE", "ENGINE")}
    env.update({"MODEL": str(weights["detect"]), "PORT": str(port), "HOST": "127.0.0.1", "ENGINE": "pytorch",
                "YOLO_CONFIG_DIR": str(tmp_path)})
    # stdout is a pipe this test does not read until the end: once it holds 64 KiB, every write to it blocks.
    proc = subprocess.Popen([sys.executable, "-m", "function"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    lines: list[bytes] = []
    try:
        def ready() -> bool:
            assert proc.poll() is None, f"the server exited with {proc.returncode}"
            try:
                return requests.get(url + "/readyz", timeout=10).status_code == 200
            except (requests.ConnectionError, requests.Timeout):
                return False

        wait_until(ready, 180, "the server to be ready", every=0.2)
        agent = "a-long-user-agent-" + "x" * 8000  # each request's line is over 8 KB: 40 of them fill the pipe 5 times
        for i in range(40):
            started = time.monotonic()
            answer = requests.get(url + "/healthz", headers={"User-Agent": f"{agent}-{i}"}, timeout=5)
            assert answer.status_code == 200 and time.monotonic() - started < 2, f"/healthz {i} waited on the log"
        reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
        reader.start()  # the log agent catches up: every line comes out, in order

        def logged() -> list[int]:
            return [int(e["httpRequest"]["userAgent"].rsplit("-", 1)[1]) for e in json_lines(b"".join(lines).decode())
                    if e.get("httpRequest", {}).get("userAgent", "").startswith(agent)]

        wait_until(lambda: len(logged()) == 40, 60, "the 40 request lines")
        assert logged() == list(range(40))
        proc.terminate()
        assert proc.wait(30) == 0
    finally:  # a worker stuck on a full pipe never sees its master go: the whole process group goes
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_the_line_keeps_its_shape_through_the_queue(capsys):
    from function.logs import _QueuedJsonHandler, flush_logs

    logger = logging.getLogger("yolo.test-logs")
    logger.handlers[:], logger.propagate = [_QueuedJsonHandler()], False
    try:
        raise ZeroDivisionError("division by zero")
    except ZeroDivisionError:
        logger.exception("it failed", extra={"fields": {"model": "m"}, "httpRequest": {"status": 500}})
    flush_logs()
    (entry,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert entry["severity"] == "ERROR" and entry["message"] == "it failed" and entry["logger"] == "yolo.test-logs"
    assert entry["model"] == "m" and entry["httpRequest"] == {"status": 500}
    assert entry["stack_trace"].startswith("Traceback") and "ZeroDivisionError" in entry["stack_trace"]


def test_lines_past_the_queue_are_dropped_and_counted(monkeypatch):
    from function import logs

    inside, go, out = threading.Event(), threading.Event(), []

    class StuckStdout:
        def write(self, text):
            inside.set()
            go.wait(10)
            out.append(text)

        def flush(self):
            pass

    monkeypatch.setattr(logs, "MAX_QUEUED", 2)
    monkeypatch.setattr(sys, "stdout", StuckStdout())
    writer = logs._Writer()
    writer.put('{"n": 0}')
    assert inside.wait(10), "the writer is stuck writing line 0"
    for n in range(1, 10):
        writer.put(f'{{"n": {n}}}')  # 1 and 2 fit in the queue; 3 to 9 do not
    go.set()
    writer.flush()
    entries = [json.loads(text) for text in out]
    assert [e.get("n") for e in entries] == [0, None, 1, 2]
    assert entries[1]["severity"] == "WARNING"
    assert entries[1]["message"] == "7 log lines were dropped: stdout was not read as fast as they came"


@pytest.mark.parametrize("ending", ["exit", "os._exit"])
def test_every_line_is_written_before_the_process_ends(ending):
    """The interpreter's exit writes what is queued; os._exit (a worker that cannot serve, a batch task's SIGTERM)
    skips it, so those paths flush first."""
    code = f"""
import os
from function.logs import flush_logs, log, setup_logging
setup_logging()
for n in range(500):
    log.info(f"line {{n}}")
if {ending!r} == "os._exit":
    flush_logs()
    os._exit(3)
"""
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert [e["message"] for e in json_lines(done.stdout)] == [f"line {n}" for n in range(500)], done.stderr
    assert done.returncode == (3 if ending == "os._exit" else 0)
