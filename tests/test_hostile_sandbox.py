"""The sandbox against hostile programs and failures, end to end: a real server process, real
WebSocket clients, the real engine, and a server that dies with SIGKILL."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiodocker
import pytest

from sandbox.container import LABEL, OWNER_LABEL, WATCHDOG_GRACE
from sandbox.languages import sandboxes
from server.config import Settings
from tests.hanging_engine import HangingEngine
from tests.server import ServerProcess
from tests.test_ws import frames_until_exit, next_frame, open_socket, run

pytestmark = pytest.mark.docker

SLACK = 4.0  # for the engine to see an exit on a loaded machine; never part of a limit


async def containers_of(server_label: str) -> list[dict]:
    """The state of every container a server process made (running or not), but those
    removed between the listing and their reading (the server's own image check)."""
    async with aiodocker.Docker() as docker:
        found = await docker.containers.list(
            all=True, filters={"label": [f"{LABEL}=true", f"{OWNER_LABEL}={server_label}"]}
        )
        states = []
        for container in found:
            try:
                states.append((await container.show())["State"] | {"Id": container.id})
            except aiodocker.DockerError as exc:
                if exc.status != 404:
                    raise
        return states


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


class Disturbed(Exception):
    """The engine was asked to kill one of the containers: not by a dead server, so by another
    server's sweep of orphans on this shared engine. The scenario must be run again."""


async def deaths(server: ServerProcess, seconds: float) -> dict[str, tuple[float, int]]:
    """SIGKILL ``server``, then wait until each of its running containers dies by itself:
    {container id: (seconds after the kill, exit code)}, from the engine's own events."""
    running = [s["Id"] for s in await containers_of(server.owner) if s["Running"]]
    async with aiodocker.Docker() as docker:
        # `since` replays what happened from a second ago on: nothing falls between the two.
        events = docker.events.subscribe(
            since=str(int(time.time()) - 1), filters=json.dumps({"container": running})
        )
        try:
            server.stop(signal.SIGKILL)
            killed_at = time.monotonic()
            died: dict[str, tuple[float, int]] = {}
            async with asyncio.timeout(seconds):
                while set(died) != set(running):
                    event = await events.get()
                    if event["Action"] == "kill":
                        raise Disturbed(event)
                    if event["Action"] == "die":
                        code = int(event["Actor"]["Attributes"]["exitCode"])
                        died[event["id"]] = (time.monotonic() - killed_at, code)
            return died
        finally:
            await docker.events.stop()


async def test_a_program_ends_at_its_wall_time_when_its_server_is_killed(
    tmp_path: Path, killed: list[str]
) -> None:
    for _ in range(3):
        server = ServerProcess(tmp_path, EXECSTREAM_POOL_SIZE="0").start()
        killed.append(server.owner)
        try:
            _, token = server.new_user()
            async with await open_socket(server, token) as ws:
                await run(ws, "print('spinning', flush=True)\nwhile True: pass", timeout=3)
                assert (await next_frame(ws))["type"] == "started"
                seen = ""
                while seen != "spinning\n":  # the program runs: its deadline is armed
                    seen += (await next_frame(ws))["data"]
                died = await deaths(server, 3 + WATCHDOG_GRACE + SLACK)
            break
        except Disturbed:
            continue
        finally:
            server.stop(signal.SIGKILL)
    else:
        pytest.fail("another server on this engine killed the containers, three times over")
    [(after_kill, exit_code)] = died.values()
    assert exit_code == 128 + signal.SIGKILL  # the watchdog's kill, nobody else's
    assert after_kill >= 3 - 0.5  # it had its wall time (the deadline counts from its start)


async def test_warm_containers_end_when_their_server_is_killed(
    tmp_path: Path, killed: list[str]
) -> None:
    for _ in range(3):
        server = ServerProcess(tmp_path, EXECSTREAM_POOL_SIZE="1").start()
        killed.append(server.owner)
        try:
            # One waiting container of every kind the server keeps.
            kinds = len(sandboxes(Settings().python_preload))
            async with asyncio.timeout(60):
                while sum(s["Running"] for s in await containers_of(server.owner)) < kinds:
                    await asyncio.sleep(0.1)
            # Their stdin closes with the server's connection: the launchers end, so do they
            # (a launcher preloading matplotlib first finishes its import: seconds, loaded).
            died = await deaths(server, SLACK + 30)
            break
        except Disturbed:
            continue
        finally:
            server.stop(signal.SIGKILL)
    else:
        pytest.fail("another server on this engine killed the containers, three times over")
    # Each launcher ended on its own when its stdin closed ("stdin closed before the program":
    # 1, or 255 for PHP's fatal error), none by the watchdog's kill.
    codes = [code for _, code in died.values()]
    assert len(codes) == kinds and set(codes) <= {1, 255}, codes


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
