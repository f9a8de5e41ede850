"""The output: every object is created only if absent, whole or not at all, so a task killed at any moment leaves no
partial file and two attempts at the same chunk cannot both write it.

Cloud Storage: `upload_from_string(..., if_generation_match=0)`; 412 (PreconditionFailed) means another attempt got
there first. A local folder: the bytes go to a temporary file in the same folder, then `os.link` gives it its name,
which fails if the name exists. Each object may carry a few string fields (`metadata`: a chunk's counts), so that one
listing tells how far a run is: GCS custom metadata, or a hidden side file written before the object itself.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from .reader import GcsPrefix


class GcsOutput(GcsPrefix):

    def _blob(self, name: str):
        return self.client().bucket(self.bucket_name).blob(self.prefix + name)

    def create(self, name: str, data: bytes, metadata: dict | None = None) -> bool:
        """Write `name` unless it exists; False when it does (another attempt wrote it)."""
        from google.api_core import exceptions as gexc

        blob = self._blob(name)
        if metadata:
            blob.metadata = {key: str(value) for key, value in metadata.items()}
        try:
            blob.upload_from_string(data, content_type="application/x-ndjson" if name.endswith(".jsonl")
                                    else "application/json", if_generation_match=0)
        except gexc.PreconditionFailed:
            return False
        return True

    def read(self, name: str) -> bytes | None:
        from google.api_core import exceptions as gexc

        try:
            return self._blob(name).download_as_bytes(checksum="crc32c")
        except gexc.NotFound:
            return None

    def list(self, folder: str) -> dict[str, dict]:
        """{name: metadata} of the objects under `folder` (e.g. 'results/')."""
        start = len(self.prefix)
        return {blob.name[start:]: dict(blob.metadata or {})
                for blob in self.client().list_blobs(self.bucket_name, prefix=self.prefix + folder)}


class LocalOutput:
    def __init__(self, path: str):
        self.root = Path(path).expanduser().resolve()
        self.uri = f"{self.root}/"

    def create(self, name: str, data: bytes, metadata: dict | None = None) -> bool:
        target = self.root / name
        if target.exists():
            return False
        target.parent.mkdir(parents=True, exist_ok=True)
        if metadata:  # first: whenever the object exists, so does its metadata
            _write_atomically(_side_file(target), json.dumps({k: str(v) for k, v in metadata.items()}).encode(),
                              replace=True)
        return _write_atomically(target, data, replace=False)

    def read(self, name: str) -> bytes | None:
        try:
            return (self.root / name).read_bytes()
        except FileNotFoundError:
            return None

    def list(self, folder: str) -> dict[str, dict]:
        directory = self.root / folder
        if not directory.is_dir():
            return {}
        found = {}
        for path in sorted(directory.iterdir()):
            if path.name.startswith("."):
                continue
            side = _side_file(path)
            found[f"{folder}{path.name}"] = json.loads(side.read_text()) if side.exists() else {}
        return found


def _side_file(path: Path) -> Path:
    return path.with_name(f".{path.name}.meta.json")


def _write_atomically(target: Path, data: bytes, replace: bool) -> bool:
    """The whole file under its name, or nothing: a temporary file in the same folder, synced, then linked (create
    only: False if the name exists) or renamed over it (`replace`)."""
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    try:
        os.fchmod(handle, 0o644)  # mkstemp's 0600 would make the results readable by their writer only
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        if replace:
            os.replace(temporary, target)
            return True
        try:
            os.link(temporary, target)
        except FileExistsError:
            return False
        return True
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


def open_output(uri: str):
    return GcsOutput(uri) if uri.startswith("gs://") else LocalOutput(uri)
