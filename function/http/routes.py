"""The route table, in one place: every path the service answers, and who answers it.

A route's handler is either a dialect (a predict route: the core reads, checks and runs it, the dialect shapes it) or a
system handler: `async (Incoming, Service) -> Reply`, answered on the event loop without touching the model.
"""

from __future__ import annotations

import mimetypes
import re
from dataclasses import dataclass
from pathlib import Path

from .. import metrics
from ..core.service import Service
from ..dialects import Incoming, Reply, bearer_or_x_api_key, hub, platform, roboflow, roboflow_server
from ..errors import MethodNotAllowed, NotFound
from . import openapi

STATIC_DIR = (Path(__file__).parent.parent / "static").resolve()


async def healthz(incoming: Incoming, service: Service) -> Reply:
    return Reply(200, {"status": "ok"})


async def readyz(incoming: Incoming, service: Service) -> Reply:
    model = service.require_ready()
    registry = service.models.registry
    several = {} if registry is None else {"models": 1 + len(registry.entries)}  # GET /models lists them
    return Reply(200, {"status": "ready", "model": model.name, "task": model.task, **several})


async def models(incoming: Incoming, service: Service) -> Reply:
    """Every model id this endpoint serves: its task, loaded or not, its memory and load seconds. It names the
    models, so it takes the API key like a predict call."""
    incoming.authorize(bearer_or_x_api_key(incoming))
    return Reply(200, service.models.describe())


async def metrics_text(incoming: Incoming, service: Service) -> Reply:
    body, media_type = metrics.exposition()
    return Reply(200, body, media_type)


def _file(path: Path, max_age: int) -> Reply:
    media_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return Reply(200, path.read_bytes(), media_type, {"Cache-Control": f"public, max-age={max_age}"})


async def openapi_json(incoming: Incoming, service: Service) -> Reply:
    return Reply(200, openapi.document())


async def page(incoming: Incoming, service: Service) -> Reply:
    return _file(STATIC_DIR / "index.html", 0)


async def static_file(incoming: Incoming, service: Service) -> Reply:
    target = (STATIC_DIR / incoming.path_params["path"]).resolve()
    if not target.is_relative_to(STATIC_DIR) or not target.is_file():
        raise NotFound(f"No route for {incoming.path}")
    return _file(target, 3600)


@dataclass(frozen=True)
class Route:
    template: str  # `{name}` matches one path segment, `{name:path}` the rest of the path, `{name:int}` digits
    methods: dict  # method -> dialect module or system handler

    @property
    def pattern(self) -> re.Pattern:
        return _compile(self.template)


_PARAM = re.compile(r"{(\w+)(?::(\w+))?}")
_KINDS = {None: r"[^/]+", "path": r".+", "int": r"[0-9]+"}
_compiled: dict[str, re.Pattern] = {}


def _compile(template: str) -> re.Pattern:
    if template not in _compiled:
        regex, last = "", 0
        for match in _PARAM.finditer(template):
            regex += re.escape(template[last:match.start()]) + f"(?P<{match[1]}>{_KINDS[match[2]]})"
            last = match.end()
        _compiled[template] = re.compile(regex + re.escape(template[last:]) + "/?")
    return _compiled[template]


ROUTES = (
    Route("/healthz", {"GET": healthz}),
    Route("/readyz", {"GET": readyz}),
    Route("/metrics", {"GET": metrics_text}),
    Route("/models", {"GET": models}),
    Route("/openapi.json", {"GET": openapi_json}),
    Route("/", {"GET": page}),
    Route("/static/{path:path}", {"GET": static_file}),
    Route("/predict", {"POST": platform}),
    Route("/api/models/{model_id}/predict", {"POST": platform}),
    Route("/v1/predict/{model_id}", {"POST": hub}),
    Route("/model/registry", {"GET": roboflow_server.registry}),
    Route("/model/add", {"POST": roboflow_server.add_model}),
    *(Route(f"/infer/{task}", {"POST": roboflow_server}) for task in roboflow_server.ROUTE_TASKS),
    # Last: Roboflow's `/{project}/{version}` would otherwise take any two-segment path whose second is digits.
    Route("/{project}/{version:int}", {"POST": roboflow, "GET": roboflow}),
)

# What a request that matched no route is counted under in the metrics (raw paths would be unbounded labels).
UNMATCHED = "unmatched"


def match(method: str, path: str) -> tuple[Route, object, dict[str, str]]:
    """(route, its handler for this method, path parameters); NotFound or MethodNotAllowed otherwise.
    HEAD is answered as GET (the server sends no body) where GET is a system handler, never by running the model."""
    for route in ROUTES:
        found = route.pattern.fullmatch(path)
        if found is None:
            continue
        wanted = "GET" if method == "HEAD" and callable(route.methods.get("GET")) else method
        if wanted in route.methods:
            return route, route.methods[wanted], found.groupdict()
        if method == "OPTIONS":
            return route, None, found.groupdict()
        raise MethodNotAllowed(f"{method} is not allowed on {path}; use {', '.join(route.methods)}")
    raise NotFound(f"No route for {path}")
