"""The warm pool on the real engine: one container per run, refilled, cleaned up."""

from __future__ import annotations

import asyncio

import aiodocker
import pytest

from sandbox import LANGUAGES, RunRequest, Status
from sandbox.docker import LABEL, OWNER_LABEL, SERVER_LABEL, DockerBackend, new_owner_id
from server.config import Settings
from tests.conftest import SUITE, engine_runtimes, managed_containers, wait_gone
from tests.helpers import collect

pytestmark = pytest.mark.docker


@pytest.fixture(params=["runc", "runsc"])
async def warm(request: pytest.FixtureRequest, settings: Settings):
    if request.param == "runsc" and "runsc" not in await engine_runtimes():
        pytest.skip("the Docker engine has no runsc runtime (scripts/ensure-docker.sh adds it)")
    backend = DockerBackend(
        settings.limits,
        settings.image,
        pool_size=2,
        owner=new_owner_id(SUITE),
        runtime=request.param,
    )
    await backend.open()
    await filled(backend)
    yield backend
    await backend.close()


async def filled(backend: DockerBackend) -> None:
    async with asyncio.timeout(30):
        while any(backend.pool.idle(lang) < backend.pool.size for lang in LANGUAGES.values()):
            await asyncio.sleep(0.05)


async def test_runs_take_warm_containers_and_the_pool_refills(warm: DockerBackend) -> None:
    python = LANGUAGES["python"]
    run = await warm.start(RunRequest("python", "print('warm')"))
    assert run.warm is True
    assert warm.pool.idle(python) == 1
    done = await collect(run)
    assert done.stdout == b"warm\n" and done.result.status is Status.SUCCESS
    await filled(warm)
    assert warm.pool.idle(python) == 2


async def test_no_container_serves_two_runs(warm: DockerBackend) -> None:
    ids = []
    for n in range(5):
        run = await warm.start(RunRequest("javascript", f"console.log({n})"))
        ids.append(run._process.id)  # type: ignore[attr-defined]
        assert (await collect(run)).stdout == f"{n}\n".encode()
    assert len(set(ids)) == 5
    for container_id in ids:
        assert await wait_gone(container_id)


async def test_javascript_and_typescript_share_node_containers(warm: DockerBackend) -> None:
    run = await warm.start(RunRequest("typescript", "const n: number = 2;\nconsole.log(n * 21)"))
    assert run.warm is True
    assert (await collect(run)).stdout == b"42\n"


async def test_a_burst_larger_than_the_pool_is_never_refused(warm: DockerBackend) -> None:
    runs = await asyncio.gather(
        *(warm.start(RunRequest("python", f"print({n})")) for n in range(8))
    )
    assert sum(run.warm for run in runs) <= 2
    results = await asyncio.gather(*(collect(run) for run in runs))
    assert [r.stdout for r in results] == [f"{n}\n".encode() for n in range(8)]


async def test_wall_time_counts_from_when_the_program_arrived(warm: DockerBackend) -> None:
    await asyncio.sleep(2)  # the warm container has been waiting all this time
    run = await warm.start(RunRequest("python", "print(1)", timeout=1))
    done = await collect(run)
    assert run.warm and done.result.status is Status.SUCCESS
    assert done.result.execution_time < 1


async def test_a_warm_container_that_died_is_replaced_by_a_cold_one(warm: DockerBackend) -> None:
    python = LANGUAGES["python"]
    for process in list(warm.pool._idle[python.launcher]):
        await process.container.kill()  # type: ignore[attr-defined]
    await asyncio.sleep(0.3)
    run = await warm.start(RunRequest("python", "print('fine')"))
    done = await collect(run)
    assert done.stdout == b"fine\n" and done.result.status is Status.SUCCESS


async def test_close_removes_every_idle_container(settings: Settings) -> None:
    backend = DockerBackend(settings.limits, settings.image, pool_size=2, owner=new_owner_id(SUITE))
    await backend.open()
    await filled(backend)
    idle = [p.id for ps in backend.pool._idle.values() for p in ps]  # type: ignore[attr-defined]
    assert len(idle) == 4  # two for Python, two for Node.js
    await backend.close()
    assert not set(idle) & set(await managed_containers())


async def test_containers_of_a_dead_server_are_removed_at_start(settings: Settings) -> None:
    async with aiodocker.Docker() as docker:
        orphan = await docker.containers.create(
            config={
                "Image": settings.image,
                "Cmd": ["sleep", "60"],
                "Labels": {
                    LABEL: "true",
                    SERVER_LABEL: "some-host:999999",
                    OWNER_LABEL: new_owner_id(SUITE),
                },
            }
        )
    backend = DockerBackend(settings.limits, settings.image, pool_size=0, owner=new_owner_id(SUITE))
    await backend.open()
    await backend.close()
    assert orphan.id not in await managed_containers()


async def test_closing_while_the_pool_fills_leaves_nothing_behind(settings: Settings) -> None:
    before = set(await managed_containers())
    for delay in (0.0, 0.02, 0.05, 0.1, 0.2):
        backend = DockerBackend(
            settings.limits, settings.image, pool_size=2, owner=new_owner_id(SUITE)
        )
        await backend.open()
        await asyncio.sleep(delay)  # close in the middle of creating, attaching, starting
        await backend.close()
    assert set(await managed_containers()) <= before
