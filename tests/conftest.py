"""Shared fixtures: the real Docker engine, a real PostgreSQL, and a check that no container
outlives the suite."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiodocker
import pytest

from sandbox.container import LABEL, OWNER_LABEL, new_owner_id
from sandbox.docker import DockerBackend
from server.config import Settings
from tests.postgres import PostgresServer
from tests.server import ServerProcess

# Every server and backend this suite starts names its containers with this prefix (servers
# inherit the environment), so the suite counts only its own: a `make run` on the same engine
# may hold containers of its own meanwhile.
SUITE = f"suite-{uuid.uuid4().hex[:8]}"
os.environ["EXECSTREAM_INSTANCE_PREFIX"] = SUITE


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings()


async def engine_runtimes() -> set[str]:
    async with aiodocker.Docker() as docker:
        return set((await docker.system.info()).get("Runtimes") or {})


@pytest.fixture(
    scope="session",
    params=[("cold", "runc"), ("warm", "runc"), ("cold", "runsc"), ("warm", "runsc")],
    ids=lambda param: "-".join(param),
)
async def backend(
    request: pytest.FixtureRequest, settings: Settings
) -> AsyncIterator[DockerBackend]:
    """The Docker backend with the warm pool off and on, under runc and under gVisor (runsc):
    behaviour must not differ, except where tests/test_runtime.py says it does."""
    mode, runtime = request.param
    if runtime == "runsc" and "runsc" not in await engine_runtimes():
        pytest.skip("the Docker engine has no runsc runtime (scripts/ensure-docker.sh adds it)")
    backend = DockerBackend(
        settings.limits,
        settings.image,
        pool_size=0 if mode == "cold" else 2,
        owner=new_owner_id(SUITE),
        runtime=runtime,
    )
    await backend.open()
    yield backend
    await backend.close()


async def containers_running(command: str, owner: str | None = None) -> list[str]:
    """Managed containers (of ``owner``, if named) with a process whose command line contains
    ``command``. Containers are asked at once, each for at most a few seconds: with a pool of
    every language warm, asking one after another took longer than the tests wait."""
    async with aiodocker.Docker() as docker:
        containers = [
            c
            for c in await docker.containers.list(filters={"label": [f"{LABEL}=true"]})
            if ours(c)
            and (owner is None or c._container.get("Labels", {}).get(OWNER_LABEL) == owner)
        ]
        matches = await asyncio.gather(*(runs_command(c, command) for c in containers))
    return [c.id for c, match in zip(containers, matches, strict=True) if match]


async def runs_command(container: aiodocker.containers.DockerContainer, command: str) -> bool:
    try:
        async with asyncio.timeout(5):
            lines = await command_lines(container)
    except (aiodocker.DockerError, TimeoutError):
        return False  # gone meanwhile, or too busy to answer: asked again by the caller
    return any(command in line for line in lines)


LIST_PROCESSES = (
    "import glob\n"
    "for path in glob.glob('/proc/[0-9]*/cmdline'):\n"
    "    try: print(open(path, 'rb').read().replace(b'\\0', b' ').decode())\n"
    "    except OSError: pass"
)


async def command_lines(container: aiodocker.containers.DockerContainer) -> list[str]:
    """The command lines of a container's processes, read from inside it: under gVisor,
    `docker top` shows whichever host processes have the sandbox's own pids."""
    execution = await container.exec(["python3", "-c", LIST_PROCESSES], user="10001:10001")
    output = b""
    async with execution.start(detach=False) as stream:
        while message := await stream.read_out():
            output += message.data if message.stream == 1 else b""
    return output.decode().splitlines()


async def wait_gone(container_id: str, seconds: float = 5.0) -> bool:
    """Whether the container disappears within ``seconds``."""
    deadline = asyncio.get_running_loop().time() + seconds
    while container_id in await managed_containers():
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


def ours(container: aiodocker.containers.DockerContainer) -> bool:
    return str(container._container.get("Labels", {}).get(OWNER_LABEL, "")).startswith(SUITE)


async def managed_containers(owners: set[str] | None = None) -> list[str]:
    """The managed containers this suite made (whatever else shares the engine), or only
    those of ``owners``: the suite's other servers refill their pools meanwhile."""
    async with aiodocker.Docker() as docker:
        containers = await docker.containers.list(all=True, filters={"label": [f"{LABEL}=true"]})
    return [
        c.id
        for c in containers
        if ours(c) and (owners is None or c._container.get("Labels", {}).get(OWNER_LABEL) in owners)
    ]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """The suite fails if any container we created is still there once it is over."""
    try:
        left = asyncio.run(managed_containers())
    except Exception as exc:  # no engine: the docker tests have failed loudly already
        print(f"\ncould not list containers after the suite: {exc}")
        return
    if left:
        print(f"\nFAILED: {len(left)} container(s) labelled {LABEL}=true remain: {left}")
        session.exitstatus = 1


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One PostgreSQL 15 server for the session, in a temporary folder, on loopback."""
    server = PostgresServer().start()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database of each kind: a SQLite file (its folder not made yet), and a fresh
    database on the session's PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'data' / 'execstream.db'}"
    postgres: PostgresServer = request.getfixturevalue("postgres")
    return postgres.new_database()


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One real server for the whole session (uvicorn in a subprocess, real engine, SQLite).

    It logs at ``info``, so every request's access line is formatted; the suite fails if its
    output holds a logging error or a traceback: nothing the tests do should crash anything.
    """
    # Without a reattach grace, a closed socket kills its run at once: the tests of that
    # behaviour run here; tests/test_reattach.py starts servers with a grace of their own.
    process = ServerProcess(
        tmp_path_factory.mktemp("server"),
        EXECSTREAM_LOG_LEVEL="info",
        EXECSTREAM_REATTACH_SECONDS="0",
    )
    yield process.start()
    process.stop()
    log = process.log.read_text()
    for sign in ("Logging error", "Traceback"):
        assert sign not in log, f"the shared server's log holds {sign!r}:\n{log[-5000:]}"


@pytest.fixture(scope="module")
def runc_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server under runc, for what gVisor does differently (docs/security.md): a fork bomb
    ends the whole sandbox, and CPU time counts time the host throttled the program."""
    process = ServerProcess(tmp_path_factory.mktemp("runc"), EXECSTREAM_RUNTIME="runc").start()
    yield process
    process.stop()


@pytest.fixture
def user(server: ServerProcess) -> tuple[str, str]:
    """A fresh account on the shared server: (username, token)."""
    return server.new_user()
