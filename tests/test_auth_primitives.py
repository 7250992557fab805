"""Password hashes, signed tokens, the signing secret, and the check on each request."""

from __future__ import annotations

import stat
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import jwt
import pytest
from starlette.requests import HTTPConnection

from server import auth
from server.auth import TokenError, TokenExpired, Tokens
from server.config import Settings
from server.errors import ApiError
from storage import Database, User

SECRET = "test-secret-that-is-long-enough-for-hs256!"


def tokens(lifetime: timedelta = timedelta(minutes=5)) -> Tokens:
    return Tokens(SECRET, lifetime)


# Passwords


def test_hash_and_verify():
    stored = auth.hash_password("correct horse")
    assert stored.startswith("$argon2id$")
    assert "correct horse" not in stored
    assert auth.verify_password(stored, "correct horse") is True
    assert auth.verify_password(stored, "correct horsE") is False
    assert auth.verify_password(stored, "") is False


def test_the_same_password_hashes_differently_each_time():
    first, second = auth.hash_password("pw123456"), auth.hash_password("pw123456")
    assert first != second
    assert auth.verify_password(second, "pw123456")


def test_a_damaged_hash_verifies_as_false():
    assert auth.verify_password("not a hash", "pw123456") is False
    assert auth.verify_password("", "pw123456") is False


def test_nothing_matches_the_dummy_hash():
    assert auth.verify_password(auth.DUMMY_HASH, "") is False
    assert auth.verify_password(auth.DUMMY_HASH, "password") is False


# Tokens


def test_token_round_trip():
    token, expires_in = tokens().issue(42, "ada")
    assert expires_in == 300
    claims = tokens().decode(token)
    assert (claims.user_id, claims.username) == (42, "ada")

    payload = jwt.decode(token, SECRET, algorithms=["HS256"])
    assert payload["sub"] == "42"
    assert payload["name"] == "ada"
    assert payload["exp"] - payload["iat"] == 300


def test_an_expired_token_is_refused():
    token, _ = tokens(timedelta(seconds=-1)).issue(42, "ada")
    with pytest.raises(TokenExpired) as caught:
        tokens().decode(token)
    assert caught.value.code == "token_expired"


def flip(text: str, index: int) -> str:
    return text[:index] + ("A" if text[index] != "A" else "B") + text[index + 1 :]


def test_a_tampered_signature_is_refused():
    header, payload, signature = tokens().issue(42, "ada")[0].split(".")
    # A middle character: the last one of a base64 segment may carry only padding bits.
    forged = f"{header}.{payload}.{flip(signature, len(signature) // 2)}"
    with pytest.raises(TokenError) as caught:
        tokens().decode(forged)
    assert caught.value.code == "invalid_token"


def test_a_tampered_payload_is_refused():
    header, _, signature = tokens().issue(42, "ada")[0].split(".")
    # Someone else's id, under the original signature.
    _, payload, _ = jwt.encode(
        {"sub": "1", "name": "admin", "iat": 0, "exp": 2**40},
        "a-guess-at-the-secret-of-32-bytes!",
        algorithm="HS256",
    ).split(".")
    with pytest.raises(TokenError):
        tokens().decode(f"{header}.{payload}.{signature}")


def test_a_token_signed_with_another_secret_is_refused():
    token, _ = Tokens("another-secret-that-is-also-long-enough", timedelta(minutes=5)).issue(
        42, "ada"
    )
    with pytest.raises(TokenError):
        tokens().decode(token)


def test_an_unsigned_token_is_refused():
    token = jwt.encode({"sub": "42", "name": "ada", "iat": 0, "exp": 2**40}, None, algorithm="none")
    with pytest.raises(TokenError):
        tokens().decode(token)


@pytest.mark.parametrize("token", ["", "abc", "a.b.c", "Bearer x.y.z"])
def test_a_malformed_token_is_refused(token: str):
    with pytest.raises(TokenError) as caught:
        tokens().decode(token)
    assert caught.value.code == "invalid_token"


# The signing secret


def test_the_secret_is_generated_once_private_and_reused(tmp_path: Path):
    data_dir = tmp_path / "not" / "yet"
    settings = Settings(data_dir=data_dir, jwt_secret=None, token_minutes=60)

    first = Tokens.from_settings(settings)
    path = data_dir / "jwt-secret"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(first.secret) >= 64
    assert first.secret in path.read_text()
    assert [p.name for p in data_dir.iterdir()] == ["jwt-secret"]  # no temporary file left

    second = Tokens.from_settings(settings)
    assert second.secret == first.secret
    token, expires_in = first.issue(1, "ada")
    assert expires_in == 3600
    assert second.decode(token).user_id == 1


