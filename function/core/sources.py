"""The `source` field: an http(s) URL fetched without opening a way into the cloud network, a gs://bucket/object read
with the service's own identity from a bucket the deployment allows (ALLOWED_SOURCE_BUCKETS), or base64 image data."""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
import socket
import threading
import time
from typing import Iterable
from urllib.parse import urljoin, urlsplit

import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import HTTPError, NewConnectionError
from urllib3.util import connection as urllib3_connection

from ..errors import BadImage, InferenceTimeout, ServiceError, SourceRefused, TooLarge

MAX_REDIRECTS = 5
_BLOCKED_HOSTS = {"metadata", "metadata.google.internal", "metadata.google.internal."}
_DATA_URL = re.compile(r"^data:[\w/+.-]*(;[\w=.-]+)*;base64,", re.IGNORECASE)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def is_forbidden_address(address: str, allowed: Iterable[Network] = ()) -> bool:
    """True for anything but a public unicast address, whatever its spelling (IPv4-mapped, 6to4, Teredo)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if any(ip in net for net in allowed):
        return False
    if ip.version == 6:
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is not None:
            return is_forbidden_address(str(embedded), allowed)
    return (
        not ip.is_global
        or ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_unspecified
        or ip.is_reserved
    )


def resolve_public(host: str, port: int, allowed: Iterable[Network] = ()) -> str:
    """Resolve `host` and return an address safe to connect to, or raise SourceRefused."""
    if host.lower() in _BLOCKED_HOSTS:
        raise SourceRefused(f"source URL host {host!r} is not allowed")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise SourceRefused(f"source URL host {host!r} cannot be resolved") from None
    addresses = [info[4][0] for info in infos]
    # Every answer must be public: a resolver that mixes in a private address is not trusted at all.
    if not addresses or any(is_forbidden_address(a, allowed) for a in addresses):
        raise SourceRefused(f"source URL host {host!r} resolves to an address that is not allowed")
    return addresses[0]


class _GuardedMixin:
    allowed_networks: tuple = ()

    def _new_conn(self):  # noqa: D401 - urllib3's hook: the one place a socket is opened
        address = resolve_public(self._dns_host, self.port, self.allowed_networks)
        try:
            return urllib3_connection.create_connection(
                (address, self.port), self.timeout, source_address=self.source_address, socket_options=self.socket_options
            )
        except OSError as exc:
            raise NewConnectionError(self, f"cannot connect to {self.host}: {exc}") from exc


def _guarded_pools(allowed: tuple) -> dict:
    http_conn = type("GuardedHTTPConnection", (_GuardedMixin, HTTPConnection), {"allowed_networks": allowed})
    https_conn = type("GuardedHTTPSConnection", (_GuardedMixin, HTTPSConnection), {"allowed_networks": allowed})
    return {
        "http": type("GuardedHTTPPool", (HTTPConnectionPool,), {"ConnectionCls": http_conn}),
        "https": type("GuardedHTTPSPool", (HTTPSConnectionPool,), {"ConnectionCls": https_conn}),
    }


class SourceFetcher:
    """Fetches image URLs: http(s) from public addresses only, checked when each connection opens, after every redirect
    too; gs:// from the allowed buckets (GcsReader)."""

    def __init__(self, max_bytes: int, timeout_s: float, allowed_networks: tuple = (), allowed_buckets: tuple = ()):
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s
        self.pool = urllib3.PoolManager(num_pools=8, maxsize=4, retries=False)
        self.pool.pool_classes_by_scheme = _guarded_pools(tuple(allowed_networks))
        self.gcs = GcsReader(tuple(allowed_buckets), max_bytes, timeout_s)

    def fetch(self, url: str) -> bytes:
        """GET the image; the whole fetch (redirects, connect, every read) ends at `timeout_s` of wall-clock time."""
        if url[:5].lower() == "gs://":
            return self.gcs.read(url)
        deadline = time.monotonic() + self.timeout_s
        for _ in range(MAX_REDIRECTS + 1):
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise SourceRefused("source URL must be http:// or https:// with a host, or gs://bucket/object")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise self._too_slow()
            try:
                response = self.pool.request(
                    "GET",
                    url,
                    redirect=False,
                    preload_content=False,
                    timeout=urllib3.Timeout(connect=remaining, read=remaining),
                    headers={"User-Agent": "yolo-cloud-run/1", "Accept": "image/*"},
                )
            except SourceRefused:
                raise
            except HTTPError as exc:
                cause = exc.__context__ if isinstance(exc.__context__, SourceRefused) else None
                if cause is None and isinstance(getattr(exc, "reason", None), SourceRefused):
                    cause = exc.reason
                if cause is not None:
                    raise cause from None
                if time.monotonic() >= deadline:
                    raise self._too_slow() from None
                raise BadImage(f"source URL could not be fetched: {type(exc).__name__}") from None
            try:
                if response.status in (301, 302, 303, 307, 308):
                    location = response.headers.get("Location")
                    if not location:
                        raise BadImage(f"source URL redirected (HTTP {response.status}) without a Location")
                    url = urljoin(url, location)
                    continue
                if response.status != 200:
                    raise BadImage(f"source URL answered HTTP {response.status}")
                return self._read_capped(response, deadline)
            finally:
                response.release_conn()
        raise BadImage(f"source URL redirected more than {MAX_REDIRECTS} times")

    def _too_slow(self) -> InferenceTimeout:
        return InferenceTimeout(f"source URL did not deliver the image within URL_TIMEOUT_S={self.timeout_s:g} s")

    def _read_capped(self, response, deadline: float) -> bytes:
        declared = response.headers.get("Content-Length")
        if declared and declared.isdigit() and int(declared) > self.max_bytes:
            raise TooLarge(f"source image is {int(declared)} bytes, over the {self.max_bytes // 2**20} MB limit")
        # A server that drips bytes keeps every single read inside its timeout: a timer closes the socket at the
        # deadline, which ends the read in progress.
        watchdog = threading.Timer(max(deadline - time.monotonic(), 0), response.shutdown)
        watchdog.daemon = True
        watchdog.start()
        chunks, total = [], 0
        try:
            while chunk := response.read1(64 * 1024):
                total += len(chunk)
                if total > self.max_bytes:
                    raise TooLarge(f"source image is over the {self.max_bytes // 2**20} MB limit")
                if time.monotonic() > deadline:
                    raise self._too_slow()
                chunks.append(chunk)
        except (HTTPError, OSError) as exc:
            if time.monotonic() >= deadline:
                raise self._too_slow() from None
            raise BadImage(f"source URL could not be read: {type(exc).__name__}") from None
        finally:
            watchdog.cancel()
        if time.monotonic() >= deadline:  # the watchdog's shutdown reads as an early end of the body
            raise self._too_slow()
        return b"".join(chunks)


