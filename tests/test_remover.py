"""The remover's pace for finished containers, without an engine (end to end: the container
counts in test_sandbox.py and every test that waits for its containers to go)."""

from __future__ import annotations

import asyncio

import pytest

from sandbox import remover
from sandbox.gate import Gate
from sandbox.remover import Remover

LULL, LATER = 0.5, 1.5


class Container:
    def __init__(self, name: str, log: list[str]) -> None:
        self.id = name * 12
        self._log = log

    async def delete(self, force: bool, v: bool) -> None:
        self._log.append(self.id[:1])


@pytest.fixture(autouse=True)
def short_pauses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(remover, "LULL_SECONDS", LULL)
    monkeypatch.setattr(remover, "LATER_SECONDS", LATER)


def just_started(names: str, removed: list[str]) -> Remover:
    """A remover that has just seen a program start, then got finished containers ``names``."""
    gone = Remover(5.0)
    gone.started()
    for name in names:
        gone.remove_later(Container(name, removed))  # type: ignore[arg-type]
    return gone


async def seconds_until(removed: list[str], count: int) -> float:
    """Seconds from now until ``count`` containers were removed (a loaded machine may be
    late, never early)."""
    loop = asyncio.get_running_loop()
    began = loop.time()
    async with asyncio.timeout(5):
        while len(removed) < count:
            await asyncio.sleep(0.01)
    return loop.time() - began


async def test_a_finished_container_goes_once_no_program_started_for_a_while() -> None:
    removed: list[str] = []
    gone = just_started("a", removed)
    assert await seconds_until(removed, 1) >= LULL - 0.02
    # Long after the last start: nothing to wait for.
    gone.remove_later(Container("b", removed))  # type: ignore[arg-type]
    assert await seconds_until(removed, 2) < LULL
    await gone.close()


async def test_under_a_stream_of_starts_a_container_waits_at_most_a_while() -> None:
    removed: list[str] = []
    gone = just_started("a", removed)

    async def starts() -> None:  # a start every 0.1 s: never a lull
        while True:
            await asyncio.sleep(0.1)
            gone.started()

    stream = asyncio.create_task(starts())
    try:
        assert await seconds_until(removed, 1) >= LATER - 0.02
    finally:
        stream.cancel()
    await gone.close()


async def test_removals_wait_for_the_starts_a_run_waits_for() -> None:
    removed: list[str] = []
    gate = Gate(1)
    gone = Remover(5.0, gate)
    gone.remove_later(Container("a", removed))  # type: ignore[arg-type]
    async with gate.hold():  # a start the engine is busy with
        await asyncio.sleep(0.3)
        assert removed == []
    await seconds_until(removed, 1)
    await gone.close()


async def test_past_the_cap_removals_begin_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(remover, "LATER_MAX", 2)
    removed: list[str] = []
    gone = just_started("abc", removed)
    assert await seconds_until(removed, 1) < LULL
    assert removed == ["c"]
    await gone.close()


async def test_closing_removes_what_waits_at_once() -> None:
    removed: list[str] = []
    gone = just_started("ab", removed)
    await asyncio.sleep(0.05)
    await asyncio.wait_for(gone.close(), LULL)
    assert sorted(removed) == ["a", "b"]


async def test_finished_containers_are_counted_until_removed() -> None:
    removed: list[str] = []
    gone = just_started("ab", removed)
    assert gone.finishing == 2
    await seconds_until(removed, 2)
    await asyncio.sleep(0)  # the tasks' done callbacks
    assert gone.finishing == 0
    await gone.close()
