"""A cap on every HTTP request body, enforced while it is read: JSON, forms, chunked alike."""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.errors import ApiError


class BodyTooLarge(ApiError):
    def __init__(self, limit: int) -> None:
        super().__init__(
            413, "body_too_large", f"request body is limited to {limit} bytes", limit=limit
        )


class BodyLimit:
    """Refuses a body over ``limit`` bytes with 413: at once when Content-Length says so,
    otherwise as soon as the bytes received pass the limit, so no more of it is buffered."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = BodyTooLarge(self.limit)
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.limit:
            await self._refuse(too_large, scope, receive, send)
            return
        received = 0
        started = False

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise too_large
            return message

        async def watched_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, watched_send)
        except BodyTooLarge:
            # Raised inside a middleware that reads the body (the sign-in throttle); a
            # handler's read is answered by the app's own handler for ``ApiError``.
            if started:
                raise
            await self._refuse(too_large, scope, receive, send)

    @staticmethod
    async def _refuse(error: ApiError, scope: Scope, receive: Receive, send: Send) -> None:
        # Connection: close, so the server does not try to read the rest of the body.
        response = JSONResponse(error.body(), status_code=error.status)
        response.headers["Connection"] = "close"
        await response(scope, receive, send)
