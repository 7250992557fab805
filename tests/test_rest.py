"""The REST API and accounts end to end: httpx against a real server, real SQLite file."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import timedelta

import httpx
import pytest

from server.auth import Tokens, load_secret
from storage import Database
from tests.server import ServerProcess

pytestmark = pytest.mark.docker

EXECUTE_FIELDS = {
    "output",
    "error",
    "execution_time",
    "status",
    "exit_code",
    "signal",
    "execution_id",
    "output_truncated",
    "compile_output",
    "compile_time",
    "cpu_time",
    "memory_peak",
}
RECORD_FIELDS = {
    "id",
    "project_id",
    "language",
    "code",
    "stdin",
    "output",
    "error",
    "exit_code",
    "signal",
    "status",
    "execution_time",
    "output_truncated",
    "files",
    "compile_output",
    "compile_time",
    "cpu_time",
    "memory_peak",
    "tests_passed",
    "tests_total",
    "tests",
    "image_count",
    "created_at",
}


def api(server: ServerProcess, token: str | None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=server.url, headers=headers, timeout=60)


def execute(client: httpx.Client, code: str, language: str = "python", **fields) -> httpx.Response:
    return client.post("/api/v1/code/execute", json={"code": code, "language": language, **fields})


# Accounts ----------------------------------------------------------------------------------


def test_register_and_sign_in(server: ServerProcess) -> None:
    with api(server, None) as client:
        created = client.post(
            "/api/v1/auth/register", json={"username": "grace_h", "password": "cobol-forever"}
        )
        assert created.status_code == 201
        assert created.json()["username"] == "grace_h"
        assert set(created.json()) == {"id", "username", "role", "created_at"}
        assert created.json()["role"] == "user"
        again = client.post(
            "/api/v1/auth/register", json={"username": "grace_h", "password": "another-one"}
        )
        assert again.status_code == 409 and again.json()["code"] == "username_taken"
        token = client.post(
            "/api/v1/auth/token", data={"username": "grace_h", "password": "cobol-forever"}
        )
        assert token.status_code == 200
        assert token.json()["token_type"] == "bearer"
        assert token.json()["expires_in"] > 0
    with api(server, token.json()["access_token"]) as client:
        assert client.get("/api/v1/auth/me").json()["username"] == "grace_h"


@pytest.mark.parametrize(
    "body",
    [
        {"username": "ab", "password": "long enough"},
        {"username": "has space", "password": "long enough"},
        {"username": "fine_name", "password": "short"},
        {"username": "fine_name"},
        {"username": 12345, "password": "long enough"},
    ],
)
def test_bad_registrations_say_what_is_wrong(server: ServerProcess, body: dict) -> None:
    with api(server, None) as client:
        response = client.post("/api/v1/auth/register", json=body)
    assert response.status_code == 422
    assert response.json()["code"] == "invalid_request"
    assert response.json()["errors"][0]["loc"]


def test_wrong_password_and_unknown_user_look_the_same(server: ServerProcess, user) -> None:
    with api(server, None) as client:
        wrong = client.post("/api/v1/auth/token", data={"username": user[0], "password": "nope"})
        unknown = client.post("/api/v1/auth/token", data={"username": "nobody", "password": "x"})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()
    assert wrong.headers["WWW-Authenticate"] == "Bearer"


def test_code_endpoints_need_a_token(server: ServerProcess) -> None:
    with api(server, None) as client:
        for method, path in [
            ("POST", "/api/v1/code/execute"),
            ("GET", "/api/v1/code/history"),
            ("GET", "/api/v1/code/history/1"),
            ("DELETE", "/api/v1/code/history/1"),
            ("GET", "/api/v1/code/languages"),
        ]:
            response = client.request(method, path)
            assert response.status_code == 401, path
            assert response.json()["code"] == "not_authenticated"


def test_expired_tampered_and_orphan_tokens_are_refused(server: ServerProcess, user) -> None:
    secret = load_secret(server.data_dir)
    expired, _ = Tokens(secret, timedelta(seconds=-5)).issue(1, user[0])
    orphan, _ = Tokens(secret, timedelta(minutes=5)).issue(987654, "ghost")
    forged, _ = Tokens("not-the-secret-" * 4, timedelta(minutes=5)).issue(1, user[0])
    header, payload, signature = user[1].split(".")
    flipped = signature[:-2] + ("AA" if signature[-2:] != "AA" else "BB")
    cases = {
        expired: "token_expired",
        orphan: "invalid_token",
        forged: "invalid_token",
        f"{header}.{payload}.{flipped}": "invalid_token",
        "garbage": "invalid_token",
    }
    for token, code in cases.items():
        with api(server, token) as client:
            response = client.get("/api/v1/code/history")
        assert response.status_code == 401
        assert response.json()["code"] == code


# Execute -----------------------------------------------------------------------------------


def test_execute_response_field_by_field(server: ServerProcess, user) -> None:
    with api(server, user[1]) as client:
        response = execute(
            client,
            "import sys\nname = input()\nprint('Hello,', name)\nprint('warn', file=sys.stderr)",
            stdin="Ada\n",
            project_id=7,
        )
        assert response.status_code == 200
        body = response.json()
        assert set(body) == EXECUTE_FIELDS
        assert body["output"] == "Hello, Ada\n"
        assert body["error"] == "warn\n"
        assert body["status"] == "success"
        assert body["exit_code"] == 0
        assert body["signal"] is None
        assert body["output_truncated"] is False
        assert isinstance(body["execution_time"], float) and body["execution_time"] > 0
        assert 0 <= body["cpu_time"] < 5 and 0 <= body["memory_peak"] < 64 * 1024 * 1024
        record = client.get(f"/api/v1/code/history/{body['execution_id']}").json()
    assert set(record) == RECORD_FIELDS | {"images"}  # one run's record: with its plots
    assert (record["cpu_time"], record["memory_peak"]) == (body["cpu_time"], body["memory_peak"])
    assert record["project_id"] == 7
    assert record["stdin"] == "Ada\n"
    assert record["output"] == "Hello, Ada\n"
    assert record["error"] == "warn\n"
    assert record["language"] == "python"


def test_execute_statuses(server: ServerProcess, user) -> None:
    with api(server, user[1]) as client:
        quiet = execute(client, "pass").json()
        failing = execute(client, "raise SystemExit(4)").json()
        slow = execute(client, "while True: pass", timeout=1).json()
        flood = execute(client, "while True: print('z' * 50)").json()
    assert quiet["output"] is None and quiet["error"] is None
    assert (failing["status"], failing["exit_code"]) == ("error", 4)
    assert slow["status"] == "timeout"
    assert flood["status"] == "output_limit" and flood["output_truncated"] is True
    assert len(flood["output"]) == 10_240


def test_save_history_false_stores_nothing(server: ServerProcess, user) -> None:
    with api(server, user[1]) as client:
        body = execute(client, "print(1)", save_history=False).json()
        assert body["execution_id"] is None
        assert client.get("/api/v1/code/history").json() == []


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"code": "#" * 51_201, "language": "python"}, 413, "code_too_large"),
        ({"code": "x", "language": "cobol"}, 400, "unknown_language"),
        ({"code": 5, "language": "python"}, 422, "invalid_request"),
        ({"language": "python"}, 422, "invalid_request"),
        ({"code": "x", "language": "python", "timeout": 300}, 422, "invalid_timeout"),
        ({"code": "x", "language": "python", "project_id": "seven"}, 422, "invalid_request"),
        ({"code": "x", "language": "python", "stdin": "y" * 70_000}, 413, "stdin_too_large"),
    ],
)
def test_bad_execute_requests(server: ServerProcess, user, body, status, code) -> None:
    with api(server, user[1]) as client:
        response = client.post("/api/v1/code/execute", json=body)
    assert response.status_code == status
    assert response.json()["code"] == code
    assert response.json()["detail"]
    assert "Traceback" not in response.text


def test_unknown_language_names_the_supported_ones(server: ServerProcess, user) -> None:
    with api(server, user[1]) as client:
        detail = execute(client, "x", language="cobol").json()["detail"]
    assert all(name in detail for name in ("python", "javascript", "typescript"))


def test_broken_json_body(server: ServerProcess, user) -> None:
    with api(server, user[1]) as client:
        response = client.post(
            "/api/v1/code/execute", content=b"{nope", headers={"Content-Type": "application/json"}
        )
    assert response.status_code == 400 and response.json()["code"] == "invalid_json"


# History -----------------------------------------------------------------------------------


async def seed(server: ServerProcess, user_id: int, count: int, project_id: int | None) -> None:
    """Store runs straight into the server's database file, as finished runs would be."""
    db = Database(f"sqlite+aiosqlite:///{server.data_dir / 'execstream.db'}")
    await db.open()
    try:
        for n in range(count):
            await db.save_execution(
                user_id=user_id,
                project_id=project_id,
                language="python",
                code=f"print({n})",
                status="success",
                execution_time=0.01,
                output=f"{n}\n",
            )
    finally:
        await db.close()


