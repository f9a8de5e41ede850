"""The input: a gs://BUCKET/PREFIX or a local folder, listed in name order and read at the generation the plan pinned.

An item that is gone or changed since the plan is that item's error (stage "read"), not the task's; anything else
that goes wrong reading (permission, a network that stays down after google-cloud-storage's retries) is an
infrastructure failure: the task exits non-zero and Cloud Run retries it.
"""

from __future__ import annotations

import fnmatch
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from ..errors import BadImage, BadParameter, NotFound


@dataclass(frozen=True)
class Item:
    """One input, pinned: what was listed is what is read."""

    name: str  # relative to the input prefix or folder, '/'-separated: the plan's sort key
    uri: str
    generation: int  # GCS: the object's generation; a local file: its st_mtime_ns
    size: int

    def source(self) -> dict:
        return {"uri": self.uri, "generation": self.generation}


def split_gs(uri: str) -> tuple[str, str]:
    """gs://bucket/prefix → (bucket, 'prefix/'); the prefix names a folder, so it ends with '/' (or is empty)."""
    bucket, _, prefix = uri[len("gs://"):].partition("/")
    prefix = prefix.strip("/")
    return bucket, prefix + "/" if prefix else ""


def matches(name: str, glob: str | None) -> bool:
    return glob is None or fnmatch.fnmatchcase(name, glob) or fnmatch.fnmatchcase(name.rsplit("/", 1)[-1], glob)


class GcsPrefix:
    """gs://BUCKET/PREFIX/ and one storage client for it, made on first use (by any of the task's threads)."""

    def __init__(self, uri: str, client=None):
        self.bucket_name, self.prefix = split_gs(uri)
        self.uri = f"gs://{self.bucket_name}/{self.prefix}"
        self._client = client
        self._lock = threading.Lock()

    def client(self):
        with self._lock:
            if self._client is None:
                from google.cloud import storage

                self._client = storage.Client()
            return self._client


class GcsInput(GcsPrefix):

    def list(self, glob: str | None) -> list[Item]:
        from google.api_core import exceptions as gexc

        items = []
        try:
            for blob in self.client().list_blobs(self.bucket_name, prefix=self.prefix):
                name = blob.name[len(self.prefix):]
                if name and not name.endswith("/") and matches(name, glob):
                    uri = f"gs://{self.bucket_name}/{blob.name}"
                    items.append(Item(name, uri, int(blob.generation), int(blob.size)))
        except gexc.NotFound:
            raise BadParameter(f"--input {self.uri}: no bucket {self.bucket_name!r}") from None
        return sorted(items, key=lambda item: item.name)  # GCS lists in this order already

    def read(self, item: Item) -> bytes:
        from google.api_core import exceptions as gexc

        blob = self.client().bucket(self.bucket_name).blob(self.prefix + item.name, generation=item.generation)
        try:
            return blob.download_as_bytes(checksum="crc32c")
        except gexc.NotFound:
            raise NotFound(f"{item.uri} generation {item.generation} no longer exists (deleted or replaced since "
                           "the run was planned)") from None


class LocalInput:
    def __init__(self, path: str):
        self.root = Path(path).expanduser().resolve()
        self.uri = str(self.root)

    def list(self, glob: str | None) -> list[Item]:
        if not self.root.is_dir():
            raise BadParameter(f"--input {self.root} is not a folder")
        items = []
        for path in self.root.rglob("*"):
            name = path.relative_to(self.root).as_posix()
            if path.is_file() and matches(name, glob):
                stat = path.stat()
                items.append(Item(name, str(path), stat.st_mtime_ns, stat.st_size))
        return sorted(items, key=lambda item: item.name)

    def read(self, item: Item) -> bytes:
        path = self.root / item.name
        try:
            with open(path, "rb") as file:
                stat = os.fstat(file.fileno())
                if stat.st_mtime_ns != item.generation or stat.st_size != item.size:
                    raise BadImage(f"{item.uri} changed since the run was planned")
                return file.read()
        except FileNotFoundError:
            raise NotFound(f"{item.uri} no longer exists") from None


def open_input(uri: str):
    return GcsInput(uri) if uri.startswith("gs://") else LocalInput(uri)
