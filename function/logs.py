"""Structured JSON logs on stdout, in the shape Cloud Logging reads (one object per line)."""

from __future__ import annotations

import datetime
import json
import logging
import sys

LOGGER_NAME = "yolo"
log = logging.getLogger(LOGGER_NAME)

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


def adopt_logger(name: str, level: str) -> None:
    """Make a logger write JSON lines to stdout, replacing whatever handlers its library gave it."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger(name)
    logger.handlers[:] = [handler]
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
