"""Admins end to end: the role, who may use the admin endpoints, statistics and /metrics."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from prometheus_client import generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.authentication import AuthCredentials, AuthenticationBackend, SimpleUser
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import HTTPConnection

from sandbox import LANGUAGES, Language
from server import admin
from server.config import Settings
from server.http import EXCEPTION_HANDLERS
from server.metrics import Metrics
from tests.server import PASSWORD, ServerProcess
from tests.test_pool_demand import running, until

pytestmark = pytest.mark.docker


def create_admin(server: ServerProcess, name: str) -> str:
    """``execstream users create --admin``, then sign in; the admin's token."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "server.cli",
            "users",
            "create",
            "--admin",
            name,
            "--password-stdin",
        ],
        input=f"{PASSWORD}\n".encode(),
        env=server.env,
        check=True,
        capture_output=True,
    )
    response = httpx.post(
        f"{server.url}/api/v1/auth/token", data={"username": name, "password": PASSWORD}
    )
    response.raise_for_status()
    return str(response.json()["access_token"])


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server of its own, so its statistics and counters hold only this module's runs."""
    process = ServerProcess(tmp_path_factory.mktemp("admin"))
    yield process.start()
    process.stop()


@pytest.fixture(scope="module")
def tokens(fresh: ServerProcess) -> dict[str, str]:
    return {"admin": create_admin(fresh, "teacher"), "user": fresh.new_user()[1]}


def get(server: ServerProcess, path: str, token: str | None = None, **kw) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.get(f"{server.url}{path}", headers=headers, timeout=30, **kw)


def post(server: ServerProcess, path: str, token: str | None, body: object) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.post(f"{server.url}{path}", json=body, headers=headers, timeout=60)


def test_me_names_the_role(fresh: ServerProcess, tokens: dict[str, str]) -> None:
    assert get(fresh, "/api/v1/auth/me", tokens["admin"]).json()["role"] == "admin"
    assert get(fresh, "/api/v1/auth/me", tokens["user"]).json()["role"] == "user"


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/api/v1/admin/stats"), ("POST", "/api/v1/admin/warm"), ("GET", "/metrics")],
)
def test_admin_endpoints_refuse_everyone_else(
    fresh: ServerProcess, tokens: dict[str, str], method: str, path: str
) -> None:
    body = {"language": "python", "count": 1, "minutes": 1}
    call = (
        (lambda t: get(fresh, path, t))
        if method == "GET"
        else (lambda t: post(fresh, path, t, body))
    )
    anonymous = call(None)
    assert anonymous.status_code == 401 and anonymous.json()["code"] == "not_authenticated"
    assert call("not-a-token").json()["code"] == "invalid_token"
    refused = call(tokens["user"])
    assert refused.status_code == 403 and refused.json()["code"] == "admin_required"


@pytest.mark.parametrize(
    ("body", "status", "names"),
    [
        ({"language": "python", "count": 0, "minutes": 10}, 422, "count"),
        ({"language": "python", "count": 10_000, "minutes": 10}, 422, "count"),
        ({"language": "python", "count": 3, "minutes": 0}, 422, "minutes"),
        ({"language": "python", "count": 3, "minutes": 100_000}, 422, "minutes"),
        ({"language": "python", "count": 3}, 422, "minutes"),
        ({"language": "cobol", "count": 3, "minutes": 10}, 400, "cobol"),
        ([], 422, "body"),
    ],
)
def test_warm_says_what_is_wrong_with_a_request(
    fresh: ServerProcess, tokens: dict[str, str], body: object, status: int, names: str
) -> None:
    response = post(fresh, "/api/v1/admin/warm", tokens["admin"], body)
    assert response.status_code == status and names in response.json()["detail"]


def test_stats_and_metrics_count_the_runs_made(
    fresh: ServerProcess, tokens: dict[str, str]
) -> None:
    token = tokens["user"]
    programs = [("python", "print(1)"), ("python", "print(2)"), ("python", "1/0")]
    programs.append(("javascript", "console.log(3)"))
    for language, code in programs:
        response = post(fresh, "/api/v1/code/execute", token, {"language": language, "code": code})
        assert response.status_code == 200
    stats = get(fresh, "/api/v1/admin/stats", tokens["admin"]).json()
    counts = {(r["language"], r["status"]): r["count"] for r in stats["by_language_and_status"]}
    assert counts == {
        ("python", "success"): 2,
        ("python", "error"): 1,
        ("javascript", "success"): 1,
    }
    assert all(r["average_execution_time"] > 0 for r in stats["by_language_and_status"])
    today = datetime.now(UTC).date().isoformat()
    assert {(r["day"], r["language"]): r["count"] for r in stats["by_day"]} == {
        (today, "python"): 3,
        (today, "javascript"): 1,
    }

    families = scraped(fresh, tokens["admin"])
    runs = {
        (s.labels["language"], s.labels["status"]): s.value
        for s in families["execstream_runs"].samples
        if s.name == "execstream_runs_total"
    }
    assert runs == {k: float(v) for k, v in counts.items()}
    first_output = {
        s.labels["language"]: s.value
        for s in families["execstream_first_output_seconds"].samples
        if s.name.endswith("_count")
    }
    assert first_output == {"python": 3.0, "javascript": 1.0}
    assert families["execstream_queue_depth"].samples[0].value == 0
    waits = [
        s for s in families["execstream_queue_wait_seconds"].samples if s.name.endswith("_count")
    ]
    assert waits[0].value == 4
    assert "execstream_sessions_open" in families and "execstream_engine_errors" in families
    # The runs' containers are removed at the next lull in starts: none is left waiting.
    deadline = time.monotonic() + 20
    while (left := finishing(fresh, tokens["admin"])) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert left == 0


