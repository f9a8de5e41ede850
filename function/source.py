"""The `source` field: an http(s) URL fetched without opening a way into the cloud network, or base64 image data."""

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

from .errors import BadImage, InferenceTimeout, SourceRefused, TooLarge

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
    """Fetches image URLs: public addresses only, checked when each connection opens, after every redirect too."""

    def __init__(self, max_bytes: int, timeout_s: float, allowed_networks: tuple = ()):
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s
        self.pool = urllib3.PoolManager(num_pools=8, maxsize=4, retries=False)
        self.pool.pool_classes_by_scheme = _guarded_pools(tuple(allowed_networks))

    def fetch(self, url: str) -> bytes:
        """GET the image; the whole fetch (redirects, connect, every read) ends at `timeout_s` of wall-clock time."""
        deadline = time.monotonic() + self.timeout_s
        for _ in range(MAX_REDIRECTS + 1):
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise SourceRefused("source URL must be http:// or https:// with a host")
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
