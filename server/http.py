"""Small HTTP helpers: typed request bodies in, JSON errors out."""

from __future__ import annotations

import json
import logging
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from server.errors import ApiError, from_validation

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)

MAX_BODY_BYTES = 512 * 1024


async def json_body(request: Request, model: type[M]) -> M:
    """The request's JSON body as ``model``, or a 4xx that says what is wrong."""
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        raise ApiError(413, "body_too_large", f"request body is limited to {MAX_BODY_BYTES} bytes")
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise ApiError(400, "invalid_json", f"request body is not valid JSON: {exc}") from None
    return validate(model, data)


def validate(model: type[M], data: Any) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise from_validation(exc) from None


async def api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    return JSONResponse(exc.body(), status_code=exc.status, headers=headers)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return JSONResponse(
        {"detail": exc.detail, "code": code}, status_code=exc.status_code, headers=exc.headers
    )


async def server_error(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse(
        {"detail": "internal server error; it has been logged", "code": "internal_error"},
        status_code=500,
    )


EXCEPTION_HANDLERS = {ApiError: api_error, HTTPException: http_error, Exception: server_error}
