"""Find the weights MODEL names: download from Cloud Storage (verified, cached, atomic) or an https URL, or pass through."""

from __future__ import annotations

import base64
import os
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

import google_crc32c

from ..errors import WeightsError
from ..logs import log

_PROGRESS_EVERY_S = 2.0


class ObjectNotFound(WeightsError):
    """The object (or its bucket) does not exist."""


def resolve_weights(model: str, cache_dir: Path, chunk_bytes: int = 32 * 2**20, workers: int = 8) -> str:
    """Return what `YOLO()` should load for MODEL: a local path, or an Ultralytics asset name."""
    if model.startswith("gs://"):
        bucket, _, name = model[len("gs://"):].partition("/")
        if not bucket or not name or name.endswith("/"):
            raise WeightsError(f"MODEL={model} is not gs://BUCKET/OBJECT")
        return str(download_gcs_object(bucket, name, cache_dir, chunk_bytes, workers))
    if model.startswith(("https://", "http://")):
        return str(download_url(model, cache_dir))
    path = Path(model).expanduser()
    if path.exists():
        return str(path)
    if "/" in model or os.sep in model:
        raise WeightsError(f"MODEL={model}: no such file or directory")
    return model  # an official name such as yolo26n.pt: Ultralytics fetches it where there is internet


def file_crc32c(path: Path) -> str:
    """The base64 big-endian CRC32C that Cloud Storage reports for an object."""
    checksum = google_crc32c.Checksum()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(8 * 2**20), b""):
            checksum.update(block)
    return base64.b64encode(checksum.digest()).decode()


class _ProgressLogger:
    """Logs how much of a download is on disk every few seconds; counts allocated blocks, so parallel chunks show."""

    def __init__(self, path: Path, total: int, label: str):
        self.path, self.total, self.label = path, total, label
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="download-progress", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(_PROGRESS_EVERY_S):
            try:
                done = min(self.path.stat().st_blocks * 512, self.total)
            except OSError:
                continue
            log.info(
                f"downloading {self.label}: {done / 2**20:.1f}/{self.total / 2**20:.1f} MiB ({100 * done / max(self.total, 1):.0f}%)"
            )

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def _gcs_error(uri: str, exc: Exception) -> WeightsError:
    from google.api_core import exceptions as gexc
    from google.cloud.storage.exceptions import DataCorruption

    if isinstance(exc, DataCorruption):
        return WeightsError(f"{uri} checksum mismatch: the downloaded bytes do not match the object's crc32c ({exc})")

    if isinstance(exc, gexc.NotFound):
        detail = getattr(exc, "message", "") or "not found"
        return ObjectNotFound(f"{uri} not found: {detail}")
    if isinstance(exc, gexc.Forbidden):
        return WeightsError(f"{uri}: permission denied; the service account needs roles/storage.objectViewer on the bucket")
    return WeightsError(f"{uri} could not be downloaded: {type(exc).__name__}: {exc}")