def scraped(server: ServerProcess, token: str) -> dict[str, Metric]:
    """The server's metrics, by family name."""
    text = get(server, "/metrics", token).text
    return {family.name: family for family in text_string_to_metric_families(text)}


def finishing(server: ServerProcess, token: str) -> float:
    return scraped(server, token)["execstream_containers_finishing"].samples[0].value


def test_stats_days_are_validated(fresh: ServerProcess, tokens: dict[str, str]) -> None:
    response = get(fresh, "/api/v1/admin/stats", tokens["admin"], params={"days": "0"})
    assert response.status_code == 422 and "days" in response.json()["detail"]


# The warm endpoint and the pool, without a server (the pool's ``reserve`` is its own). -------


class FakePool:
    def __init__(self) -> None:
        self.calls: list[tuple[Language, int, float]] = []

    def reserve(self, language: Language, count: int, seconds: float) -> int:
        self.calls.append((language, count, seconds))
        return min(count, 5)


class HeaderRole(AuthenticationBackend):
    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, SimpleUser]:
        role = conn.headers.get("x-role", "user")
        scopes = ["authenticated", "admin"] if role == "admin" else ["authenticated"]
        return AuthCredentials(scopes), SimpleUser(role)


async def test_warm_asks_the_pool_and_reports_what_it_granted() -> None:
    pool = FakePool()
    app = Starlette(
        routes=admin.routes(Settings(metrics="off")),
        middleware=[Middleware(AuthenticationMiddleware, backend=HeaderRole())],
        exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
    )
    app.state.services = SimpleNamespace(backend=SimpleNamespace(pool=pool))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        body = {"language": "typescript", "count": 8, "minutes": 45}
        assert (await client.post("/api/v1/admin/warm", json=body)).status_code == 403
        admin_role = {"x-role": "admin"}
        response = await client.post("/api/v1/admin/warm", json=body, headers=admin_role)
        assert response.status_code == 200
        assert response.json() | {"until": None} == {
            "language": "typescript",
            "requested": 8,
            "granted": 5,
            "until": None,
        }
        assert pool.calls == [(LANGUAGES["typescript"], 8, 45 * 60.0)]
        # EXECSTREAM_METRICS=off: no /metrics at all.
        assert (await client.get("/metrics")).status_code == 404


def test_pool_figures_are_read_from_the_pool_when_scraped() -> None:
    figures = {"python": {"size": 4, "idle": 3, "hits": 10, "misses": 2}}
    metrics = Metrics(queue_depth=lambda: 7, pool_stats=lambda: figures)
    first = scrape(metrics)
    figures["python"] = {"size": 6, "idle": 1, "hits": 15, "misses": 2}
    second = scrape(metrics)
    assert first["execstream_pool_idle"] == {("python",): 3.0}
    assert first["execstream_pool_hits_total"] == {("python",): 10.0}
    assert second["execstream_pool_size"] == {("python",): 6.0}
    assert second["execstream_pool_hits_total"] == {("python",): 15.0}
    assert second["execstream_pool_misses_total"] == {("python",): 2.0}
    assert second["execstream_queue_depth"] == {(): 7.0}


def scrape(metrics: Metrics) -> dict[str, dict[tuple[str, ...], float]]:
    text = generate_latest(metrics.registry).decode()
    found: dict[str, dict[tuple[str, ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, {})[tuple(sample.labels.values())] = sample.value
    return found


async def test_a_teacher_warms_containers_for_a_lesson_and_they_go_after(
    tmp_path: Path,
) -> None:
    """End to end: the extra containers appear on the engine, and leave when the time is up."""
    env = {"EXECSTREAM_POOL_MIN": "1", "EXECSTREAM_POOL_SHRINK_SECONDS": "1"}
    server = ServerProcess(tmp_path, **env).start()
    try:
        owner = server.owner
        admin_token = create_admin(server, "lesson")
        await until(lambda: _python_warm(owner, 1))
        body = {"language": "python", "count": 3, "minutes": 0.1}
        response = post(server, "/api/v1/admin/warm", admin_token, body)
        assert response.status_code == 200 and response.json()["granted"] == 3
        await until(lambda: _python_warm(owner, 4))
        await until(lambda: _python_warm(owner, 1), seconds=60)  # six seconds, then shrunk
    finally:
        server.stop()


async def _python_warm(owner: str, expected: int) -> bool:
    return len(await running(owner)) == expected
