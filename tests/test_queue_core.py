"""The run queue on its own (no server, no engine): slots, turns, positions, bounds."""

from __future__ import annotations

import asyncio

import pytest

from sandbox import TooManyRuns
from server.queue import RunQueue, ServerBusy


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


class Line:
    """Runs of several users against one queue, in the order they were granted."""

    def __init__(self, queue: RunQueue) -> None:
        self.queue = queue
        self.order: list[str] = []
        self.positions: dict[str, list[int]] = {}
        self.tasks: dict[str, asyncio.Task[float]] = {}

    def ask(self, name: str, user_id: int) -> None:
        async def notify(position: int) -> None:
            self.positions.setdefault(name, []).append(position)

        async def one() -> float:
            waited = await self.queue.acquire(user_id, notify)
            self.order.append(name)
            return waited

        self.tasks[name] = asyncio.create_task(one())


async def test_runs_start_at_once_while_there_are_slots() -> None:
    queue = RunQueue(max_runs=2, max_per_user=2, queue_max=10, queue_per_user=10)
    assert await queue.acquire(1) == 0.0
    assert await queue.acquire(2) == 0.0
    assert queue.running.total() == 2 and queue.depth == 0


async def test_a_newcomer_goes_before_a_user_who_already_runs() -> None:
    queue = RunQueue(max_runs=1, max_per_user=8, queue_max=10, queue_per_user=10)
    line = Line(queue)
    await queue.acquire(1)  # A's first run holds the only slot
    for n in range(2, 7):
        line.ask(f"a{n}", 1)
    await settle()
    line.ask("b1", 2)
    await settle()
    assert line.positions["b1"] == [1]
    for _ in range(6):
        queue.release(1 if not line.order or line.order[-1].startswith("a") else 2)
        await settle()
    assert line.order == ["b1", "a2", "a3", "a4", "a5", "a6"]


async def test_turns_alternate_between_users() -> None:
    queue = RunQueue(max_runs=1, max_per_user=8, queue_max=10, queue_per_user=10)
    line = Line(queue)
    await queue.acquire(3)
    for n in range(3):
        line.ask(f"a{n}", 1)
    for n in range(3):
        line.ask(f"b{n}", 2)
    await settle()
    owners = {"a": 1, "b": 2}
    queue.release(3)
    for _ in range(6):
        await settle()
        queue.release(owners[line.order[-1][0]])
    assert line.order == ["a0", "b0", "a1", "b1", "a2", "b2"]


async def test_positions_count_down_in_order() -> None:
    queue = RunQueue(max_runs=1, max_per_user=8, queue_max=10, queue_per_user=10)
    line = Line(queue)
    await queue.acquire(9)
    for n in range(3):
        line.ask(f"a{n}", 1)
    await settle()
    assert line.positions == {"a0": [1], "a1": [2], "a2": [3]}
    queue.release(9)
    await settle()
    assert line.positions["a1"] == [2, 1] and line.positions["a2"] == [3, 2]


async def test_a_run_that_gives_up_leaves_the_queue() -> None:
    queue = RunQueue(max_runs=1, max_per_user=8, queue_max=10, queue_per_user=10)
    line = Line(queue)
    await queue.acquire(9)
    line.ask("a", 1)
    line.ask("b", 2)
    await settle()
    line.tasks["a"].cancel()
    await settle()
    assert queue.depth == 1 and line.positions["b"] == [2, 1]
    queue.release(9)
    await settle()
    assert line.order == ["b"] and queue.running == {2: 1}


async def test_a_cancelled_run_gives_back_a_slot_it_was_just_granted() -> None:
    queue = RunQueue(max_runs=1, max_per_user=8, queue_max=10, queue_per_user=10)
    line = Line(queue)
    await queue.acquire(9)
    line.ask("a", 1)
    await settle()
    queue.release(9)  # granted to "a", whose task has not resumed yet
    line.tasks["a"].cancel()
    await settle()
    assert queue.running.total() == 0 and queue.depth == 0


async def test_a_user_at_their_cap_waits_without_holding_up_others() -> None:
    queue = RunQueue(max_runs=10, max_per_user=1, queue_max=10, queue_per_user=10)
    line = Line(queue)
    await queue.acquire(1)
    line.ask("a2", 1)
    await settle()
    assert await queue.acquire(2) == 0.0  # another user starts at once
    queue.release(1)
    await settle()
    assert line.order == ["a2"]


async def test_bounds_refuse_at_once() -> None:
    queue = RunQueue(max_runs=1, max_per_user=1, queue_max=3, queue_per_user=2)
    line = Line(queue)
    await queue.acquire(1)
    line.ask("a1", 1)
    line.ask("a2", 1)
    await settle()
    with pytest.raises(TooManyRuns):
        await queue.acquire(1)
    line.ask("b1", 2)
    await settle()
    with pytest.raises(ServerBusy):
        await queue.acquire(3)
    assert queue.depth == 3