def test_history_filter_limit_and_paging(server: ServerProcess, user) -> None:
    with api(server, user[1]) as client:
        me = client.get("/api/v1/auth/me").json()
        asyncio.run(seed(server, me["id"], 120, project_id=1))
        asyncio.run(seed(server, me["id"], 3, project_id=2))
        project_2 = client.get("/api/v1/code/history", params={"project_id": 2}).json()
        assert [r["code"] for r in project_2] == ["print(2)", "print(1)", "print(0)"]
        assert client.get("/api/v1/code/history", params={"limit": 500}).json().__len__() == 100
        first = client.get("/api/v1/code/history", params={"project_id": 1, "limit": 50})
        assert len(first.json()) == 50
        assert first.json()[0]["code"] == "print(119)"
        by_offset = client.get(
            "/api/v1/code/history", params={"project_id": 1, "limit": 50, "offset": 50}
        ).json()
        by_cursor = client.get(
            "/api/v1/code/history",
            params={"project_id": 1, "limit": 50, "cursor": first.headers["X-Next-Cursor"]},
        )
        assert by_cursor.json() == by_offset
        assert by_cursor.json()[0]["code"] == "print(69)"
        ids = [r["id"] for r in client.get("/api/v1/code/history").json()]
        assert ids == sorted(ids, reverse=True)
        bad = client.get("/api/v1/code/history", params={"limit": "many"})
        assert bad.status_code == 422


