"""The HTTP and WebSocket edge against an attacker, end to end on real server processes.

Odd parameters, oversized bodies, sign-in floods, foreign origins, socket hoarding, bad
settings, and what the logs and health endpoints give away.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.server import PASSWORD, ServerProcess

pytestmark = pytest.mark.docker

# Tight limits, so each is reached in a few requests; per-address limits stay loose here
# because this server's tests register users (the per-address tests have servers of their own).
EDGE = {
    "EXECSTREAM_LOG_LEVEL": "info",
    "EXECSTREAM_POOL_SIZE": "0",
    "EXECSTREAM_MAX_SOCKETS_PER_USER": "3",
    "EXECSTREAM_THROTTLE_PER_USERNAME": "3/minute",
    "EXECSTREAM_MAX_BODY_BYTES": "4096",
    "EXECSTREAM_MAX_FRAME_BYTES": "2048",
}


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    process = ServerProcess(tmp_path_factory.mktemp("edge"), **EDGE).start()
    yield process
    process.stop()


def api(server: ServerProcess, token: str | None = None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=server.url, headers=headers, timeout=60)


def audit_entries(server: ServerProcess, event: str) -> list[dict[str, Any]]:
    """The audit lines of ``event`` in the server's output: each a bare JSON object."""
    entries = []
    for line in server.log.read_text().splitlines():
        if line.startswith("{"):
            entry = json.loads(line)
            if entry.get("event") == event:
                entries.append(entry)
    return entries


async def open_socket(server: ServerProcess, token: str, **kwargs: Any) -> ClientConnection:
    return await connect(f"{server.ws_url}?token={token}", **kwargs)


async def run_to_exit(ws: ClientConnection, code: str) -> list[dict[str, Any]]:
    await ws.send(json.dumps({"type": "run", "language": "python", "code": code}))
    frames = []
    async with asyncio.timeout(40):
        while not frames or frames[-1]["type"] != "exit":
            frames.append(json.loads(await ws.recv()))
    return frames


# Parameters ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "parameter"),
    [
        ("/api/v1/code/history?offset=99999999999999999999999", "offset"),
        ("/api/v1/code/history?offset=-1", "offset"),
        ("/api/v1/code/history?limit=0", "limit"),
        ("/api/v1/code/history?limit=1e3", "limit"),
        ("/api/v1/code/history?cursor=99999999999999999999999", "cursor"),
        ("/api/v1/code/history?project_id=-99999999999999999999999", "project_id"),
        ("/api/v1/code/history?project_id=9223372036854775808", "project_id"),
        ("/api/v1/code/history?project_id=%00", "project_id"),
        ("/api/v1/code/history/%C2%B2", "execution_id"),
        ("/api/v1/code/history/-1", "execution_id"),
        ("/api/v1/code/history/0", "execution_id"),
        ("/api/v1/code/history/99999999999999999999999", "execution_id"),
        ("/api/v1/code/history/1.5", "execution_id"),
    ],
)
def test_odd_parameters_get_a_4xx_naming_the_parameter(
    server: ServerProcess, user, path: str, parameter: str
) -> None:
    with api(server, user[1]) as client:
        response = client.get(path)
        deleted = client.delete(path) if "?" not in path else None
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "invalid_request"
    assert parameter in response.json()["detail"]
    if deleted is not None:
        assert deleted.status_code == 422 and parameter in deleted.json()["detail"]


def test_odd_execute_fields_get_a_4xx_naming_the_field(server: ServerProcess, user) -> None:
    with api(server, user[1]) as client:
        for field, value in [("project_id", -(10**25)), ("project_id", 10**19)]:
            body = {"code": "print(1)", "language": "python", field: value}
            response = client.post("/api/v1/code/execute", json=body)
            assert response.status_code == 422 and field in response.json()["detail"]
        response = client.post(
            "/api/v1/code/execute",
            content=b'{"code": "print(1)", "language": "python", "timeout": 1e999}',
            headers={"Content-Type": "application/json"},
        )
        assert response.status_code == 422 and "timeout" in response.json()["detail"]


# Bodies ------------------------------------------------------------------------------------


