"""``GET /api/v1/limits``: what one run may use, so that clients never hard-code it.

Public (no token): the editor shows the limits before anyone signs in, and they are no secret.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from server.services import services


async def limits(request: Request) -> Response:
    settings = services(request).settings
    return JSONResponse(
        {
            "output_bytes": settings.output_bytes,
            "code_bytes": settings.code_bytes,
            "stdin_bytes": settings.stdin_bytes,
            "stdin_window": settings.stdin_backlog_bytes,
            "max_wall_time": settings.max_wall_time,
            "max_frame_bytes": settings.max_frame_bytes,
        },
        headers={"Cache-Control": "no-cache"},
    )


routes = [Route("/api/v1/limits", limits, methods=["GET"])]
