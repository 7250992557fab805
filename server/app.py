"""The Starlette application: routes, the edge's middleware, and the services' lifetime."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware

from server import accounts, admin, code, health, limits, web, ws
from server.auth import TokenBackend
from server.bodylimit import BodyLimit
from server.config import Settings
from server.http import EXCEPTION_HANDLERS
from server.requestid import RequestId
from server.services import Services
from server.throttle import SignInThrottle


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
            *health.routes,
            *accounts.routes,
            *code.routes,
            *limits.routes,
            *admin.routes(settings),
            *ws.routes,
            *web.routes,
        ],
        # Outermost first: an id for the log, then the body cap (which the throttle's own
        # read of sign-in bodies obeys), then the throttle (before any password is hashed),
        # then who is asking.
        middleware=[
            Middleware(RequestId),
            Middleware(BodyLimit, limit=settings.max_body_bytes),
            Middleware(
                SignInThrottle,
                per_address=settings.throttle_per_address,
                per_username=settings.throttle_per_username,
            ),
            Middleware(AuthenticationMiddleware, backend=TokenBackend()),
        ],
        exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
        lifespan=lifespan,
    )
