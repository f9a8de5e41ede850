"""Serving: functions-framework builds the ASGI (Starlette) app, gunicorn runs it with one uvicorn worker process that
owns the model; requests are coroutines on its event loop, CPU work runs in bounded thread pools.

The app and its Service are built in the worker, after gunicorn forks: the master only supervises, and importing the
web stack and the image libraries there would cost their memory twice."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import gunicorn.app.base
import gunicorn.glogging

from ..errors import ConfigError, from_http_status
from ..logs import flush_logs, log, setup_logging
from ..memory import limit_malloc_arenas
from ..settings import Settings, load_settings
from .protocol import worker_class

# Gunicorn halts (no respawn) when a worker exits with its APP_LOAD_ERROR code.
EXIT_MODEL_FAILED = 4
ENTRY_SOURCE = Path(__file__).with_name("app.py")
ENTRY_TARGET = "endpoint"
def create_app(settings: Settings, service=None):
    """The ASGI app: functions-framework's Starlette app for our HTTP function, with the service attached."""
    import functions_framework.aio
    from starlette.exceptions import HTTPException

    from starlette.routing import WebSocketRoute

    from ..core.service import Service
    from . import streams
    from .edge import Edge

    app = functions_framework.aio.create_asgi_app(target=ENTRY_TARGET, source=str(ENTRY_SOURCE), signature_type="http")
    app.state.service = service or Service(settings)
    app.state.edge = Edge.around(app.state.service)
    # Live streams are WebSockets (functions-framework's routes are HTTP only): ahead of them, and any other
    # WebSocket path is refused with our 404.
    app.router.routes[0:0] = [*(WebSocketRoute(path, streams.serve) for path in streams.PATHS),
                              WebSocketRoute("/{path:path}", streams.not_found)]
    # The few answers functions-framework's own routes give (robots.txt, favicon.ico, a method no route takes) are
    # Starlette HTTPExceptions: give them our JSON error shape too.
    app.add_exception_handler(HTTPException, _http_exception_as_json)
    return app


async def _http_exception_as_json(request, exc):
    from starlette.responses import Response

    error = from_http_status(exc.status_code, exc.detail if exc.status_code < 500 else None)
    return Response(json.dumps(error.body()), exc.status_code, headers=exc.headers, media_type="application/json")


def _exit_worker(reason: str) -> None:
    """The model cannot serve: say why in one line and end the worker with the code that makes gunicorn halt (no
    respawn, which would fail the same way) rather than restart it."""
    log.critical(f"cannot serve: {reason}")
    flush_logs()  # os._exit skips the interpreter's exit, which would write what is queued
    os._exit(EXIT_MODEL_FAILED)


def gunicorn_options(settings: Settings) -> dict:
    """Every gunicorn setting, as data: one uvicorn worker process (the model and the GPU are its)."""

    def post_worker_init(worker) -> None:
        # The worker's own Application, which built the service after the fork.
        worker.app.service.start(on_failure=_exit_worker)

    def worker_exit(server, worker) -> None:
        if worker.app.service is not None:
            worker.app.service.stop()

    return {
        "bind": f"{settings.host}:{settings.port}",
        "workers": 1,
        "worker_class": worker_class(settings),
        # Cloud Run sends SIGTERM and kills 10 s later: finish in-flight requests within that.
        "graceful_timeout": settings.graceful_timeout_s,
        # No silent-worker kill: a respawn would reload the model. Cloud Run's liveness probe watches /healthz.
        "timeout": 0,
        "keepalive": 650,  # above Cloud Run's / Google front ends' 600 s idle timeout, so they close first
        "max_requests": 0,
        "accesslog": None,  # the entry module writes one structured line per request
        "loglevel": "warning",
        "logger_class": "function.http.server.JsonGunicornLogger",
        "post_worker_init": post_worker_init,
        "worker_exit": worker_exit,
        "proc_name": "yolo-endpoint",
        # gunicorn's control socket (for gunicornc) lives under $HOME, read-only on Cloud Run; nothing here uses it.
        "control_socket_disable": True,
    }


class JsonGunicornLogger(gunicorn.glogging.Logger):
    """Gunicorn's own lines (boot, shutdown, worker deaths) in the same JSON shape as ours."""

    def setup(self, cfg) -> None:
        super().setup(cfg)
        from ..logs import JsonFormatter

        for handler in self.error_log.handlers:
            handler.setFormatter(JsonFormatter())


class Application(gunicorn.app.base.BaseApplication):
    def __init__(self, settings: Settings, options: dict):
        self.settings, self.options = settings, options
        self.service = None
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self):
        """Called in the worker (gunicorn does not preload): the service and the app live only there."""
        from ..core.service import Service

        self.service = Service(self.settings)
        return create_app(self.settings, self.service)


def main() -> None:
    limit_malloc_arenas()
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
        f"starting: MODEL={settings.model} on {settings.host}:{settings.port}, {settings.threads} CPU threads, "
        f"API keys {'required' if settings.auth_required else 'not required'}"
    )
    Application(settings, gunicorn_options(settings)).run()
