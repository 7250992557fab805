"""Small HTTP helpers: typed request bodies in, JSON errors out."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from server.auth import NO_TOKEN, Refused
from server.errors import ApiError, from_validation

M = TypeVar("M", bound=BaseModel)

BEARER = {"WWW-Authenticate": "Bearer"}


async def json_body(request: Request, model: type[M]) -> M:
    """The request's JSON body as ``model``, or a 4xx that says what is wrong.

    Its size is bounded while it is read, by ``BodyLimit`` around the whole app.
    """
    body = await request.body()
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
    headers = (BEARER if exc.status == 401 else {}) | exc.headers
    return JSONResponse(exc.body(), status_code=exc.status, headers=headers)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 401:
        # Raised by ``@requires``: the authentication backend kept why the token was refused.
        user = request.scope.get("user")
        refused = user if isinstance(user, Refused) else NO_TOKEN
        return JSONResponse(
            {"detail": refused.detail, "code": refused.code}, status_code=401, headers=BEARER
        )
    if exc.status_code == 403:
        # Raised by ``@requires("admin")``, the one scope a signed-in user may lack.
        return JSONResponse(
            {"detail": "this needs an admin account", "code": "admin_required"}, status_code=403
        )
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return JSONResponse(
        {"detail": exc.detail, "code": code}, status_code=exc.status_code, headers=exc.headers
    )


# Anything else reaches ``RequestId``, the last resort, which answers 500 with the request id.
EXCEPTION_HANDLERS = {ApiError: api_error, HTTPException: http_error}
