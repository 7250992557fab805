"""Background loops stop between two pieces of work, never inside one."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from server.periodic import Periodic


async def test_stop_lets_the_work_under_way_finish_and_ends_the_loop() -> None:
    done: list[str] = []

    async def loop(pause: Callable[[float], Awaitable[bool]]) -> None:
        while await pause(0.01):
            done.append("began")
            await asyncio.sleep(0.2)  # a database write, say
            done.append("finished")

    periodic = Periodic(loop)
    periodic.start("test")
    await asyncio.sleep(0.05)  # inside the write
    await periodic.stop()
    assert done == ["began", "finished"]


async def test_a_loop_that_does_not_stop_in_time_is_cancelled() -> None:
    cancelled = asyncio.Event()

    async def loop(pause: Callable[[float], Awaitable[bool]]) -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    periodic = Periodic(loop)
    periodic.start("test")
    await asyncio.sleep(0)
    await periodic.stop(grace=0.05)
    assert cancelled.is_set()