def download_gcs_object(bucket_name: str, name: str, cache_dir: Path, chunk_bytes: int, workers: int) -> Path:
    """Download gs://bucket/name into cache_dir, or reuse the cached copy when its CRC32C still matches the object."""
    from google.cloud import storage
    from google.cloud.storage import transfer_manager

    uri = f"gs://{bucket_name}/{name}"
    try:
        blob = storage.Client().bucket(bucket_name).blob(name)
        blob.reload()  # metadata: size, crc32c, generation (retried by the client on transient errors)
    except Exception as exc:
        raise _gcs_error(uri, exc) from None
    if not blob.crc32c:
        raise WeightsError(f"{uri} has no CRC32C checksum to verify against")
    target = cache_dir / bucket_name / name
    if target.is_file() and target.stat().st_size == blob.size and file_crc32c(target) == blob.crc32c:
        log.info(f"using cached {uri} ({blob.size / 2**20:.1f} MiB, crc32c {blob.crc32c} matches)", extra={"fields": {"cache": "hit"}})
        return target
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WeightsError(f"MODEL_CACHE_DIR={cache_dir} is not writable: {exc.strerror or exc}") from None
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    os.close(fd)
    tmp = Path(tmp_name)
    started = time.monotonic()
    parallel = blob.size > 2 * chunk_bytes
    log.info(f"downloading {uri} ({blob.size / 2**20:.1f} MiB, {'parallel chunks' if parallel else 'one stream'})")
    try:
        # google-cloud-storage verifies the CRC32C of what arrived (whole stream, or the chunks combined)
        # against the object's and raises DataCorruption on a mismatch; it also retries transient errors.
        with _ProgressLogger(tmp, blob.size, uri):
            if parallel:
                transfer_manager.download_chunks_concurrently(
                    blob, str(tmp), chunk_size=chunk_bytes, max_workers=workers,
                    worker_type=transfer_manager.THREAD, crc32c_checksum=True,
                )
            else:
                blob.download_to_filename(str(tmp), checksum="crc32c")
        os.replace(tmp, target)
    except Exception as exc:
        raise _gcs_error(uri, exc) from None
    finally:
        tmp.unlink(missing_ok=True)
    seconds = time.monotonic() - started
    log.info(
        f"downloaded {uri} in {seconds:.1f} s ({blob.size / 2**20 / max(seconds, 1e-6):.1f} MiB/s), crc32c verified",
        extra={"fields": {"cache": "miss"}},
    )
    return target


def upload_gcs_object(path: Path, bucket_name: str, name: str, replace: bool = False) -> bool:
    """Upload a file the service built (an exported engine) to gs://bucket/name; google-cloud-storage sends its
    CRC32C for the server to check, and retries. Unless `replace`, an object already there is kept (another instance
    got there first): returns False then."""
    from google.api_core import exceptions as gexc
    from google.cloud import storage

    uri = f"gs://{bucket_name}/{name}"
    blob = storage.Client().bucket(bucket_name).blob(name)
    started = time.monotonic()
    try:
        blob.upload_from_filename(str(path), checksum="crc32c", if_generation_match=None if replace else 0)
    except gexc.PreconditionFailed:
        log.info(f"{uri} was uploaded by another instance meanwhile; keeping that one")
        return False
    except gexc.Forbidden:
        raise WeightsError(f"{uri}: permission denied; the service account needs roles/storage.objectCreator "
                           "on the bucket to share built engines") from None
    log.info(f"uploaded {uri} ({path.stat().st_size / 2**20:.1f} MiB) in {time.monotonic() - started:.1f} s")
    return True


def download_url(url: str, cache_dir: Path) -> Path:
    """Download weights from an operator-given URL (trusted configuration, not user input) atomically."""
    import urllib3

    name = Path(unquote(urlsplit(url).path)).name or "weights.pt"
    target = cache_dir / "url" / name
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WeightsError(f"MODEL_CACHE_DIR={cache_dir} is not writable: {exc.strerror or exc}") from None
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{name}.", suffix=".part")
    tmp = Path(tmp_name)
    retries = urllib3.Retry(total=5, backoff_factor=1, status_forcelist=(429, 500, 502, 503, 504))
    try:
        with os.fdopen(fd, "wb") as f:
            response = urllib3.request("GET", url, preload_content=False, retries=retries, timeout=60)
            if response.status != 200:
                raise WeightsError(f"MODEL={url} answered HTTP {response.status}")
            total = int(response.headers.get("Content-Length") or 0)
            with _ProgressLogger(tmp, total, url):
                for chunk in response.stream(2**20):
                    f.write(chunk)
        os.replace(tmp, target)
    except WeightsError:
        raise
    except Exception as exc:
        raise WeightsError(f"MODEL={url} could not be downloaded: {type(exc).__name__}: {exc}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return target