def test_oversized_bodies_are_refused_with_413_naming_the_limit(edge: ServerProcess) -> None:
    _, token = edge.new_user()
    big = "x" * 5000
    with api(edge, token) as client:
        as_json = client.post("/api/v1/code/execute", json={"code": big, "language": "python"})
        as_form = client.post("/api/v1/auth/token", data={"username": "ada", "password": big})
        as_register = client.post("/api/v1/auth/register", json={"username": big})
        chunked = client.post(
            "/api/v1/code/execute",
            content=(b"x" * 1000 for _ in range(20)),  # a generator: chunked, no Content-Length
        )
        after = client.post("/api/v1/code/execute", json={"code": "print(2)", "language": "python"})
    for response in (as_json, as_form, as_register, chunked):
        assert response.status_code == 413, response.text
        assert response.json()["code"] == "body_too_large"
        assert "4096" in response.json()["detail"]
    assert "content-length" not in chunked.request.headers
    assert after.status_code == 200 and after.json()["output"] == "2\n"


def test_a_declared_oversized_body_is_refused_before_it_is_sent(edge: ServerProcess) -> None:
    with socket.create_connection(("127.0.0.1", edge.port), timeout=10) as sock:
        sock.sendall(
            b"POST /api/v1/auth/register HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nContent-Length: 100000000\r\n\r\n"
        )
        # Not one byte of the body is sent: the answer comes all the same, then the close.
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
        answer = answer.decode()
    assert answer.startswith("HTTP/1.1 413"), answer
    assert '"body_too_large"' in answer


# Sign-in throttling ------------------------------------------------------------------------


def test_guessing_one_users_password_is_throttled_with_retry_after(edge: ServerProcess) -> None:
    username, _ = edge.new_user()  # register and sign in: two of the three a minute
    with api(edge) as client:
        wrong = client.post("/api/v1/auth/token", data={"username": username, "password": "guess"})
        throttled = client.post(
            "/api/v1/auth/token", data={"username": username, "password": PASSWORD}
        )
        other, _ = edge.new_user()  # another user is not held back
    assert wrong.status_code == 401
    assert throttled.status_code == 429
    assert throttled.json()["code"] == "too_many_attempts"
    assert 1 <= int(throttled.headers["Retry-After"]) <= 60
    assert other
    entries = audit_entries(edge, "signin_failed")
    assert any(e["user"] == username and e["client"] == "127.0.0.1" for e in entries)
    throttles = audit_entries(edge, "signin_throttled")
    assert any(e["user"] == username and e["client"] == "127.0.0.1" for e in throttles)


@pytest.fixture(scope="module")
def crowded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server that believes no proxy, with a tight limit per address."""
    env = {"EXECSTREAM_POOL_SIZE": "0", "EXECSTREAM_THROTTLE_PER_ADDRESS": "4/minute"}
    process = ServerProcess(tmp_path_factory.mktemp("crowded"), **env).start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def proxied(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server behind a trusted proxy on 127.0.0.1, serving pages from another origin."""
    env = {
        "EXECSTREAM_POOL_SIZE": "0",
        "EXECSTREAM_THROTTLE_PER_ADDRESS": "4/minute",
        "EXECSTREAM_TRUSTED_PROXIES": "127.0.0.1",
        "EXECSTREAM_ALLOWED_ORIGINS": "https://school.example",
    }
    process = ServerProcess(tmp_path_factory.mktemp("proxied"), **env).start()
    yield process
    process.stop()


def sign_ins(server: ServerProcess, count: int, forwarded_for: str | None) -> list[int]:
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    with api(server) as client:
        return [
            client.post(
                "/api/v1/auth/token",
                data={"username": f"n{uuid.uuid4().hex[:8]}", "password": "x"},
                headers=headers,
            ).status_code
            for _ in range(count)
        ]


def test_an_address_is_throttled_and_forged_forwarding_does_not_help(
    crowded: ServerProcess,
) -> None:
    assert sign_ins(crowded, 4, None) == [401] * 4
    assert sign_ins(crowded, 2, "203.0.113.9") == [429, 429]
    throttles = audit_entries(crowded, "signin_throttled")
    assert throttles and all(e["client"] == "127.0.0.1" for e in throttles)


def test_behind_a_trusted_proxy_each_forwarded_client_is_counted_apart(
    proxied: ServerProcess,
) -> None:
    assert sign_ins(proxied, 4, "203.0.113.1") == [401] * 4
    assert sign_ins(proxied, 1, "203.0.113.1") == [429]
    assert sign_ins(proxied, 4, "203.0.113.2") == [401] * 4
    clients = {e["client"] for e in audit_entries(proxied, "signin_failed")}
    assert clients == {"203.0.113.1", "203.0.113.2"}


