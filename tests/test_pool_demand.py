"""The predictive warm pool end to end: a real server, real sockets, the engine's containers."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import aiodocker
import pytest

from client import ExecClient
from sandbox import LANGUAGES
from sandbox.container import IDLE_BYTES, LABEL, OWNER_LABEL, new_owner_id
from sandbox.docker import DockerBackend
from sandbox.languages import Language, preloading, sandboxes
from server.config import Settings
from tests.conftest import SUITE
from tests.server import ServerProcess

pytestmark = pytest.mark.docker


async def running(owner: str, language: str = "python") -> set[str]:
    """The running containers of ``owner`` in ``language``'s lane of the pool."""
    async with aiodocker.Docker() as docker:
        containers = await docker.containers.list(
            filters={
                "label": [
                    f"{LABEL}=true",
                    f"{OWNER_LABEL}={owner}",
                    f"execstream.lane={language}",
                ],
                "status": ["running"],
            }
        )
    return {c.id for c in containers}


async def until(check: Callable[[], object], seconds: float = 60) -> None:
    async with asyncio.timeout(seconds):
        while not await check():  # type: ignore[misc]
            await asyncio.sleep(0.2)


@contextlib.contextmanager
def started(tmp_path: Path, **env: str) -> Iterator[ServerProcess]:
    server = ServerProcess(tmp_path, **env).start()
    try:
        yield server
    finally:
        server.stop()


@contextlib.asynccontextmanager
async def sessions(
    server: ServerProcess, token: str, count: int, preload: bool = False
) -> AsyncIterator[list[ExecClient]]:
    """``count`` editor sessions that announced Python, open for the block."""
    async with contextlib.AsyncExitStack() as stack:
        clients = []
        for _ in range(count):
            client = await stack.enter_async_context(ExecClient(server.url, token))
            await client.prepare("python", preload)
            clients.append(client)
        yield clients


async def test_the_pool_grows_with_announced_sessions_and_shrinks_after(tmp_path: Path) -> None:
    env = {"EXECSTREAM_POOL_MIN": "1", "EXECSTREAM_POOL_SHRINK_SECONDS": "2"}
    with started(tmp_path, **env) as server:
        owner = server.owner
        token = server.new_user()[1]
        await until(lambda: _count(owner, 1))
        async with sessions(server, token, 6):
            await until(lambda: _count(owner, 6))
            await asyncio.sleep(3)  # past the shrink delay: still six, the sessions are open
            assert len(await running(owner)) == 6
        await until(lambda: _count(owner, 1))  # back to the minimum once they left


async def test_sessions_about_to_plot_get_preloaded_containers(tmp_path: Path) -> None:
    env = {"EXECSTREAM_POOL_MIN": "1", "EXECSTREAM_POOL_SHRINK_SECONDS": "2"}
    with started(tmp_path, **env) as server:
        owner = server.owner
        await until(lambda: _count(owner, 1, PRELOADED))
        async with sessions(server, server.new_user()[1], 4, preload=True) as clients:
            await until(lambda: _count(owner, 4, PRELOADED))
            # A student who ran plain code again wants a plain container, not a preloaded one.
            result = await clients[0].run("python", "print('no plot')")
            assert result.status == "success"
            await until(lambda: _count(owner, 3, PRELOADED))
        await until(lambda: _count(owner, 1, PRELOADED))


async def test_a_dead_idle_container_is_replaced_and_runs_stay_warm(tmp_path: Path) -> None:
    with started(tmp_path, EXECSTREAM_POOL_MIN="2") as server:
        owner = server.owner
        await until(lambda: _count(owner, 2))
        victim, survivor = sorted(await running(owner))
        async with aiodocker.Docker() as docker:
            await docker.containers.container(victim).kill()
        # Replaced without any run asking for it: a new container, the survivor kept.
        await until(lambda: _replaced(owner, victim, survivor))
        idle = await running(owner)
        async with ExecClient(server.url, server.new_user()[1]) as client:
            result = await client.run("python", "print('warm')")
        assert result.stdout == "warm\n" and result.status == "success"
        # The run took one of the idle containers (warm), which is gone with its run.
        await until(lambda: _took_one_of(owner, idle))


