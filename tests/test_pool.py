"""The warm pool on the real engine: one container per run, refilled, cleaned up."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path

import aiodocker
import pytest

from sandbox import LANGUAGES, BackendUnavailable, RunRequest, Status
from sandbox.container import LABEL, OWNER_LABEL, new_owner_id
from sandbox.docker import DockerBackend
from sandbox.languages import Language, sandboxes
from server.config import Settings
from tests.conftest import SUITE, engine_runtimes, managed_containers, wait_gone
from tests.hanging_engine import HangingEngine
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


async def filled(backend: DockerBackend, kinds: Sequence[Language] | None = None) -> None:
    async with asyncio.timeout(30):
        while any(backend.pool.idle(k) < backend.pool.target(k) for k in kinds or sandboxes()):
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
    for container_id in ids:  # each goes after the remover's pause
        assert await wait_gone(container_id, 20)


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
    for _, process in list(warm.pool._lanes[python.sandbox].idle):
        await process.container.kill()  # type: ignore[attr-defined]
    await asyncio.sleep(0.3)
    run = await warm.start(RunRequest("python", "print('fine')"))
    done = await collect(run)
    assert done.stdout == b"fine\n" and done.result.status is Status.SUCCESS


async def test_close_removes_every_idle_container(settings: Settings) -> None:
    backend = DockerBackend(settings.limits, settings.image, pool_size=2, owner=new_owner_id(SUITE))
    await backend.open()
    await filled(backend)
    idle = [p.id for lane in backend.pool._lanes.values() for _, p in lane.idle]  # type: ignore[attr-defined]
    # Two for each kind of container: Python, Node.js, compiled programs' runs (Java's with
    # its own limits) and their compile containers.
    assert len(idle) == 2 * len(sandboxes())
    await backend.close()
    assert not set(idle) & set(await managed_containers())


async def test_remove_owned_by_removes_only_the_given_owners_containers(
    settings: Settings,
) -> None:
    dead, alive = new_owner_id(SUITE), new_owner_id(SUITE)
    async with aiodocker.Docker() as docker:
        made = {
            owner: await docker.containers.create(
                config={
                    "Image": settings.image,
                    "Cmd": ["sleep", "60"],
                    "Labels": {LABEL: "true", OWNER_LABEL: owner},
                }
            )
            for owner in (dead, alive)
        }
    backend = DockerBackend(settings.limits, settings.image, pool_size=0, owner=new_owner_id(SUITE))
    await backend.open()
    try:
        owners = await backend.owners()
        assert owners[dead] == 1 and owners[alive] == 1
        assert await backend.remove_owned_by([dead]) == 1
        left = set(await managed_containers())
        assert made[dead].id not in left and made[alive].id in left
    finally:
        await backend.remove_owned_by([alive])
        await backend.close()


async def test_closing_while_the_pool_fills_leaves_nothing_behind(settings: Settings) -> None:
    owners = set()
    for delay in (0.0, 0.02, 0.05, 0.1, 0.2):
        owners.add(owner := new_owner_id(SUITE))
        backend = DockerBackend(settings.limits, settings.image, pool_size=2, owner=owner)
        await backend.open()
        await asyncio.sleep(delay)  # close in the middle of creating, attaching, starting
        await backend.close()
    assert await managed_containers(owners) == []


async def test_warm_containers_are_replaced_before_their_idle_time_ends(
    settings: Settings,
) -> None:
    # Idle for 6 s at most: the pool hands a container out for 5 s from its start, then
    # replaces it (starting one takes about 2 s with the CPU busy).
    backend = DockerBackend(
        settings.limits, settings.image, pool_size=1, owner=new_owner_id(SUITE), idle_seconds=6
    )
    python = LANGUAGES["python"]

    def idle_python() -> set[str]:
        return {p.id for _, p in backend.pool._lanes[python.sandbox].idle}  # type: ignore[attr-defined]

    await backend.open()
    try:
        await filled(backend)
        first = idle_python()
        await asyncio.sleep(6.5)
        for container_id in first:
            assert await wait_gone(container_id)
        await filled(backend, [python])
        assert first and not first & idle_python()
        run = await backend.start(RunRequest("python", "print('fresh')"))
        done = await collect(run)
        assert run.warm and done.stdout == b"fresh\n" and done.result.status is Status.SUCCESS
    finally:
        await backend.close()


# An engine that hangs ----------------------------------------------------------------------


@pytest.mark.parametrize("step", ["/containers/create", "/start"])
async def test_an_engine_that_hangs_gives_backend_unavailable_in_time(
    settings: Settings, tmp_path: Path, step: str
) -> None:
    with HangingEngine(tmp_path / "engine.sock") as engine:
        backend = DockerBackend(
            settings.limits,
            settings.image,
            engine.url,
            owner=new_owner_id(SUITE),
            engine_timeout=1.0,
        )
        await backend.open()
        try:
            engine.hang.add(step)
            started = time.monotonic()
            with pytest.raises(BackendUnavailable, match="did not answer in time"):
                await backend.start(RunRequest("python", "print(1)"))
            assert time.monotonic() - started < 4
            assert engine.hung == 1
            assert not await owned_by(backend.owner)  # a started-to-be container is removed
            engine.hang.clear()
            run = await backend.start(RunRequest("python", "print('back')"))
            done = await collect(run)
            await run.close()  # its container is gone before the backend closes
            assert done.stdout == b"back\n"
        finally:
            await backend.close()
        assert not await owned_by(backend.owner)


async def test_a_removal_the_engine_refuses_is_retried_not_raised(settings: Settings) -> None:
    backend = DockerBackend(settings.limits, settings.image, owner=new_owner_id(SUITE))
    await backend.open()
    try:
        run = await backend.start(RunRequest("python", "import time\ntime.sleep(60)"))
        process = run._process  # type: ignore[attr-defined]
        refusals = 0
        delete = process.container.delete

        async def refuse_twice(**kwargs: object) -> None:
            nonlocal refusals
            if refusals < 6:  # remove_container tries three times per call
                refusals += 1
                raise aiodocker.DockerError(500, {"message": "engine says no"})
            await delete(**kwargs)

        process.container.delete = refuse_twice
        await run.close()  # no exception, though the container is still there
        assert await owned_by(backend.owner) == [process.id]
        async with asyncio.timeout(15):  # retried after 1 s, then 5 s
            while await owned_by(backend.owner):
                await asyncio.sleep(0.2)
    finally:
        await backend.close()


async def owned_by(owner: str) -> list[str]:
    async with aiodocker.Docker() as docker:
        containers = await docker.containers.list(
            all=True, filters={"label": [f"{LABEL}=true", f"{OWNER_LABEL}={owner}"]}
        )
        return [c.id for c in containers]


async def test_a_kill_the_engine_refuses_still_ends_the_run_and_its_container(
    settings: Settings,
) -> None:
    backend = DockerBackend(settings.limits, settings.image, owner=new_owner_id(SUITE))
    await backend.open()
    try:
        run = await backend.start(RunRequest("python", "import time\ntime.sleep(60)"))
        process = run._process  # type: ignore[attr-defined]

        async def refuse(**kwargs: object) -> None:
            raise aiodocker.DockerError(500, {"message": "engine says no"})

        process.container.kill = refuse
        async with asyncio.timeout(10):
            result = await run.close()  # no exception, and no wait for the wall time
        assert result.status is Status.KILLED  # removing it stopped it
        assert not await owned_by(backend.owner)
    finally:
        await backend.close()
