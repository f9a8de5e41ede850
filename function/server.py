"""Serving: functions-framework builds the Flask app, gunicorn runs it with one worker that owns the model."""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

import flask
import functions_framework
import gunicorn.app.base
import gunicorn.glogging

from .config import Settings, load_settings
from .errors import ConfigError
from .logs import log, setup_logging
from .service import SERVICE_KEY, Service

ENTRY_SOURCE = Path(__file__).with_name("main.py")
ENTRY_TARGET = "endpoint"


def create_app(settings: Settings, service: Service | None = None) -> flask.Flask:
    """The WSGI app: functions-framework's Flask app for our HTTP function, limits set, service attached."""
    app = functions_framework.create_app(target=ENTRY_TARGET, source=str(ENTRY_SOURCE), signature_type="http")
    # No MAX_CONTENT_LENGTH: functions-framework reads every body after the response, and Werkzeug would raise
    # there; the entry module refuses oversized bodies itself. A base64 `source` is a form field, not a file: let it
    # be as large as the upload limit allows.
    app.config["MAX_FORM_MEMORY_SIZE"] = settings.max_body_bytes
    app.extensions[SERVICE_KEY] = service or Service(settings)
    # Flask's own /static/<path:filename> rule (a folder beside the working directory, which does not exist) outranks
    # functions-framework's catch-all rule: hand those requests to the function too, whose /static/ route serves them.
    app.view_functions["static"] = lambda filename: app.view_functions["run"](path=f"static/{filename}")
    if settings.cors_origins:
        app.after_request(functools.partial(add_cors_headers, settings.cors_origins))
    return app


def add_cors_headers(origins: tuple[str, ...], response: flask.Response) -> flask.Response:
    """Let browser apps on the allowed origins call the API (the Platform's JavaScript example, unchanged)."""
    origin = flask.request.headers.get("Origin", "")
    if origin and ("*" in origins or origin in origins):
        response.headers["Access-Control-Allow-Origin"] = "*" if "*" in origins else origin
        response.headers.add("Vary", "Origin")
        if flask.request.method == "OPTIONS":  # the preflight, answered 204 by the entry module's dispatch
            response.headers["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
            response.headers["Access-Control-Allow-Headers"] = "Authorization, X-Api-Key, Content-Type"
            response.headers["Access-Control-Max-Age"] = "3600"
    return response


def gunicorn_options(settings: Settings, service: Service) -> dict:
    """Every gunicorn setting, as data: one worker process (the model and the GPU are its), request threads."""

    def post_worker_init(worker) -> None:
        service.start()

    def worker_exit(server, worker) -> None:
        service.stop()

    return {
        "bind": f"{settings.host}:{settings.port}",
        "workers": 1,
        "worker_class": "gthread",
        "threads": settings.threads,
        # Cloud Run sends SIGTERM and kills 10 s later: finish in-flight requests within that.
        "graceful_timeout": settings.graceful_timeout_s,
        # No silent-worker kill: a respawn would reload the model. Cloud Run's liveness probe watches /healthz.
        "timeout": 0,
        "keepalive": 650,  # above Cloud Run's / Google front ends' 600 s idle timeout, so they close first
        "max_requests": 0,
        "accesslog": None,  # the entry module writes one structured line per request
        "loglevel": "warning",
        "logger_class": "function.server.JsonGunicornLogger",
        "post_worker_init": post_worker_init,
        "worker_exit": worker_exit,
        "limit_request_line": 8190,
        "forwarded_allow_ips": "*",
        "proc_name": "yolo-endpoint",
    }


class JsonGunicornLogger(gunicorn.glogging.Logger):
    """Gunicorn's own lines (boot, shutdown, worker deaths) in the same JSON shape as ours."""

    def setup(self, cfg) -> None:
        super().setup(cfg)
        from .logs import JsonFormatter

        for handler in self.error_log.handlers:
            handler.setFormatter(JsonFormatter())


class Application(gunicorn.app.base.BaseApplication):
    def __init__(self, app: flask.Flask, options: dict):
        self.app, self.options = app, options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> flask.Flask:
        return self.app


def main() -> None:
    # Ultralytics prints plain-text banners at import, before its logger can be given the JSON handler.
    os.environ.setdefault("YOLO_VERBOSE", "false")
    try:
        settings = load_settings()
    except ConfigError as exc:
        setup_logging()
        log.critical(f"configuration error: {exc}")
        sys.exit(2)
    setup_logging(settings.log_level)
    log.info(
        f"starting: MODEL={settings.model} on {settings.host}:{settings.port}, {settings.threads} threads, "
        f"API keys {'required' if settings.auth_required else 'not required'}"
    )
    service = Service(settings)
    app = create_app(settings, service)
    Application(app, gunicorn_options(settings, service)).run()