def minimums(count: int) -> int:
    """Bytes of ``count`` idle containers of every kind (each lane's minimum) under runc,
    each named as ``DockerBackend.idle_bytes`` names it: by its launcher's first language."""

    def named(kind: Language) -> str:
        return next(
            (lang.id for lang in LANGUAGES.values() if lang.launcher == kind.launcher), kind.id
        )

    return sum(count * IDLE_BYTES.get(("runc", named(kind)), 0) for kind in sandboxes())


async def test_the_memory_budget_caps_the_target(tmp_path: Path) -> None:
    # Under runc: room for every launcher's minimum of two, and two more Python containers.
    budget = minimums(2) + 2 * IDLE_BYTES[("runc", "python")]
    env = {
        "EXECSTREAM_RUNTIME": "runc",
        "EXECSTREAM_POOL_MEMORY_BYTES": str(budget),
        # Without matplotlib loaded ahead, a warm Python container costs IDLE_BYTES alone.
        "EXECSTREAM_PYTHON_PRELOAD": "0",
    }
    with started(tmp_path, **env) as server:
        owner = server.owner
        async with sessions(server, server.new_user()[1], 8):
            await until(lambda: _count(owner, 4))
            await asyncio.sleep(3)
            assert len(await running(owner)) == 4
            assert len(await running(owner, "javascript")) == 2


async def test_an_unknown_language_to_prepare_is_an_error_frame(
    server: ServerProcess, user
) -> None:
    async with ExecClient(server.url, user[1]) as client:
        await client.prepare("cobol")
        reply = await client.receive()
        assert reply.type == "error" and reply.code == "unknown_language"  # type: ignore[union-attr]
        assert "python" in reply.message  # type: ignore[union-attr]
        result = await client.run("python", "print(1)")  # the session goes on
        assert result.stdout == "1\n"


async def test_prepare_is_checked_like_every_frame(server: ServerProcess, user) -> None:
    async with ExecClient(server.url, user[1]) as client:
        await client.send_json({"type": "prepare"})
        reply = await client.receive()
        assert reply.type == "error" and reply.code == "invalid_message"  # type: ignore[union-attr]
        await client.send_json({"type": "prepare", "language": ["python"]})
        reply = await client.receive()
        assert reply.type == "error" and reply.code == "invalid_message"  # type: ignore[union-attr]


# reserve(): the backend on the real engine (its admin endpoint is the queue branch's) ------


async def test_reserve_adds_containers_within_the_budget_and_they_go_after(
    settings: Settings,
) -> None:
    budget = minimums(1) + 5 * IDLE_BYTES[("runc", "python")]
    backend = DockerBackend(
        settings.limits,
        settings.image,
        pool_size=1,
        pool_max=64,
        pool_memory_bytes=budget,
        pool_shrink_seconds=1,
        owner=new_owner_id(SUITE),
        runtime="runc",
    )
    await backend.open()
    try:
        python = LANGUAGES["python"]
        await until(lambda: _count(backend.owner, 1))
        # The minimums (one of each) are paid first; the rest of the budget is for the lesson.
        granted = backend.pool.reserve(python, 10, seconds=4)
        assert granted == (budget - minimums(1)) // IDLE_BYTES[("runc", "python")] == 5
        assert backend.pool.stats()["python"]["size"] == 1 + granted
        await until(lambda: _count(backend.owner, 1 + granted))
        await until(lambda: _count(backend.owner, 1), seconds=30)  # the lesson is over
        assert backend.pool.stats()["python"]["size"] == 1
    finally:
        await backend.close()


PRELOADED = preloading(LANGUAGES["python"]).lane


async def _count(owner: str, expected: int, lane: str = "python") -> bool:
    return len(await running(owner, lane)) == expected


async def _replaced(owner: str, victim: str, survivor: str) -> bool:
    now = await running(owner)
    return len(now) == 2 and victim not in now and survivor in now


async def _took_one_of(owner: str, idle: set[str]) -> bool:
    return len(idle - await running(owner)) == 1
