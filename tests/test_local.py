"""The local development backend: plain subprocesses, chosen only on purpose, loudly."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sandbox import RunRequest, Status
from sandbox.local import LocalBackend
from server.config import Settings
from tests.helpers import collect, read_until
from tests.server import ServerProcess


@pytest.fixture
async def local(settings: Settings) -> AsyncIterator[LocalBackend]:
    backend = LocalBackend(settings.limits)
    await backend.open()
    yield backend
    await backend.close()


async def test_it_says_loudly_that_it_is_not_a_sandbox(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    backend = LocalBackend(settings.limits)
    with caplog.at_level(logging.WARNING):
        await backend.open()
    await backend.close()
    assert "NOT a sandbox" in caplog.text


async def test_the_same_launchers_run_programs(local: LocalBackend) -> None:
    python = await collect(await local.start(RunRequest("python", "print(input() * 2)", b"ab\n")))
    node = await collect(await local.start(RunRequest("javascript", "console.log(6 * 7)")))
    assert python.stdout == b"abab\n" and python.result.status is Status.SUCCESS
    assert node.stdout == b"42\n" and node.result.status is Status.SUCCESS


async def test_limits_and_signals_apply(local: LocalBackend) -> None:
    flood = await collect(await local.start(RunRequest("python", "while True: print('x')")))
    assert len(flood.stdout) == 10_240 and flood.result.status is Status.OUTPUT_LIMIT
    slow = await collect(await local.start(RunRequest("python", "while True: pass", timeout=1)))
    assert slow.result.status is Status.TIMEOUT
    run = await local.start(
        RunRequest("python", "import time\nprint('up', flush=True)\ntime.sleep(30)")
    )
    await read_until(run, b"up\n")
    await run.signal("SIGINT")
    stopped = await collect(run)
    assert stopped.result.status is Status.KILLED and stopped.result.signal == "SIGINT"


def test_without_docker_the_server_refuses_to_start_rather_than_fall_back(
    tmp_path: Path,
) -> None:
    server = ServerProcess(tmp_path, EXECSTREAM_DOCKER_URL="unix:///nonexistent/docker.sock")
    with pytest.raises(RuntimeError) as failed:
        server.start(timeout=30)
    assert "cannot reach the Docker engine" in str(failed.value)
    assert "NOT a sandbox" not in str(failed.value)
