"""The Starlette application: routes, error handling, and the services' lifetime."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from server import accounts, code, web, ws
from server.config import Settings
from server.http import EXCEPTION_HANDLERS
from server.services import Services, services


async def healthz(request: Request) -> Response:
    state = services(request)
    sandbox = await state.backend.health()
    database = await state.db.health()
    ok = bool(sandbox.get("ok")) and bool(database.get("ok"))
    return JSONResponse(
        {"status": "ok" if ok else "unavailable", "sandbox": sandbox, "database": database},
        status_code=200 if ok else 503,
    )


def create_app(settings: Settings | None = None) -> Starlette:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if not hasattr(app.state, "services"):  # `execstream serve` opens them itself
            app.state.services = await Services.open(settings)
        try:
            yield
        finally:
            await app.state.services.close()

    return Starlette(
        routes=[
            Route("/healthz", healthz),
            *accounts.routes,
            *code.routes,
            *ws.routes,
            *web.routes,
        ],
        exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
        lifespan=lifespan,
    )
