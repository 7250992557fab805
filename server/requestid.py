"""An id for every request, and the last resort for errors nothing else handled.

The id goes back as ``X-Request-ID``; an unexpected exception becomes
``500 {"detail", "code": "internal_error", "request_id"}`` with its details in the log only,
under that id, so a user can quote it and an operator can find them.
"""

from __future__ import annotations

import logging
import secrets

from starlette.datastructures import MutableHeaders
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)

HEADER = "X-Request-ID"


class RequestId:
    """Gives each request a fresh random id (a client's own ``X-Request-ID`` is not trusted:
    the id must find exactly one request's log lines) and answers what the app could not."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = secrets.token_hex(8)
        scope.setdefault("state", {})["request_id"] = rid
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                MutableHeaders(scope=message).append(HEADER, rid)
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            log.exception("request %s failed: %s %s", rid, scope["method"], scope["path"])
            if started:  # too late for a response: the server cuts the connection
                raise
            response = JSONResponse(
                {
                    "detail": f"internal server error; it has been logged as request {rid}",
                    "code": "internal_error",
                    "request_id": rid,
                },
                status_code=500,
            )
            await response(scope, receive, send_with_id)