def test_users_cannot_see_or_delete_each_others_runs(server: ServerProcess) -> None:
    _, alice = server.new_user()
    _, bob = server.new_user()
    with api(server, alice) as client:
        run_id = execute(client, "print('mine')").json()["execution_id"]
    with api(server, bob) as client:
        seen = client.get(f"/api/v1/code/history/{run_id}")
        missing = client.get("/api/v1/code/history/99999999")
        assert seen.status_code == missing.status_code == 404
        assert seen.json() == missing.json()
        assert client.delete(f"/api/v1/code/history/{run_id}").status_code == 404
        assert client.get("/api/v1/code/history").json() == []
    with api(server, alice) as client:
        assert client.get(f"/api/v1/code/history/{run_id}").status_code == 200
        assert client.delete(f"/api/v1/code/history/{run_id}").status_code == 204
        assert client.get(f"/api/v1/code/history/{run_id}").status_code == 404
        assert client.delete(f"/api/v1/code/history/{run_id}").status_code == 404


async def test_a_websocket_run_lands_in_history(server: ServerProcess, user) -> None:
    from websockets.asyncio.client import connect

    async with connect(f"{server.ws_url}?token={user[1]}") as ws:
        await ws.send(
            json.dumps(
                {
                    "type": "run",
                    "language": "javascript",
                    "code": "console.log(6*7)",
                    "project_id": 3,
                }
            )
        )
        while (frame := json.loads(await ws.recv()))["type"] != "exit":
            pass
    async with httpx.AsyncClient(
        base_url=server.url, headers={"Authorization": f"Bearer {user[1]}"}
    ) as client:
        record = (await client.get(f"/api/v1/code/history/{frame['execution_id']}")).json()
    assert record["output"] == "42\n"
    assert record["stdin"] is None
    assert record["project_id"] == 3
    assert record["language"] == "javascript"
    assert record["status"] == frame["status"] == "success"


