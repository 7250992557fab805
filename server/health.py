"""Liveness and readiness, for load balancers and orchestrators; neither needs a login.

They say what is up, never how it is set up: no URLs, paths or raw engine errors, which
would tell an attacker about the host (the details of a failure go to the log).
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from server.services import Services, services

log = logging.getLogger(__name__)


async def healthz(request: Request) -> Response:
    """The process is alive and answering; nothing else is checked."""
    return JSONResponse({"status": "alive"})


async def readyz(request: Request) -> Response:
    """Whether runs can be served now: engine, database and warm pool (503 when not). With
    several engines, ready while one is up."""
    state = services(request)
    checks = {
        "engine": await _engine(state),
        "database": await _database(state),
        "pool": _pool(state),
    }
    ready = all(check["ok"] for check in checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "unavailable", **checks},
        status_code=200 if ready else 503,
    )


async def _engine(state: Services) -> dict[str, Any]:
    health = await state.backend.health()
    ok = bool(health.get("ok"))
    if not ok:
        log.warning("readiness: the sandbox engine is not ready: %s", health.get("error"))
    backend = state.backend
    # ``runtime`` (e.g. runc or runsc) where the backend knows it, else the backend's name.
    engine = {
        "ok": ok,
        "backend": backend.name,
        "runtime": getattr(backend, "runtime", backend.name),
    }
    if "engines" in health:  # several engines: each by name, up or down (never its URL)
        engine["engines"] = health["engines"]
    return engine


async def _database(state: Services) -> dict[str, Any]:
    health = await state.db.health()
    ok = bool(health.get("ok"))
    if not ok:
        log.warning("readiness: the database is not ready: %s", health.get("error"))
    return {"ok": ok}


def _pool(state: Services) -> dict[str, Any]:
    """Ready unless the pool fails to make warm sandboxes (a missing image, an engine that
    refuses the limits): an empty pool during a burst of runs is busy, not broken, and a load
    balancer must not take the server out of rotation for it."""
    pool = state.backend.pool
    stats = pool.stats().values()
    warm = sum(lane["idle"] for lane in stats)
    size = sum(lane["size"] for lane in stats)
    failing = sorted(pool.failing)
    return {"ok": not failing, "size": size, "warm": warm, "failing": failing}


routes = [Route("/healthz", healthz), Route("/readyz", readyz)]