def test_workers_starting_together_share_one_secret(tmp_path: Path):
    with ThreadPoolExecutor(8) as pool:
        found = set(pool.map(auth.load_secret, [tmp_path / "data"] * 32))
    assert len(found) == 1
    assert [p.name for p in (tmp_path / "data").iterdir()] == ["jwt-secret"]


def test_secrets_differ_between_data_dirs(tmp_path: Path):
    one = Tokens.from_settings(Settings(data_dir=tmp_path / "one", jwt_secret=None))
    two = Tokens.from_settings(Settings(data_dir=tmp_path / "two", jwt_secret=None))
    assert one.secret != two.secret


def test_a_configured_secret_is_used_and_nothing_is_written(tmp_path: Path):
    configured = Tokens.from_settings(Settings(data_dir=tmp_path / "data", jwt_secret=SECRET))
    assert configured.secret == SECRET
    assert not (tmp_path / "data").exists()


def test_an_empty_secret_file_is_refused(tmp_path: Path):
    (tmp_path / "jwt-secret").write_text("\n")
    with pytest.raises(RuntimeError, match="empty"):
        Tokens.from_settings(Settings(data_dir=tmp_path, jwt_secret=None))


# Authenticating a request


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'auth.db'}")
    await database.open()
    yield database
    await database.close()


@pytest.fixture
async def ada(db: Database) -> User:
    return await db.create_user("ada", auth.hash_password("pw123456"))


def connection(
    kind: str = "http", authorization: str | None = None, query: str = ""
) -> HTTPConnection:
    headers = [] if authorization is None else [(b"authorization", authorization.encode())]
    return HTTPConnection(
        {"type": kind, "path": "/", "headers": headers, "query_string": query.encode()}
    )


def bearer(user: User) -> str:
    assert user.id is not None
    return "Bearer " + tokens().issue(user.id, user.username)[0]


async def refused(conn: HTTPConnection, db: Database) -> ApiError:
    with pytest.raises(ApiError) as caught:
        await auth.authenticate(conn, db, tokens())
    assert caught.value.status == 401
    return caught.value


async def test_a_bearer_token_authenticates(db: Database, ada: User):
    user = await auth.authenticate(connection(authorization=bearer(ada)), db, tokens())
    assert (user.id, user.username) == (ada.id, "ada")


async def test_the_scheme_is_case_insensitive(db: Database, ada: User):
    header = bearer(ada).replace("Bearer", "bearer")
    user = await auth.authenticate(connection(authorization=header), db, tokens())
    assert user.id == ada.id


async def test_no_token_is_not_authenticated(db: Database):
    assert (await refused(connection(), db)).code == "not_authenticated"
    assert (await refused(connection(authorization="Basic YWRhOnB3"), db)).code == (
        "not_authenticated"
    )
    assert (await refused(connection(authorization="Bearer "), db)).code == "not_authenticated"


async def test_a_bad_or_expired_token_is_refused(db: Database, ada: User):
    bad = connection(authorization=bearer(ada)[:-10])
    assert (await refused(bad, db)).code == "invalid_token"

    assert ada.id is not None
    old, _ = tokens(timedelta(seconds=-1)).issue(ada.id, "ada")
    assert (await refused(connection(authorization=f"Bearer {old}"), db)).code == "token_expired"


async def test_a_token_for_an_unknown_user_is_refused(db: Database, ada: User):
    assert ada.id is not None
    ghost, _ = tokens().issue(ada.id + 1, "ghost")
    conn = connection(authorization=f"Bearer {ghost}")
    assert (await refused(conn, db)).code == "invalid_token"


async def test_a_websocket_may_carry_its_token_in_the_query(db: Database, ada: User):
    token = bearer(ada).removeprefix("Bearer ")
    user = await auth.authenticate(connection("websocket", query=f"token={token}"), db, tokens())
    assert user.id == ada.id


async def test_plain_http_does_not_take_a_token_from_the_query(db: Database, ada: User):
    token = bearer(ada).removeprefix("Bearer ")
    conn = connection("http", query=f"token={token}")
    assert (await refused(conn, db)).code == "not_authenticated"
