"""Who is asking: password hashes, signed tokens, and the check every protected door makes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import tempfile
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from starlette.authentication import (
    AuthCredentials,
    AuthenticationBackend,
    BaseUser,
    UnauthenticatedUser,
)
from starlette.requests import HTTPConnection

from server.config import Settings
from server.errors import ApiError
from storage import Database, User
from storage.models import ADMIN, USER

T = TypeVar("T")

ALGORITHM = "HS256"
SECRET_FILE = "jwt-secret"

# One lane: a hash keeps to one core, however many sign-ins come, so live sessions keep the
# others (Argon2's default of four lane threads fills a two-core server on its own). The
# attacker's cost per guess is the same: it is set by the memory and the passes, kept at
# their defaults (64 MiB, 3 passes). Hashes made before keep their own parameters.
_hasher = PasswordHasher(parallelism=1)
PASSWORD_NICENESS = 19

# Checked against when a username is unknown, so a sign-in takes as long either way.
# Its password is random and thrown away: nothing can match it.
DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(32))


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """Whether ``password`` matches; a wrong password or a damaged hash is ``False``."""
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def _yield_cpu() -> None:
    """Lower the calling thread's CPU priority (Linux niceness is per thread); Argon2's lane
    threads, started from it, inherit it."""
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), PASSWORD_NICENESS)


class Passwords:
    """Hashes and checks passwords in threads of their own, a few at a time, at low priority.

    Argon2 is slow on purpose (tens of milliseconds of CPU each); on the
    event loop a crowd of sign-ins would stall every live session's output. The semaphore
    bounds how many run at once (a waiting sign-in can still be cancelled), and the threads'
    low priority lets the event loop have the CPU first: a sign-in may wait, output may not.
    """

    def __init__(self, concurrency: int) -> None:
        self._slots = asyncio.Semaphore(concurrency)
        self._threads = ThreadPoolExecutor(
            concurrency, thread_name_prefix="passwords", initializer=_yield_cpu
        )

    async def _run(self, function: Callable[..., T], *args: str) -> T:
        async with self._slots:
            return await asyncio.get_running_loop().run_in_executor(self._threads, function, *args)

    async def hash(self, password: str) -> str:
        return await self._run(hash_password, password)

    async def verify(self, password_hash: str, password: str) -> bool:
        return await self._run(verify_password, password_hash, password)


class TokenError(Exception):
    """A token we refuse; ``code`` says why."""

    code = "invalid_token"


class TokenExpired(TokenError):
    code = "token_expired"


@dataclass(frozen=True)
class Account(BaseUser):
    """A signed-in user, as the server's handlers see one: always stored, so always an id."""

    id: int
    username: str
    created_at: datetime
    role: str = USER

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def display_name(self) -> str:
        return self.username

    @classmethod
    def of(cls, user: User) -> Account:
        if user.id is None:
            raise ValueError("a user that was never stored has no account")
        return cls(user.id, user.username, user.created_at, user.role)

    @property
    def scopes(self) -> list[str]:
        """What ``@requires`` checks: every account is authenticated, admins also admin."""
        return ["authenticated", ADMIN] if self.role == ADMIN else ["authenticated"]


@dataclass(frozen=True)
class Claims:
    user_id: int
    username: str


class Tokens:
    """Issues and checks signed, expiring access tokens (JWT, HS256)."""

    def __init__(self, secret: str, lifetime: timedelta) -> None:
        self.secret = secret
        self.lifetime = lifetime

    @classmethod
    def from_settings(cls, settings: Settings) -> Tokens:
        secret = settings.jwt_secret or load_secret(settings.data_dir)
        return cls(secret, timedelta(minutes=settings.token_minutes))

    def issue(self, user_id: int, username: str) -> tuple[str, int]:
        """A token for the user, and the seconds it stays valid."""
        now = datetime.now(UTC)
        claims = {"sub": str(user_id), "name": username, "iat": now, "exp": now + self.lifetime}
        token = jwt.encode(claims, self.secret, algorithm=ALGORITHM)
        return token, int(self.lifetime.total_seconds())

    def decode(self, token: str) -> Claims:
        """The token's claims; raises ``TokenExpired`` or ``TokenError``."""
        try:
            payload = jwt.decode(
                token,
                self.secret,
                algorithms=[ALGORITHM],
                options={"require": ["sub", "name", "iat", "exp"]},
            )
        except jwt.ExpiredSignatureError:
            raise TokenExpired("the token has expired: sign in again") from None
        except jwt.InvalidTokenError as exc:
            raise TokenError(f"the token is not valid: {exc}") from None
        # Signed by us, so only a bug could put anything else here; still, fail as a 401.
        try:
            return Claims(int(payload["sub"]), str(payload["name"]))
        except ValueError:
            raise TokenError("the token is not valid: its subject is not a user id") from None


def load_secret(data_dir: Path) -> str:
    """The signing secret kept in ``data_dir``, generated on first use."""
    path = data_dir / SECRET_FILE
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        _create_secret(path)
    secret = path.read_text().strip()
    if not secret:
        raise RuntimeError(f"{path} is empty: delete it to generate a new secret")
    return secret


def _create_secret(path: Path) -> None:
    # Written whole to a private temporary file (mkstemp makes it 0600), then linked into
    # place: the link refuses to replace a file, so when several workers start at once they
    # all end up with the one secret that won, never a half-written one.
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")
    try:
        with os.fdopen(fd, "w") as file:
            file.write(secrets.token_urlsafe(48) + "\n")
        os.link(temporary, path)
    except FileExistsError:
        pass
    finally:
        os.unlink(temporary)


class Refused(UnauthenticatedUser):
    """Who a request is when its token was refused: the 401 says why (``code``)."""

    def __init__(self, code: str, detail: str) -> None:
        self.code = code
        self.detail = detail


NO_TOKEN = Refused("not_authenticated", "send a token: Authorization: Bearer <token>")


def bearer_token(conn: HTTPConnection) -> str | None:
    """The token a request carries: ``Authorization: Bearer``, or ``?token=`` on a WebSocket."""
    scheme, _, token = conn.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    # Browsers cannot set headers on a WebSocket; the query string is all they have.
    if conn.scope["type"] == "websocket":
        return conn.query_params.get("token") or None
    return None


async def authenticate(conn: HTTPConnection, db: Database, tokens: Tokens) -> Account:
    """The user behind the request's token; raises ``ApiError(401)`` otherwise."""
    token = bearer_token(conn)
    if token is None:
        raise ApiError(401, NO_TOKEN.code, NO_TOKEN.detail)
    try:
        claims = tokens.decode(token)
    except TokenError as exc:
        raise ApiError(401, exc.code, str(exc)) from None
    user = await db.get_user(claims.user_id)
    if user is None:
        raise ApiError(401, "invalid_token", "the token's user does not exist")
    return Account.of(user)


class TokenBackend(AuthenticationBackend):
    """Starlette's authentication for every request; ``@requires`` guards the doors.

    It never fails a request itself: public routes stay public whatever token a client sends,
    and a refused token only matters (as a 401 naming its reason) where one is required.
    """

    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, BaseUser]:
        state = conn.app.state.services
        try:
            account = await authenticate(conn, state.db, state.tokens)
        except ApiError as exc:
            return AuthCredentials(), Refused(exc.code, exc.detail)
        return AuthCredentials(account.scopes), account
