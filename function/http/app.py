"""The HTTP function functions-framework serves (its async path): a Starlette request in, a response out.

Everything behind it is plain functions: `routes.py` (the route table), `edge.py` (per request: limits, deadlines, API
keys, logging, metrics), `dialects/` (request and response shapes), `core/service.py` (admission, decoding, the model).
"""

from __future__ import annotations

import functions_framework.aio
from starlette.requests import Request
from starlette.responses import Response

from function.http.edge import handle  # absolute: functions-framework loads this file by path


@functions_framework.aio.http
async def endpoint(request: Request) -> Response:
    return await handle(request, request.app.state.edge)
