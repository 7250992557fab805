"""Several Docker engines, end to end: the main engine and a second dockerd on this machine
(scripts/second-engine.sh: its own socket, data root, exec root, pid file; reached over TCP
with TLS client certificates). Runs spread over both; an engine that stops answering (its
dockerd SIGSTOPped) loses its runs with ``backend_unavailable`` while the other serves on;
once it answers again (SIGCONT) it takes runs again."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiodocker
import httpx
import pytest
from websockets.asyncio.client import ClientConnection

from sandbox.container import LABEL, OWNER_LABEL
from tests.conftest import SUITE
from tests.server import ServerProcess
from tests.test_ws import frames_until_exit, next_frame, open_socket, run

pytestmark = pytest.mark.docker

SCRIPT = Path(__file__).parent.parent / "scripts" / "second-engine.sh"
MAIN = "unix:///var/run/docker.sock"
# Each run holds its container until the test releases it (a line on stdin): a run that
# merely slept could end, and its container go, before a busy engine listed it.
HOSTNAME_THEN_WAIT = "import socket\nprint(socket.gethostname(), flush=True)\ninput()"


@dataclass
class SecondEngine:
    folder: Path
    url: str
    cert_path: str

    @property
    def socket(self) -> str:
        return f"unix://{self.folder}/d.sock"

    @property
    def pid(self) -> int:
        return int((self.folder / "dockerd.pid").read_text())


@pytest.fixture(scope="session")
def engine2(settings) -> Iterator[SecondEngine]:
    """The second engine, with the executor image loaded; stopped and removed at the end,
    after checking that the suite left no container on it."""
    folder = Path(os.environ.get("EXECSTREAM_TEST_ENGINE2_DIR", "/tmp/es-engine2"))
    port = os.environ.get("EXECSTREAM_TEST_ENGINE2_PORT", "23761")
    out = subprocess.run(
        [SCRIPT, "start", folder, port, settings.image],
        check=True,
        capture_output=True,
        text=True,
        timeout=400,
    ).stdout
    env = dict(line.split("=", 1) for line in out.split())
    engine = SecondEngine(folder, env["EXECSTREAM_ENGINE2"], env["DOCKER_CERT_PATH"])
    yield engine
    os.kill(engine.pid, signal.SIGCONT)  # a failed test may have left it stopped
    left = asyncio.run(suite_containers(engine.socket))
    if not os.environ.get("EXECSTREAM_TEST_KEEP_ENGINE2"):
        subprocess.run([SCRIPT, "stop", folder], check=True, timeout=120)
    assert not left, f"{len(left)} container(s) of the suite remain on the second engine"


async def suite_containers(url: str, owner: str = SUITE) -> dict[str, str]:
    """Container id → hostname-length id prefix of the suite's (or an owner's) containers."""
    async with aiodocker.Docker(url=url) as docker:
        containers = await docker.containers.list(all=True, filters={"label": [f"{LABEL}=true"]})
    return {
        c.id: c.id[:12]
        for c in containers
        if str(c._container.get("Labels", {}).get(OWNER_LABEL, "")).startswith(owner)
    }


@pytest.fixture
def two_engines(tmp_path: Path, engine2: SecondEngine) -> Iterator[ServerProcess]:
    server = ServerProcess(
        tmp_path,
        EXECSTREAM_DOCKER_URLS=f"{MAIN},{engine2.url}",
        DOCKER_TLS_VERIFY="1",
        DOCKER_CERT_PATH=engine2.cert_path,
        EXECSTREAM_POOL_MIN="1",
        EXECSTREAM_ENGINE_TIMEOUT="8",  # the main engine is shared, and busy
        EXECSTREAM_ENGINE_PROBE_SECONDS="0.5",
    )
    server.start()
    yield server
    server.stop()


async def engine_of(hostnames: list[str], engine2: SecondEngine, owner: str) -> list[int]:
    """For each container hostname, the index of the engine it runs on (0 main, 1 second)."""
    found = {}
    for index, url in enumerate((MAIN, engine2.socket)):
        for short in (await suite_containers(url, owner)).values():
            found[short] = index
    assert set(hostnames) <= set(found), f"hostnames {hostnames}, containers {found}"
    return [found[name] for name in hostnames]


async def start_waiters(
    server: ServerProcess, token: str, count: int
) -> tuple[list[ClientConnection], list[str]]:
    """``count`` sockets, each running a program that prints its hostname, then waits for a
    line of input."""
    sockets = [await open_socket(server, token) for _ in range(count)]
    for ws in sockets:
        await run(ws, HOSTNAME_THEN_WAIT)
    names = []
    for ws in sockets:
        frame = await next_frame(ws, timeout=30)
        assert frame["type"] == "started", frame
        names.append((await next_frame(ws, timeout=30))["data"].strip())
    return sockets, names


async def release(sockets: list[ClientConnection]) -> None:
    """Let every waiting program end: each must succeed."""
    for ws in sockets:
        await ws.send(json.dumps({"type": "stdin", "data": "\n"}))
    for ws in sockets:
        assert (await frames_until_exit(ws))[-1]["status"] == "success"


async def ready(server: ServerProcess) -> tuple[int, dict[str, Any]]:
    async with httpx.AsyncClient() as client:
        response = await client.get(f"{server.url}/readyz")
    return response.status_code, response.json()


async def wait_engine(server: ServerProcess, name: str, ok: bool, seconds: float = 30) -> dict:
    async with asyncio.timeout(seconds):
        while True:
            status, body = await ready(server)
            engines = {e["name"]: e["ok"] for e in body["engine"]["engines"]}
            if engines[name] is ok:
                return {"status": status, **body}
            await asyncio.sleep(0.2)


async def test_runs_are_spread_over_both_engines(
    two_engines: ServerProcess, engine2: SecondEngine
) -> None:
    token = two_engines.new_user()[1]
    sockets, names = await start_waiters(two_engines, token, 4)
    try:
        where = await engine_of(names, engine2, two_engines.owner)
        assert sorted(where) == [0, 0, 1, 1], f"placement: {where}"
        await release(sockets)
    finally:
        for ws in sockets:
            await ws.close()
    status, body = await ready(two_engines)
    assert status == 200
    runtime = body["engine"]["runtime"]
    assert body["engine"]["engines"] == [
        {"name": "engine-0", "ok": True, "runtime": runtime},
        {"name": "engine-1", "ok": True, "runtime": runtime},
    ]
    assert "tcp://" not in json.dumps(body) and "/tmp" not in json.dumps(body)
    # Each engine keeps its own warm pool: idle containers of ours wait on both.
    assert await suite_containers(MAIN, two_engines.owner)
    assert await suite_containers(engine2.socket, two_engines.owner)


async def test_an_engine_that_stops_answering_loses_its_runs_and_comes_back(
    two_engines: ServerProcess, engine2: SecondEngine
) -> None:
    token = two_engines.new_user()[1]
    sockets, names = await start_waiters(two_engines, token, 2)
    where = await engine_of(names, engine2, two_engines.owner)
    assert sorted(where) == [0, 1], f"placement: {where}"
    on_main, on_second = sockets[where.index(0)], sockets[where.index(1)]
    os.kill(engine2.pid, signal.SIGSTOP)
    try:
        # The second engine's run ends, and says why; the main engine's run goes on.
        lost = await frames_until_exit(on_second, timeout=30)
        assert lost[-1]["status"] == "backend_unavailable"
        body = await wait_engine(two_engines, "engine-1", ok=False)
        assert body["status"] == "ready"  # one engine is enough
        assert [e["ok"] for e in body["engine"]["engines"]] == [True, False]
        # New runs all go to the main engine, and succeed.
        more, more_names = await start_waiters(two_engines, token, 3)
        on_main_engine = (await suite_containers(MAIN, two_engines.owner)).values()
        assert set(more_names) <= set(on_main_engine)
        await release(more)
        for ws in more:
            await ws.close()
        await on_main.send(json.dumps({"type": "signal", "signal": "SIGINT"}))
        assert (await frames_until_exit(on_main))[-1]["status"] == "killed"
    finally:
        os.kill(engine2.pid, signal.SIGCONT)
        for ws in sockets:
            await ws.close()
    # Back: it takes runs again.
    await wait_engine(two_engines, "engine-1", ok=True)
    again, again_names = await start_waiters(two_engines, token, 2)
    assert sorted(await engine_of(again_names, engine2, two_engines.owner)) == [0, 1]
    await release(again)
    for ws in again:
        await ws.close()


async def test_without_its_client_certificate_the_tls_engine_refuses_the_server(
    tmp_path: Path, engine2: SecondEngine
) -> None:
    """The second engine takes only TLS with a client certificate it trusts: without
    ``DOCKER_TLS_VERIFY`` the server cannot reach it, and says which engine it is."""
    server = ServerProcess(
        tmp_path,
        EXECSTREAM_DOCKER_URLS=f"{MAIN},{engine2.url}",
        DOCKER_TLS_VERIFY="",
        DOCKER_CERT_PATH=engine2.cert_path,
    )
    with pytest.raises(RuntimeError) as failed:
        server.start(timeout=30)
    assert f"engine-1 ({engine2.url})" in str(failed.value)
    assert "engine-0" not in str(failed.value)
