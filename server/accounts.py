"""Accounts: register, sign in for a token, and who am I."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field
from starlette.authentication import requires
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from server import auth
from server.audit import audit
from server.errors import ApiError
from server.http import json_body, validate
from server.services import services
from server.throttle import client_address
from storage import Database, UsernameTaken
from storage.models import USER

USERNAME_PATTERN = r"^[A-Za-z0-9_.\-]+$"


class Credentials(BaseModel):
    username: str = Field(min_length=3, max_length=32, pattern=USERNAME_PATTERN)
    password: str = Field(min_length=8, max_length=128)


class TokenForm(BaseModel):
    username: str = Field(min_length=1, max_length=128)
    password: str = Field(min_length=1, max_length=1024)


async def create_account(
    db: Database,
    credentials: Credentials,
    passwords: auth.Passwords | None = None,
    role: str = USER,
) -> auth.Account:
    """Create a user; raises ``ApiError(409)`` when the name is taken. Shared with the CLI
    (the only way to make an admin: sign-up makes plain users)."""
    password_hash = await (passwords or auth.Passwords(1)).hash(credentials.password)
    try:
        user = await db.create_user(credentials.username, password_hash, role)
    except UsernameTaken:
        raise ApiError(
            409, "username_taken", f"username {credentials.username!r} is taken"
        ) from None
    return auth.Account.of(user)


async def register(request: Request) -> Response:
    state = services(request)
    if not state.settings.allow_registration:
        raise ApiError(403, "registration_closed", "registration is switched off on this server")
    body = await json_body(request, Credentials)
    account = await create_account(state.db, body, state.passwords)
    return JSONResponse(user_json(account), status_code=201)


async def token(request: Request) -> Response:
    state = services(request)
    async with request.form() as form:
        body = validate(TokenForm, {k: v for k, v in form.items() if isinstance(v, str)})
    user = await state.db.get_user_by_name(body.username)
    # Verify against a dummy hash for unknown names too, so timing does not reveal them.
    stored = user.password_hash if user else auth.DUMMY_HASH
    if not await state.passwords.verify(stored, body.password) or user is None:
        audit("signin_failed", user=body.username, client=client_address(request.scope))
        raise ApiError(401, "invalid_credentials", "incorrect username or password")
    account = auth.Account.of(user)
    access_token, expires_in = state.tokens.issue(account.id, account.username)
    return JSONResponse(
        {"access_token": access_token, "token_type": "bearer", "expires_in": expires_in}
    )


@requires("authenticated", status_code=401)
async def me(request: Request) -> Response:
    return JSONResponse(user_json(request.user))


def user_json(user: auth.Account) -> dict[str, Any]:
    return {
        "id": user.id,
        "username": user.username,
        "role": user.role,
        "created_at": user.created_at.isoformat(),
    }


routes = [
    Route("/api/v1/auth/register", register, methods=["POST"]),
    Route("/api/v1/auth/token", token, methods=["POST"]),
    Route("/api/v1/auth/me", me, methods=["GET"]),
]
