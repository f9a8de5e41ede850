"""Structured JSON logs on stdout, in the shape Cloud Logging reads (one object per line).

A line is formatted where it is logged and written by one thread of the process's own (a `QueueHandler` in front of
a writer thread, the standard library's answer): a pipe that is slow to read, or full, stalls that thread, never the
event loop that answers requests (/healthz included). The queue holds MAX_QUEUED lines; past that, lines are dropped
and counted, and the writer says how many once it catches up. `flush_logs()` writes what is queued, before a process
ends with os._exit.
"""

from __future__ import annotations

import atexit
import datetime
import json
import logging
import os
import queue
import sys
import threading
from logging.handlers import QueueHandler

LOGGER_NAME = "yolo"
log = logging.getLogger(LOGGER_NAME)
MAX_QUEUED = 10_000  # lines waiting for stdout (a few MB): beyond, dropped and counted
FLUSH_TIMEOUT_S = 2.0

# Keys a caller may pass through `extra=` that belong in the JSON line as they are.
_PASSTHROUGH = ("httpRequest", "logging.googleapis.com/trace", "logging.googleapis.com/spanId", "fields")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "severity": record.levelname if record.levelname != "WARN" else "WARNING",
            "message": record.getMessage(),
            "time": datetime.datetime.fromtimestamp(record.created, datetime.timezone.utc).isoformat(),
            "logger": record.name,
        }
        for key in _PASSTHROUGH:
            value = record.__dict__.get(key)
            if value is not None:
                if key == "fields":
                    entry.update(value)
                else:
                    entry[key] = value
        if record.exc_info:
            entry["stack_trace"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class _Writer:
    """The process's one writer of log lines: a queue of finished lines and a thread that writes them to stdout.
    Started on first use in each process (a fork keeps no threads: gunicorn's worker starts its own)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._queue: queue.Queue | None = None
        self._thread: threading.Thread | None = None
        self._pid = None
        self.dropped = 0

    def put(self, line: str) -> None:
        lines = self._lines()
        try:
            lines.put_nowait(line)
        except queue.Full:
            with self._lock:
                self.dropped += 1

    def flush(self, timeout: float = FLUSH_TIMEOUT_S) -> None:
        """Write every line queued so far (within `timeout`: stdout may be stuck). The writer goes on afterwards."""
        if self._queue is None or self._pid != os.getpid():
            return
        done = threading.Event()
        try:
            self._queue.put(done, timeout=timeout)
        except queue.Full:
            return
        done.wait(timeout)

    def _lines(self) -> queue.Queue:
        if self._pid != os.getpid():  # first use, or the first in a forked child: its own queue and thread
            with self._lock:
                if self._pid != os.getpid():
                    self._queue, self.dropped = queue.Queue(MAX_QUEUED), 0
                    self._thread = threading.Thread(target=self._write, args=(self._queue,), name="log-writer",
                                                    daemon=True)
                    self._thread.start()
                    self._pid = os.getpid()
        return self._queue

    def after_fork_in_child(self) -> None:
        self._lock = threading.Lock()  # the parent's writer may have held it at the fork; its queue stays the parent's

    def _write(self, lines: queue.Queue) -> None:
        while True:
            line = lines.get()
            if isinstance(line, threading.Event):  # flush(): every line before it is written
                line.set()
                continue
            with self._lock:
                dropped, self.dropped = self.dropped, 0
            if dropped:
                _write_line(json.dumps({
                    "severity": "WARNING", "logger": LOGGER_NAME,
                    "time": datetime.datetime.now(datetime.timezone.utc).isoformat(),
                    "message": f"{dropped} log lines were dropped: stdout was not read as fast as they came"}))
            _write_line(line)


def _write_line(line: str) -> None:
    """One line, flushed at once: nothing half-written sits in a buffer a fork would copy."""
    try:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
    except (OSError, ValueError):  # stdout closed (its reader went away): nothing else to tell
        pass


_writer = _Writer()


class _QueuedJsonHandler(QueueHandler):
    """Formats on the caller's thread (the JSON line, stack trace included), hands the line to the writer thread."""

    def __init__(self):
        super().__init__(None)
        self.setFormatter(JsonFormatter())

    def emit(self, record: logging.LogRecord) -> None:
        try:
            _writer.put(self.format(record))
        except Exception:
            self.handleError(record)


def flush_logs(timeout: float = FLUSH_TIMEOUT_S) -> None:
    """Write what is queued now: before os._exit, which skips the interpreter's exit (and this module's atexit)."""
    _writer.flush(timeout)


atexit.register(flush_logs)
# Before a fork (gunicorn's worker), what is queued is written: the child starts with nothing of the parent's pending.
os.register_at_fork(before=flush_logs, after_in_child=_writer.after_fork_in_child)


def adopt_logger(name: str, level: str) -> None:
    """Make a logger write JSON lines to stdout, replacing whatever handlers its library gave it."""
    logger = logging.getLogger(name)
    logger.handlers[:] = [_QueuedJsonHandler()]
    logger.propagate = False
    logger.setLevel(level)


def setup_logging(level: str = "INFO") -> None:
    adopt_logger(LOGGER_NAME, level)
    # Libraries that log to the root logger, and Python warnings (logging.captureWarnings), become JSON lines too:
    # nothing on stdout or stderr that Cloud Logging cannot read as one entry.
    adopt_logger("", "WARNING")
    logging.captureWarnings(True)


def trace_fields(header: str | None, project: str | None) -> dict:
    """Turn `X-Cloud-Trace-Context: TRACE_ID/SPAN_ID;o=1` into Cloud Logging's trace keys."""
    if not header:
        return {}
    trace_id, _, rest = header.partition("/")
    trace_id = trace_id.strip()
    if not trace_id:
        return {}
    fields = {"logging.googleapis.com/trace": f"projects/{project}/traces/{trace_id}" if project else trace_id}
    span = rest.split(";", 1)[0].strip()
    if span:
        fields["logging.googleapis.com/spanId"] = span
    return fields