async def test_a_run_the_client_abandoned_is_stored_as_killed(server: ServerProcess, user) -> None:
    from websockets.asyncio.client import connect

    ws = await connect(f"{server.ws_url}?token={user[1]}")
    code = "print('partial', flush=True)\nimport time\ntime.sleep(60)"
    await ws.send(json.dumps({"type": "run", "language": "python", "code": code}))
    while json.loads(await ws.recv())["type"] != "output":
        pass
    await ws.close()
    with api(server, user[1]) as client:
        async with asyncio.timeout(10):
            # Stored as running from its start; then as it ended.
            while (records := client.get("/api/v1/code/history").json())[0]["status"] == "running":
                await asyncio.sleep(0.1)
    assert records[0]["status"] == "killed"
    assert records[0]["output"] == "partial\n"
    assert records[0]["code"] == code


async def test_input_typed_into_a_run_is_kept_in_history(server: ServerProcess, user) -> None:
    from client import ExecClient

    async with ExecClient(server.url, user[1]) as c:
        async for event in c.stream("python", "a = input('A? ')\nb = input('B? ')\nprint(a + b)"):
            if event.type == "started":
                await c.send_stdin("1\n")
                await c.send_stdin("2\n")
            if event.type == "exit":
                execution_id = event.execution_id
    with api(server, user[1]) as client:
        record = client.get(f"/api/v1/code/history/{execution_id}").json()
    assert record["stdin"] == "1\n2\n"
    assert record["output"] == "A? B? 12\n"


# Languages and health ----------------------------------------------------------------------


def test_languages(server: ServerProcess, user) -> None:
    with api(server, user[1]) as client:
        languages = {lang["id"]: lang for lang in client.get("/api/v1/code/languages").json()}
    assert set(languages) >= {
        "python",
        "javascript",
        "typescript",
        "ruby",
        "bash",
        "php",
        "lua",
        "c",
        "cpp",
        "java",
        "go",
        "rust",
    }
    # Versions as the image has them; each with the editor's mode.
    for id_, version, monaco in [
        ("python", "3.11.", "python"),
        ("javascript", "18.", "javascript"),
        ("ruby", "3.1.", "ruby"),
        ("bash", "5.2.", "shell"),
        ("php", "8.2.", "php"),
        ("lua", "5.4.", "lua"),
    ]:
        assert languages[id_]["version"].startswith(version)
        assert languages[id_]["monaco"] == monaco
    assert languages["typescript"]["extension"] == ".ts"
    assert all(lang["name"] and lang["example"] for lang in languages.values())
    assert all(
        lang["examples"]["hello"] and lang["examples"]["input"] for lang in languages.values()
    )
    # Which programs get a container that imported matplotlib ahead: the plot example does.
    plots = re.compile(languages["python"]["preload_for"], re.MULTILINE)
    assert plots.search(languages["python"]["examples"]["plot"])
    assert not plots.search(languages["python"]["examples"]["hello"])
    assert [id_ for id_, lang in languages.items() if lang["preload_for"]] == ["python"]


def test_health_and_unknown_routes(server: ServerProcess) -> None:
    with api(server, None) as client:
        health = client.get("/healthz")
        ready = client.get("/readyz")
        missing = client.get("/api/v1/nothing-here")
    assert health.status_code == 200
    assert health.json() == {"status": "alive"}
    assert ready.status_code == 200
    assert ready.json()["status"] == "ready"
    assert ready.json()["engine"]["backend"] == "docker"
    assert ready.json()["database"]["ok"] is True
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"


def test_the_page_is_served_with_a_strict_content_security_policy(server: ServerProcess) -> None:
    with api(server, None) as client:
        page = client.get("/projects/3/editor")
        vendor = client.get("/vendor/@xterm/xterm/lib/xterm.js")
    assert page.status_code == 200 and "<title>execstream</title>" in page.text
    policy = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "object-src 'none'" in policy
    assert vendor.status_code == 200
