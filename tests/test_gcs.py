"""Cold start from Cloud Storage, against a real GCS emulator (fake-gcs-server) the server reaches over loopback."""

from __future__ import annotations

import json

import pytest
import requests
from conftest import local_summary

pytestmark = pytest.mark.integration

BUCKET = "team-weights"


@pytest.fixture(scope="module")
def bucket(gcs):
    """This module's bucket on the session's emulator (the servers started here reach it: STORAGE_EMULATOR_HOST)."""
    return gcs.bucket(BUCKET)


def messages(server) -> list[str]:
    return [entry.get("message", "") for entry in server.log_entries()]


def critical(server) -> list[dict]:
    return [e for e in server.log_entries() if e.get("severity") == "CRITICAL"]


def test_cold_start_downloads_in_parallel_verifies_and_reuses_the_cache(bucket, start_server, weights, bus_jpg, tmp_path):
    bucket.blob("fall/v3/best.pt").upload_from_filename(str(weights["detect"]))
    env = {"MODEL": f"gs://{BUCKET}/fall/v3/best.pt", "MODEL_CACHE_DIR": str(tmp_path), "GCS_CHUNK_MB": "4"}

    first = start_server(env)
    cached = tmp_path / BUCKET / "fall/v3/best.pt"
    assert cached.read_bytes() == weights["detect"].read_bytes()
    assert not list(cached.parent.glob("*.part")), "no temporary file is left behind"
    ready = first.wait_for_log("ready:")  # logged just after /readyz turns 200; every earlier line is written too
    log = messages(first)
    assert any("downloading gs://team-weights/fall/v3/best.pt" in m and "parallel chunks" in m for m in log)
    assert any(m.startswith("downloaded gs://") and "crc32c verified" in m for m in log)
    assert ready["model"] == "best.pt" and ready["task"] == "detect" and ready["device"] == "cpu"
    assert set(ready["startup_s"]) == {"weights", "load", "warmup", "total"}
    response = requests.post(first.url + "/predict", files={"file": bus_jpg.open("rb")}, timeout=60)
    assert response.json()["images"][0]["results"] == local_summary(weights["detect"], str(bus_jpg))
    assert response.json()["metadata"]["model"] == "best.pt"
    assert first.stop() == 0

    second = start_server(env)
    second.wait_for_log("ready:")
    log = messages(second)
    assert any(m.startswith("using cached gs://team-weights/fall/v3/best.pt") for m in log)
    assert not any(m.startswith("downloading") for m in log)
    assert second.stop() == 0


def test_stale_cache_is_replaced_by_one_stream_download(bucket, start_server, weights, tmp_path):
    bucket.blob("pose/best.pt").upload_from_filename(str(weights["pose"]))
    cached = tmp_path / BUCKET / "pose/best.pt"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"\0" * weights["pose"].stat().st_size)  # same size, wrong bytes
    server = start_server({"MODEL": f"gs://{BUCKET}/pose/best.pt", "MODEL_CACHE_DIR": str(tmp_path)})
    server.wait_for_log("ready:")
    log = messages(server)
    assert any("downloading gs://team-weights/pose/best.pt" in m and "one stream" in m for m in log)
    assert cached.read_bytes() == weights["pose"].read_bytes()
    assert requests.get(server.url + "/readyz", timeout=5).json()["task"] == "pose"
    assert server.stop() == 0


def test_checksum_mismatch_is_refused_and_the_process_exits(gcs, bucket, start_server, weights, tmp_path):
    bucket.blob("bad/best.pt").upload_from_filename(str(weights["detect"]))
    stored = gcs.root / BUCKET / "bad" / "best.pt"
    with open(stored, "r+b") as f:  # bit rot in storage: the bytes change, the object's recorded crc32c does not
        f.seek(1000)
        f.write(b"\x00\x01\x02\x03")
    server = start_server({"MODEL": f"gs://{BUCKET}/bad/best.pt", "MODEL_CACHE_DIR": str(tmp_path)}, wait=False)
    assert server.wait_exit(120) != 0
    (line,) = critical(server)
    assert "checksum mismatch" in line["message"] and "gs://team-weights/bad/best.pt" in line["message"]
    assert not (tmp_path / BUCKET / "bad" / "best.pt").exists()
    assert not list((tmp_path / BUCKET / "bad").glob("*.part"))


@pytest.mark.parametrize("uri", [f"gs://{BUCKET}/missing/best.pt", "gs://no-such-bucket/best.pt"])
def test_missing_object_or_bucket_exits_with_a_clear_message(bucket, start_server, tmp_path, uri):
    server = start_server({"MODEL": uri, "MODEL_CACHE_DIR": str(tmp_path)}, wait=False)
    assert server.wait_exit(120) == 4
    (line,) = critical(server)
    assert line["message"].startswith(f"cannot serve: {uri} not found")
    assert "Traceback" not in server.log_text()
    assert sum("Reason: App failed to load" in json.dumps(e) for e in server.log_entries()) <= 1, "no restart loop"