# WebSocket handshake -----------------------------------------------------------------------


async def test_a_foreign_origin_is_refused_at_the_handshake(edge: ServerProcess) -> None:
    username, token = edge.new_user()
    with pytest.raises(InvalidStatus) as refused:
        await open_socket(edge, token, origin="https://evil.example")
    assert refused.value.response.status_code == 403
    # The server's own page, and clients that send no Origin (the Python client), are served.
    for origin in (f"http://127.0.0.1:{edge.port}", None):
        async with await open_socket(edge, token, origin=origin) as ws:
            assert (await run_to_exit(ws, "print('ok')"))[-1]["type"] == "exit"
    refusals = audit_entries(edge, "origin_refused")
    assert any(
        e["user"] == username and e["origin"] == "https://evil.example" and e["client"]
        for e in refusals
    )


async def test_allowed_origins_replace_the_default(proxied: ServerProcess) -> None:
    _, token = proxied.new_user()
    for origin in ("https://evil.example", f"http://127.0.0.1:{proxied.port}"):
        with pytest.raises(InvalidStatus):
            await open_socket(proxied, token, origin=origin)
    async with await open_socket(proxied, token, origin="https://school.example"):
        pass


async def test_sockets_per_user_are_capped(edge: ServerProcess) -> None:
    username, token = edge.new_user()
    _, other = edge.new_user()
    sockets = [await open_socket(edge, token) for _ in range(3)]
    try:
        extra = await open_socket(edge, token)
        with pytest.raises(ConnectionClosed) as closed:
            async with asyncio.timeout(10):
                await extra.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
        assert "at most 3" in closed.value.rcvd.reason
        async with await open_socket(edge, other) as ws:  # others are not held back
            assert (await run_to_exit(ws, "print(1)"))[-1]["type"] == "exit"
        await sockets.pop().close()
        await asyncio.sleep(0.5)  # the server notices the close
        sockets.append(await open_socket(edge, token))
        assert (await run_to_exit(sockets[-1], "print(2)"))[-1]["type"] == "exit"
    finally:
        for ws in sockets:
            await ws.close()
    hits = audit_entries(edge, "socket_cap")
    assert any(e["user"] == username and e["client"] == "127.0.0.1" for e in hits)


async def test_the_frame_limit_is_one_setting_for_the_session_and_uvicorn(
    edge: ServerProcess,
) -> None:
    _, token = edge.new_user()
    async with await open_socket(edge, token) as ws:
        await ws.send(json.dumps({"type": "stdin", "data": "x" * 3000}))  # over 2048
        frame = json.loads(await ws.recv())
        assert frame["code"] == "frame_too_large" and "2048" in frame["message"]
        await ws.send("x" * 5000)  # over twice the limit: uvicorn closes the socket
        with pytest.raises(ConnectionClosed) as closed:
            async with asyncio.timeout(10):
                await ws.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009


async def test_the_handshake_needs_a_valid_token(edge: ServerProcess) -> None:
    for url in (edge.ws_url, f"{edge.ws_url}?token=forged"):
        with pytest.raises(InvalidStatus) as refused:
            await connect(url)
        assert refused.value.response.status_code == 403


