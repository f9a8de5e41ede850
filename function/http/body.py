"""Request bodies, read as they stream in and never past their caps: raw bytes, urlencoded and multipart forms.

Everything here takes an async iterator of byte chunks and plain values, so it is tested without a server. Nothing is
spooled to disk (Cloud Run's /tmp is memory too): a body is held in memory only up to its cap, and all bodies being
read at once share one process-wide budget.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import AsyncIterator
from urllib.parse import parse_qsl

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from ..dialects import Form, Upload
from ..errors import BadParameter, Overloaded, TooLarge

# One part's headers (Content-Disposition, Content-Type): generous for any filename, tiny against memory.
MAX_PART_HEADER_BYTES = 16 * 1024


@dataclass(frozen=True)
class BodyLimits:
    max_body: int  # the whole body, framing included
    max_file: int  # one file part
    max_field: int  # one text field (a base64 `source` is one)
    max_files: int = 16
    max_fields: int = 64
    # How error messages name the limits, e.g. the settings behind them ("MAX_UPLOAD_MB=10").
    file_rule: str = ""
    files_rule: str = ""

    def too_large(self, what: str) -> TooLarge:
        return TooLarge(f"{what} is over the {_mb(self.max_body)} limit for a request body"
                        f"{f' ({self.files_rule})' if self.files_rule else ''}")


def _mb(n: int) -> str:
    return f"{n / 2**20:.0f} MB" if n >= 2**20 else f"{n} bytes"


class BufferBudget:
    """Bytes of request bodies being read by the whole process; a request that would pass it gets a 429.

    Used from the event loop's one thread only, so a plain counter is enough.
    """

    def __init__(self, limit: int):
        self.limit = limit
        self.used = 0

    def take(self, n: int) -> None:
        if self.used + n > self.limit:
            raise Overloaded(f"too many uploads are in progress ({_mb(self.limit)} buffered); retry shortly")
        self.used += n

    def give_back(self, n: int) -> None:
        self.used -= n


class _Meter:
    """Counts a body's bytes against its cap and the shared budget; returns them to the budget when done."""

    def __init__(self, limits: BodyLimits, budget: BufferBudget):
        self.limits, self.budget, self.taken = limits, budget, 0

    def add(self, n: int) -> None:
        if self.taken + n > self.limits.max_body:
            raise self.limits.too_large("The request body")
        self.budget.take(n)
        self.taken += n

    def release(self) -> None:
        self.budget.give_back(self.taken)
        self.taken = 0


async def read_body(chunks: AsyncIterator[bytes], limits: BodyLimits, budget: BufferBudget) -> bytes:
    """The whole body, refused with 413 the moment it passes `limits.max_body` (chunked bodies included)."""
    meter = _Meter(limits, budget)
    parts: list[bytes] = []
    try:
        async for chunk in chunks:
            if chunk:
                meter.add(len(chunk))
                parts.append(chunk)
        return b"".join(parts)
    finally:
        meter.release()


def parse_urlencoded(body: bytes, limits: BodyLimits) -> Form:
    """`a=1&b=2`: percent-escapes as UTF-8, anything else byte for byte (Latin-1), never an error for odd bytes."""
    try:
        pairs = parse_qsl(body.decode("latin-1"), keep_blank_values=True, max_num_fields=limits.max_fields)
    except ValueError:
        raise TooLarge(f"The form has more than {limits.max_fields} fields") from None
    for name, value in pairs:
        if len(value) > limits.max_field:
            raise TooLarge(f"Form field {name!r} is over the {_mb(limits.max_field)} limit for a field")
    return Form(fields=pairs)


def _text(raw: bytes) -> str:
    """Header and field text in whatever encoding the client used: UTF-8 when it is, else Latin-1 (never fails)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


class _MultipartCollector:
    """python-multipart's callbacks, collecting parts in memory under the per-part and per-form caps."""

    def __init__(self, limits: BodyLimits):
        self.limits = limits
        self.form = Form()
        self.ended = False
        self._headers: dict[str, bytes] = {}
        self._header_name = bytearray()
        self._header_value = bytearray()
        self._header_bytes = 0
        self._data = bytearray()
        self._cap = 0
        self._name = ""
        self._filename: str | None = None

    def callbacks(self) -> dict:
        return {name: getattr(self, name) for name in (
            "on_part_begin", "on_header_field", "on_header_value", "on_header_end", "on_headers_finished",
            "on_part_data", "on_part_end", "on_end")}

    def on_part_begin(self) -> None:
        self._headers, self._header_bytes, self._data = {}, 0, bytearray()

    def _count_header(self, n: int) -> None:
        self._header_bytes += n
        if self._header_bytes > MAX_PART_HEADER_BYTES:
            raise BadParameter(f"A multipart part's headers are over {MAX_PART_HEADER_BYTES} bytes")

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._count_header(end - start)
        self._header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._count_header(end - start)
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        self._headers[bytes(self._header_name).decode("latin-1").lower()] = bytes(self._header_value)
        self._header_name, self._header_value = bytearray(), bytearray()

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get("content-disposition", b""))
        if b"name" not in options:
            raise BadParameter("A multipart part has no Content-Disposition name")
        self._name = _text(options[b"name"])
        self._filename = _text(options[b"filename"]) if b"filename" in options else None
        if self._filename is not None:
            if len(self.form.files) >= self.limits.max_files:
                raise TooLarge(f"The form has more than {self.limits.max_files} files"
                               f"{f' ({self.limits.files_rule})' if self.limits.files_rule else ''}")
            self._cap = self.limits.max_file
        else:
            if len(self.form.fields) >= self.limits.max_fields:
                raise TooLarge(f"The form has more than {self.limits.max_fields} fields")
            self._cap = self.limits.max_field

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        self._data += data[start:end]
        if len(self._data) > self._cap:
            if self._filename is not None:
                rule = f" ({self.limits.file_rule})" if self.limits.file_rule else ""
                raise TooLarge(f"File {self._name!r} is over the {_mb(self._cap)} limit for a file{rule}")
            raise TooLarge(f"Form field {self._name!r} is over the {_mb(self._cap)} limit for a field")

    def on_part_end(self) -> None:
        if self._filename is not None:
            content_type = _text(self._headers.get("content-type", b"")).strip()
            self.form.files.append(Upload(self._name, self._filename, content_type, bytes(self._data)))
        else:
            self.form.fields.append((self._name, _text(bytes(self._data))))
        self._data = bytearray()

    def on_end(self) -> None:
        self.ended = True


async def read_multipart(chunks: AsyncIterator[bytes], boundary: bytes, limits: BodyLimits, budget: BufferBudget) -> Form:
    """Parse a multipart/form-data body while it arrives; each part and the whole body stop at their caps."""
    collector = _MultipartCollector(limits)
    parser = MultipartParser(boundary, collector.callbacks())
    meter = _Meter(limits, budget)
    try:
        async for chunk in chunks:
            if chunk:
                meter.add(len(chunk))
                parser.write(chunk)
        parser.finalize()
    except MultipartParseError:
        raise BadParameter("The multipart body is malformed") from None
    finally:
        meter.release()
    if not collector.ended:
        raise BadParameter("The multipart body ended before its closing boundary")
    return collector.form


def multipart_boundary(content_type: str) -> bytes:
    _, options = parse_options_header(content_type.encode("latin-1", "replace"))
    boundary = options.get(b"boundary", b"")
    if not boundary or len(boundary) > 200:
        raise BadParameter("multipart/form-data without a valid boundary")
    return boundary