class GcsReader:
    """gs://bucket/object sources, read with the service's own identity (Cloud Run's service account) through
    google-cloud-storage, which retries transient errors and verifies the CRC32C of what arrived; the client honours
    STORAGE_EMULATOR_HOST. Only the buckets the deployment names are read: none by default."""

    def __init__(self, allowed_buckets: tuple[str, ...], max_bytes: int, timeout_s: float):
        self.allowed_buckets = frozenset(allowed_buckets)
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s
        self._client = None
        self._lock = threading.Lock()

    def client(self):
        with self._lock:  # built on first use (the import and the credentials lookup are not free), then shared
            if self._client is None:
                from google.cloud import storage

                self._client = storage.Client()
            return self._client

    def read(self, uri: str) -> bytes:
        """The object's bytes: refused unless its bucket is allowed, 413 over `max_bytes` (from its metadata, before a
        byte is read), 504 when the whole read (retries included) passes `timeout_s`."""
        bucket, _, name = uri[5:].partition("/")
        if not bucket or not name:
            raise SourceRefused("a gs:// source must be gs://bucket/object")
        if not self.allowed_buckets:
            raise SourceRefused("gs:// sources are off: the deployment allows no bucket (ALLOWED_SOURCE_BUCKETS)")
        if bucket not in self.allowed_buckets:
            raise SourceRefused(f"bucket {bucket!r} is not allowed for gs:// sources (ALLOWED_SOURCE_BUCKETS)")
        uri = f"gs://{bucket}/{name}"
        deadline = time.monotonic() + self.timeout_s
        try:
            from google.cloud.storage.retry import DEFAULT_RETRY

            blob = self.client().bucket(bucket).blob(name)
            blob.reload(timeout=self._remaining(deadline), retry=DEFAULT_RETRY.with_timeout(self._remaining(deadline)))
            if blob.size is not None and blob.size > self.max_bytes:
                raise TooLarge(f"source {uri} is {blob.size} bytes, over the {self.max_bytes // 2**20} MB limit")
            # This generation, the one whose size was checked: an object replaced meanwhile is not read.
            remaining = self._remaining(deadline)
            data = blob.download_as_bytes(if_generation_match=blob.generation, checksum="crc32c", timeout=remaining,
                                          retry=DEFAULT_RETRY.with_timeout(remaining))
        except ServiceError:
            raise
        except Exception as exc:
            raise self._error(uri, exc, deadline) from None
        if len(data) > self.max_bytes:
            raise TooLarge(f"source {uri} is over the {self.max_bytes // 2**20} MB limit")
        if time.monotonic() > deadline:
            raise self._too_slow(uri)
        return data

    @staticmethod
    def _remaining(deadline: float) -> float:
        return max(deadline - time.monotonic(), 0.001)

    def _too_slow(self, uri: str) -> InferenceTimeout:
        return InferenceTimeout(f"source {uri} was not read within URL_TIMEOUT_S={self.timeout_s:g} s")

    def _error(self, uri: str, exc: Exception, deadline: float) -> ServiceError:
        from google.api_core import exceptions as gexc
        from google.cloud.storage.exceptions import DataCorruption

        if isinstance(exc, gexc.NotFound):
            return BadImage(f"source {uri} not found (no such object, or no such bucket)")
        if isinstance(exc, gexc.Forbidden):
            return BadImage(f"source {uri}: permission denied; the service account needs roles/storage.objectViewer "
                            f"on the bucket")
        if isinstance(exc, gexc.PreconditionFailed):
            return BadImage(f"source {uri} changed while it was being read; retry")
        if isinstance(exc, DataCorruption):
            return BadImage(f"source {uri} arrived corrupt (CRC32C mismatch)")
        if time.monotonic() >= deadline:
            return self._too_slow(uri)
        return BadImage(f"source {uri} could not be read: {type(exc).__name__}")


def decode_base64(text: str, max_bytes: int) -> bytes:
    """Decode base64 image data (plain, URL-safe, or a data: URL); refuse it when it decodes to over max_bytes."""
    match = _DATA_URL.match(text)
    # A `+` sent unescaped in a urlencoded form arrives as a space: base64 has no spaces, so put it back.
    payload = re.sub(r"\s+", "", (text[match.end():] if match else text).replace(" ", "+"))
    if len(payload) * 3 // 4 > max_bytes + 3:
        raise TooLarge(f"source image is over the {max_bytes // 2**20} MB limit")
    payload = payload.replace("-", "+").replace("_", "/")
    payload += "=" * (-len(payload) % 4)
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise BadImage("'source' is neither an http(s) URL nor base64 image data") from None
    if len(data) > max_bytes:
        raise TooLarge(f"source image is over the {max_bytes // 2**20} MB limit")
    return data


def is_url(text: str) -> bool:
    return bool(re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", text))
