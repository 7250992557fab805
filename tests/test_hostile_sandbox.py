"""The sandbox against hostile programs and failures, end to end: a real server process, real
WebSocket clients, the real engine, and a server that dies with SIGKILL."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiodocker
import pytest

from sandbox.docker import LABEL, SERVER_LABEL, WATCHDOG_GRACE
from tests.hanging_engine import HangingEngine
from tests.server import ServerProcess
from tests.test_ws import frames_until_exit, next_frame, open_socket, run

pytestmark = pytest.mark.docker

SLACK = 4.0  # for the engine to see an exit on a loaded machine; never part of a limit


async def containers_of(server_label: str) -> list[dict]:
    """The state of every container a server process made (running or not)."""
    async with aiodocker.Docker() as docker:
        found = await docker.containers.list(
            all=True, filters={"label": [f"{LABEL}=true", f"{SERVER_LABEL}={server_label}"]}
        )
        return [(await c.show())["State"] | {"Id": c.id} for c in found]


async def remove_containers_of(server_label: str) -> None:
    """What a killed server left behind (its successor's sweep would; this test is its own)."""
    async with aiodocker.Docker() as docker:
        for state in await containers_of(server_label):
            await docker.containers.container(state["Id"]).delete(force=True)


@pytest.fixture
async def killed(tmp_path: Path) -> AsyncIterator[list[str]]:
    """Server labels whose containers the test leaves behind on purpose, removed after it."""
    labels: list[str] = []
    yield labels
    for label in labels:
        await remove_containers_of(label)


async def wait_all_stopped(server_label: str, seconds: float) -> list[dict]:
    async with asyncio.timeout(seconds):
        while True:
            states = await containers_of(server_label)
            if not any(s["Running"] for s in states):
                return states
            await asyncio.sleep(0.1)


async def test_a_program_ends_at_its_wall_time_when_its_server_is_killed(
    tmp_path: Path, killed: list[str]
) -> None:
    server = ServerProcess(tmp_path, EXECSTREAM_POOL_SIZE="0").start()
    killed.append(server.owner)
    try:
        _, token = server.new_user()
        async with await open_socket(server, token) as ws:
            await run(ws, "print('spinning', flush=True)\nwhile True: pass", timeout=3)
            assert (await next_frame(ws))["type"] == "started"
            assert (await next_frame(ws))["data"] == "spinning\n"
            started = time.monotonic()
            server.stop(signal.SIGKILL)
    finally:
        server.stop(signal.SIGKILL)
    [state] = await containers_of(killed[0])
    assert state["Running"]  # the server is gone, the program is not
    await wait_all_stopped(killed[0], 3 + WATCHDOG_GRACE + SLACK)
    assert time.monotonic() - started >= 3  # it had its wall time, no less
    [state] = await containers_of(killed[0])
    assert state["ExitCode"] == 128 + signal.SIGKILL


async def test_warm_containers_end_when_their_server_is_killed(
    tmp_path: Path, killed: list[str]
) -> None:
    server = ServerProcess(tmp_path, EXECSTREAM_POOL_SIZE="1").start()
    killed.append(server.owner)
    try:
        async with asyncio.timeout(30):  # one Python and one Node.js container, waiting
            while sum(s["Running"] for s in await containers_of(killed[0])) < 2:
                await asyncio.sleep(0.1)
    finally:
        server.stop(signal.SIGKILL)
    # Their stdin closes with the server's connection: the launchers end, and so do they.
    states = await wait_all_stopped(killed[0], SLACK)
    assert len(states) == 2
    assert all(state["ExitCode"] == 1 for state in states)


async def test_the_output_cap_never_splits_a_character(server: ServerProcess, user) -> None:
    # Characters of 2, 3 and 4 bytes, written in pieces of 7 bytes that split them.
    source = (
        "import os\n"
        "data = ('é€😀' * 1000).encode()\n"
        "while True:\n"
        "    for i in range(0, len(data), 7):\n"
        "        os.write(1, data[i : i + 7])\n"
    )
    async with await open_socket(server, user[1]) as ws:
        await run(ws, source)
        frames = await frames_until_exit(ws)
    text = "".join(f["data"] for f in frames if f["type"] == "output")
    assert frames[-1]["status"] == "output_limit"
    assert "\ufffd" not in text
    assert 10_240 - 3 <= len(text.encode()) <= 10_240


async def test_an_engine_that_hangs_gives_backend_unavailable(tmp_path: Path) -> None:
    with HangingEngine(tmp_path / "engine.sock") as engine:
        server = ServerProcess(
            tmp_path,
            EXECSTREAM_DOCKER_URL=engine.url,
            EXECSTREAM_ENGINE_TIMEOUT="1",
            EXECSTREAM_POOL_SIZE="0",
        ).start()
        try:
            _, token = server.new_user()
            async with await open_socket(server, token) as ws:
                engine.hang.add("/containers/create")
                started = time.monotonic()
                await run(ws, "print('never')")
                frame = await next_frame(ws)
                assert frame["type"] == "error" and frame["code"] == "backend_unavailable"
                assert time.monotonic() - started < 4
                engine.hang.clear()
                await run(ws, "print('back')")
                frames = await frames_until_exit(ws)
            assert "".join(f["data"] for f in frames if f["type"] == "output") == "back\n"
            assert frames[-1]["status"] == "success"
        finally:
            server.stop()
