"""What admins (teachers, operators) may do: warm the pool ahead, read statistics and metrics."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field
from starlette.authentication import requires
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox import SandboxError
from sandbox.languages import get_language
from server.config import Settings
from server.errors import from_sandbox
from server.http import json_body, validate
from server.services import services
from storage.models import utc_now

MAX_WARM = 64
"""Extra warm containers one request may ask for (the memory budget may grant fewer)."""
MAX_WARM_MINUTES = 240
"""How long they may be kept: a lesson, not a standing order."""


Handler = Callable[[Request], Awaitable[Response]]


class WarmRequest(BaseModel):
    language: str = Field(max_length=64)
    count: int = Field(ge=1, le=MAX_WARM)
    minutes: float = Field(gt=0, le=MAX_WARM_MINUTES, allow_inf_nan=False)


class StatsQuery(BaseModel):
    days: int = Field(default=30, ge=1, le=366)


def admin_only(handler: Handler) -> Handler:
    """No token (or a bad one): 401 naming why; a signed-in user who is not an admin: 403."""
    guarded = requires("admin", status_code=403)(handler)
    return requires("authenticated", status_code=401)(guarded)  # type: ignore[return-value]


@admin_only
async def warm(request: Request) -> Response:
    state = services(request)
    body = await json_body(request, WarmRequest)
    try:
        language = get_language(body.language)
    except SandboxError as exc:
        raise from_sandbox(exc) from None
    granted = state.backend.pool.reserve(language, body.count, body.minutes * 60)
    until = utc_now() + timedelta(minutes=body.minutes)
    return JSONResponse(
        {
            "language": language.id,
            "requested": body.count,
            "granted": granted,
            "until": until.isoformat(),
        }
    )


@admin_only
async def stats(request: Request) -> Response:
    state = services(request)
    query = validate(StatsQuery, dict(request.query_params))
    since = utc_now() - timedelta(days=query.days)
    return JSONResponse({"days": query.days, **await state.db.run_stats(since)})


async def metrics(request: Request) -> Response:
    registry = services(request).runs.metrics.registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


def routes(settings: Settings) -> list[Route]:
    """The admin routes; ``/metrics`` as ``EXECSTREAM_METRICS`` says (absent when ``off``)."""
    found = [
        Route("/api/v1/admin/warm", warm, methods=["POST"]),
        Route("/api/v1/admin/stats", stats, methods=["GET"]),
    ]
    if settings.metrics != "off":
        handler = metrics if settings.metrics == "public" else admin_only(metrics)
        found.append(Route("/metrics", handler, methods=["GET"]))
    return found
