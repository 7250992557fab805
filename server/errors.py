"""Errors the server reports, each with a stable code; turned into responses at the edge."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from sandbox import (
    BackendUnavailable,
    CodeTooLarge,
    InvalidFiles,
    InvalidTimeout,
    SandboxError,
    StdinTooLarge,
    TooManyRuns,
    UnknownLanguage,
)
from server.queue import RETRY_AFTER_SECONDS, ServerBusy


class ApiError(Exception):
    """Something a request got wrong (or, for 5xx, something we could not do)."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.headers = headers or {}
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {"detail": self.detail, "code": self.code, **self.extra}


class ProtocolError(Exception):
    """A WebSocket frame the server refuses; it becomes an ``error`` frame, the socket stays."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


_SANDBOX_STATUS: dict[type[SandboxError], int] = {
    UnknownLanguage: 400,
    CodeTooLarge: 413,
    StdinTooLarge: 413,
    InvalidTimeout: 422,
    InvalidFiles: 422,
    BackendUnavailable: 503,
    TooManyRuns: 429,
    ServerBusy: 503,
}
# Refusals that pass with time: the client is told when to try again.
_RETRY = (TooManyRuns, ServerBusy)


def from_sandbox(exc: SandboxError) -> ApiError:
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS)} if isinstance(exc, _RETRY) else None
    return ApiError(_SANDBOX_STATUS.get(type(exc), 500), exc.code, exc.message, headers)


def describe(exc: ValidationError) -> str:
    """One readable line for a pydantic error: which field, what is wrong."""
    parts = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"]) or "body"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)


def from_validation(exc: ValidationError) -> ApiError:
    errors = [{"loc": list(e["loc"]), "msg": e["msg"]} for e in exc.errors()]
    return ApiError(422, "invalid_request", describe(exc), errors=errors)
