"""Throttling of sign-in and sign-up, per client address and per username (``limits``).

A moving window: no key gets more than its amount within any stretch of the period, so
there is no burst of twice the amount across a window's edge (as with fixed windows), and
``Retry-After`` is exact: when the oldest counted request leaves the window. In memory,
per process: each server instance throttles on its own, which is what a single server is.
"""

from __future__ import annotations

import json
import math
import time

from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.audit import audit

PATHS = frozenset({"/api/v1/auth/token", "/api/v1/auth/register"})
USERNAME_KEY_CHARS = 128
FORMS = ("application/x-www-form-urlencoded", "multipart/form-data")


def client_address(scope: Scope) -> str:
    """The client's address: the TCP peer, or what a trusted proxy said (uvicorn's
    ProxyHeadersMiddleware has put that in ``scope["client"]`` already)."""
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


class SignInThrottle:
    """Counts every sign-in and sign-up request, before any password is hashed."""

    def __init__(self, app: ASGIApp, per_address: str, per_username: str) -> None:
        self.app = app
        self.per_address = parse(per_address)
        self.per_username = parse(per_username)
        self.limiter = MovingWindowRateLimiter(MemoryStorage())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] not in PATHS:
            await self.app(scope, receive, send)
            return
        address = client_address(scope)
        if not await self.limiter.hit(self.per_address, "address", address):
            await self._refuse(scope, receive, send, self.per_address, ("address", address))
            return
        body = await read_body(receive)
        replay = replaying(body, receive)
        username = await username_of(scope, body)
        if username is not None:
            key = ("username", username[:USERNAME_KEY_CHARS])
            if not await self.limiter.hit(self.per_username, *key):
                await self._refuse(scope, replay, send, self.per_username, key, username)
                return
        await self.app(scope, replay, send)

    async def _refuse(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        item: RateLimitItem,
        key: tuple[str, str],
        username: str | None = None,
    ) -> None:
        stats = await self.limiter.get_window_stats(item, *key)
        retry_after = max(1, math.ceil(stats.reset_time - time.time()))
        audit(
            "signin_throttled",
            user=username,
            client=client_address(scope),
            path=scope["path"],
            limit=f"{item} per {key[0]}",
        )
        response = JSONResponse(
            {
                "detail": f"too many sign-in attempts (at most {item} per {key[0]}); "
                f"retry in {retry_after} s",
                "code": "too_many_attempts",
                "retry_after": retry_after,
            },
            status_code=429,
            headers={"Retry-After": str(retry_after)},
        )
        await response(scope, receive, send)


async def read_body(receive: Receive) -> bytes:
    """The whole body (bounded by ``BodyLimit``, which wraps this middleware)."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def replaying(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives ``body`` once, then waits on the real one (for disconnect)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


async def username_of(scope: Scope, body: bytes) -> str | None:
    """The username a sign-in form or a sign-up JSON body names; None when there is none
    (the handler then answers the malformed request)."""
    request = Request(scope, replaying(body, _nothing))
    try:
        if request.headers.get("content-type", "").startswith(FORMS):
            async with request.form() as form:
                name = form.get("username")
        else:
            data = json.loads(body)
            name = data.get("username") if isinstance(data, dict) else None
    except Exception:  # whatever is malformed here, the handler reports it properly
        return None
    return name if isinstance(name, str) else None


async def _nothing() -> Message:
    return {"type": "http.disconnect"}