# Settings ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "value", "allowed"),
    [
        ("EXECSTREAM_CPUS", "0", "0.01..256"),
        ("EXECSTREAM_MEMORY_BYTES", "0", "6291456.."),
        ("EXECSTREAM_PIDS", "0", "1..32768"),
        ("EXECSTREAM_TMP_BYTES", "0", "1048576.."),
        ("EXECSTREAM_MAX_FRAME_BYTES", "-1", "1024.."),
        ("EXECSTREAM_MAX_SOCKETS_PER_USER", "0", "1..10000"),
        ("EXECSTREAM_PORT", "70000", "1..65535"),
        ("EXECSTREAM_MAX_RUNS", "many", "1..10000"),
        ("EXECSTREAM_THROTTLE_PER_USERNAME", "lots", "10/minute"),
    ],
)
def test_a_bad_setting_stops_the_server_with_one_line(
    tmp_path: Path, variable: str, value: str, allowed: str
) -> None:
    server = ServerProcess(tmp_path, **{variable: value})
    done = subprocess.run(
        [sys.executable, "-m", "server.cli", "serve"],
        env=server.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert f"{variable}={value}" in lines[0] and allowed in lines[0]
    assert "Traceback" not in done.stderr
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{server.url}/healthz", timeout=1)


# Health, errors and logs -------------------------------------------------------------------


def test_health_and_readiness_show_no_urls_paths_or_errors(edge: ServerProcess) -> None:
    with api(edge) as client:
        alive = client.get("/healthz")
        ready = client.get("/readyz")
    assert alive.status_code == 200 and alive.json() == {"status": "alive"}
    assert ready.status_code == 200
    body = ready.json()
    assert body["status"] == "ready"
    assert body["engine"]["ok"] and body["database"]["ok"] and body["pool"]["ok"]
    assert body["engine"]["runtime"]
    for text in (alive.text, ready.text):
        assert "sqlite" not in text and str(edge.data_dir) not in text and "/" not in text


def test_not_ready_is_a_503_that_names_the_part_but_not_the_engines_error(tmp_path: Path) -> None:
    # More CPUs than the machine has: a valid setting that the engine refuses for every
    # container, so the warm pool never fills.
    server = ServerProcess(tmp_path, EXECSTREAM_CPUS="200")
    server.launch()
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                ready = httpx.get(f"{server.url}/readyz", timeout=2)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, server.log.read_text()
                time.sleep(0.2)
        time.sleep(1)  # the pool has tried and failed by now
        ready = httpx.get(f"{server.url}/readyz", timeout=10)
        alive = httpx.get(f"{server.url}/healthz", timeout=10)
    finally:
        server.stop()
    assert ready.status_code == 503
    body = ready.json()
    assert body["status"] == "unavailable"
    # Runs ask for 200 CPUs and fail; compile containers have a CPU share of their own
    # (capped at the engine's cores), so some warm ones may be there.
    assert body["pool"]["ok"] is False
    assert body["pool"]["failing"]  # names the runtimes whose warm sandboxes fail
    assert body["engine"]["ok"] and body["database"]["ok"]
    assert "cpu" not in ready.text.lower()
    assert alive.status_code == 200
    assert "CPU" in server.log.read_text()  # the engine's own words are in the log


def test_an_unexpected_error_is_a_500_with_a_request_id_and_details_only_in_the_log(
    tmp_path: Path,
) -> None:
    server = ServerProcess(tmp_path, EXECSTREAM_POOL_SIZE="0").start()
    try:
        _, token = server.new_user()
        # Pull the history table from under the running server: its queries now fail inside
        # the database driver, an error no handler expects.
        with sqlite3.connect(tmp_path / "execstream.db") as db:
            db.execute("ALTER TABLE code_executions RENAME TO gone")
        with api(server, token) as client:
            broken = client.get("/api/v1/code/history")
            me = client.get("/api/v1/auth/me")
    finally:
        server.stop()
    assert broken.status_code == 500, broken.text
    body = broken.json()
    assert body["code"] == "internal_error" and body["request_id"]
    assert set(body) == {"detail", "code", "request_id"}
    assert "code_executions" not in broken.text and "sqlite" not in broken.text.lower()
    assert me.status_code == 200  # the rest still works
    log = server.log.read_text()
    assert f"request {body['request_id']} failed: GET /api/v1/code/history" in log
    assert "no such table: code_executions" in log


async def test_the_log_is_clean_and_keeps_tokens_out(edge: ServerProcess) -> None:
    username, token = edge.new_user()
    with api(edge, token) as client:
        assert client.get("/api/v1/auth/me").json()["username"] == username
        assert client.get("/api/v1/code/history", params={"limit": 5}).status_code == 200
        assert client.get("/api/v1/code/languages").status_code == 200
        assert client.get("/nothing-here").status_code == 404
    async with await open_socket(edge, token) as ws:
        assert (await run_to_exit(ws, "print('log')"))[-1]["exit_code"] == 0
    await asyncio.sleep(0.2)  # the access line of the socket's end
    log = edge.log.read_text()
    assert '"GET /api/v1/auth/me HTTP/1.1" 200' in log  # access lines are there
    assert "WebSocket /api/v1/code/ws?token=[redacted]" in log
    assert token not in log
    assert "Logging error" not in log
    assert "Traceback" not in log
