"""An id for every request, sent back as ``X-Request-ID`` and quoted in its error log lines."""

from __future__ import annotations

import secrets

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = "X-Request-ID"


def request_id(scope: Scope) -> str:
    """The id ``RequestId`` gave this request (``-`` outside it)."""
    return str(scope.get("state", {}).get("request_id", "-"))


class RequestId:
    """Gives each request a fresh random id. A client's own ``X-Request-ID`` is not trusted:
    the id must find one request's log lines, so the server alone makes it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        rid = secrets.token_hex(8)
        scope.setdefault("state", {})["request_id"] = rid

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message).append(HEADER, rid)
            await send(message)

        await self.app(scope, receive, send_with_id)
