"""The few REST calls a client needs around the socket: accounts and the language list."""

from __future__ import annotations

from typing import Any

import httpx

from client.errors import ApiError, ConnectFailed, Unauthorized

_TIMEOUT = 30.0


async def register(base_url: str, username: str, password: str) -> dict[str, Any]:
    """Create an account; returns ``{"id", "username", "created_at"}``."""
    body = {"username": username, "password": password}
    response = await _request("POST", base_url, "/api/v1/auth/register", json=body)
    return dict(response.json())


async def login(base_url: str, username: str, password: str) -> str:
    """Log in with the OAuth2 password flow; returns the access token."""
    form = {"username": username, "password": password}
    response = await _request("POST", base_url, "/api/v1/auth/token", data=form)
    return str(response.json()["access_token"])


async def languages(base_url: str, token: str | None) -> list[dict[str, Any]]:
    """The server's languages: ``{"id", "name", "version", "extension", "example"}`` each."""
    response = await _request("GET", base_url, "/api/v1/code/languages", token=token)
    return list(response.json())


async def _request(
    method: str,
    base_url: str,
    path: str,
    *,
    token: str | None = None,
    json: Any = None,
    data: dict[str, str] | None = None,
) -> httpx.Response:
    url = base_url.rstrip("/") + path
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        async with httpx.AsyncClient(timeout=_TIMEOUT) as http:
            response = await http.request(method, url, headers=headers, json=json, data=data)
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        raise ConnectFailed(f"cannot reach {base_url}: {str(exc) or type(exc).__name__}") from exc
    if response.is_success:
        return response
    raise _error(response)


def _error(response: httpx.Response) -> ApiError:
    """Our errors are ``{"detail", "code"}``; anything else (a proxy's page, say) keeps its text."""
    try:
        body = response.json()
        detail, code = str(body["detail"]), str(body["code"])
    except (ValueError, KeyError, TypeError):
        detail, code = response.text[:200] or response.reason_phrase, f"http_{response.status_code}"
    error = Unauthorized if response.status_code == 401 else ApiError
    return error(response.status_code, code, detail)
