"""The run service, owner of live runs, on the local backend and a real SQLite file: runs are
stored from their start, their output saved while they run, and shutdown stops them all."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sandbox import BackendUnavailable
from sandbox.local import LocalBackend
from server.config import Settings
from server.runs import Execution, RunService, RunSpec
from storage import Database

SLEEPER = "import time\nprint('up', flush=True)\ntime.sleep(60)"


@pytest.fixture
async def service(settings: Settings, tmp_path: Path) -> AsyncIterator[tuple[RunService, int]]:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'execstream.db'}")
    await db.open()
    backend = LocalBackend(settings.limits)
    await backend.open()
    runs = RunService(
        backend,
        db,
        instance_id="test-instance",
        stdin_bytes=settings.stdin_bytes,
        max_runs=8,
        max_runs_per_user=8,
        checkpoint_seconds=0.2,
    )
    runs.open()
    user = await db.create_user("ada", "h")
    assert user.id is not None
    yield runs, user.id
    await runs.shutdown()
    await backend.close()
    await db.close()


async def relay(runs: RunService, execution: Execution) -> None:
    """What a session does: read the output to its end, then finish."""
    async for _ in execution.output():
        pass
    await runs.finish(execution)


async def test_a_run_is_stored_at_start_and_its_output_saved_while_it_runs(
    service: tuple[RunService, int],
) -> None:
    runs, user_id = service
    execution = await runs.start(user_id, RunSpec("python", SLEEPER))
    # The run does not wait for its row; the row is there once recorded() answers.
    assert await execution.recorded() is not None
    assert execution.record_id is not None
    record = await runs.db.get_execution(user_id, execution.record_id)
    assert record is not None and (record.status, record.instance_id) == (
        "running",
        "test-instance",
    )
    task = asyncio.create_task(relay(runs, execution))
    async with asyncio.timeout(10):
        while (record := await runs.db.get_execution(user_id, execution.record_id)) is None or (
            record.output != "up\n"
        ):
            await asyncio.sleep(0.05)
    assert record.status == "running"
    await execution.run.kill()
    await task
    record = await runs.db.get_execution(user_id, execution.record_id)
    assert record is not None and (record.status, record.output) == ("killed", "up\n")


async def test_shutdown_stops_every_run_stores_each_and_refuses_new_ones(
    service: tuple[RunService, int],
) -> None:
    runs, user_id = service
    executions = [await runs.start(user_id, RunSpec("python", SLEEPER)) for _ in range(3)]
    relays = [asyncio.create_task(relay(runs, e)) for e in executions]
    # One kill that fails (an engine that errs) must not keep the others from stopping.
    broken = executions[0].run
    real_kill = broken.kill

    async def failing_kill() -> None:
        await real_kill()
        raise ConnectionError("the engine failed")

    broken.kill = failing_kill  # type: ignore[method-assign]
    async with asyncio.timeout(20):
        await runs.shutdown()
    assert runs.active == set()
    await asyncio.gather(*relays)
    for execution in executions:
        assert execution.record_id is not None
        record = await runs.db.get_execution(user_id, execution.record_id)
        assert record is not None and record.status == "killed"
    with pytest.raises(BackendUnavailable):
        await runs.start(user_id, RunSpec("python", "print(1)"))
