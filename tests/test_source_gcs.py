"""`source=gs://bucket/object`: read with the service's own identity from the buckets ALLOWED_SOURCE_BUCKETS names,
against a real GCS emulator (fake-gcs-server) the server reaches over loopback; refused, missing and oversized
objects get their JSON errors."""

from __future__ import annotations

import pytest
import requests

from function.core.sources import GcsReader
from function.errors import ConfigError, SourceRefused
from function.settings import load_settings

BUCKET = "team-images"
OTHER = "someone-elses-images"
MAX_UPLOAD_MB = 1


@pytest.fixture(scope="module")
def buckets(gcs, bus_jpg):
    """This module's two buckets on the session's emulator (the server below reaches it: STORAGE_EMULATOR_HOST)."""
    for name in (BUCKET, OTHER):
        gcs.bucket(name).blob("street/bus.jpg").upload_from_filename(str(bus_jpg))
    over_limit = bus_jpg.read_bytes().ljust(MAX_UPLOAD_MB * 2**20 + 1, b"\0")
    gcs.bucket(BUCKET).blob("huge.jpg").upload_from_string(over_limit)


@pytest.fixture(scope="module")
def server(buckets, start_server, weights):
    return start_server({"MODEL": str(weights["detect"]), "ALLOWED_SOURCE_BUCKETS": f"{BUCKET}, gs://spare-bucket",
                         "MAX_UPLOAD_MB": str(MAX_UPLOAD_MB)})


def predict(server, **kwargs):
    return requests.post(server.url + "/predict", timeout=60, **kwargs)


def assert_error(response, status: int, *words: str) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == status and all(word in error["message"] for word in words), error
    assert "Traceback" not in response.text


@pytest.mark.integration
def test_an_object_in_an_allowed_bucket_answers_like_the_same_image_uploaded(server, bus_jpg):
    from_gcs = predict(server, data={"source": f"gs://{BUCKET}/street/bus.jpg", "imgsz": "320"})
    uploaded = predict(server, files={"file": bus_jpg.open("rb")}, data={"imgsz": "320"})
    assert from_gcs.status_code == 200, from_gcs.text
    assert [(i["shape"], i["results"]) for i in from_gcs.json()["images"]] == \
        [(i["shape"], i["results"]) for i in uploaded.json()["images"]]
    assert from_gcs.json()["images"][0]["results"]


@pytest.mark.integration
def test_a_bucket_not_allowed_is_refused(server):
    assert_error(predict(server, data={"source": f"gs://{OTHER}/street/bus.jpg"}), 400, OTHER, "not allowed")


@pytest.mark.integration
@pytest.mark.parametrize("uri", [f"gs://{BUCKET}/street/missing.jpg", "gs://spare-bucket/bus.jpg"])
def test_a_missing_object_or_bucket_is_a_400_that_names_it(server, uri):
    assert_error(predict(server, data={"source": uri}), 400, uri, "not found")


@pytest.mark.integration
def test_an_object_over_the_upload_limit_is_refused(server):
    assert_error(predict(server, data={"source": f"gs://{BUCKET}/huge.jpg"}), 413, f"gs://{BUCKET}/huge.jpg")


def test_gs_sources_are_off_unless_buckets_are_allowed():
    with pytest.raises(SourceRefused, match="gs:// sources are off"):
        GcsReader((), 2**20, 10).read(f"gs://{BUCKET}/street/bus.jpg")
    with pytest.raises(SourceRefused, match="gs://bucket/object"):
        GcsReader((BUCKET,), 2**20, 10).read(f"gs://{BUCKET}/")


def test_allowed_source_buckets_setting():
    assert load_settings({"MODEL": "m.pt"}).allowed_source_buckets == ()
    settings = load_settings({"MODEL": "m.pt", "ALLOWED_SOURCE_BUCKETS": "a-bucket, gs://b.example.com/,a-bucket"})
    assert settings.allowed_source_buckets == ("a-bucket", "b.example.com")
    with pytest.raises(ConfigError, match="ALLOWED_SOURCE_BUCKETS"):
        load_settings({"MODEL": "m.pt", "ALLOWED_SOURCE_BUCKETS": "Not A Bucket"})
