"""The warm pool's arithmetic and its engine gate, without an engine (fast unit tests)."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import ValidationError

from sandbox import LANGUAGES
from sandbox.gate import Gate
from sandbox.languages import compiler, preloading, sandboxes
from sandbox.model import Process
from sandbox.pool import Pool, allocate, wanted
from server.config import Settings, explain

PYTHON, NODE = LANGUAGES["python"], LANGUAGES["javascript"]


def test_each_announced_session_wants_a_warm_sandbox() -> None:
    assert wanted(2, 128, 0, sessions=30, rate=0.0, start_seconds=0.5) == 30


def test_the_minimum_and_reservations_are_a_floor() -> None:
    assert wanted(2, 128, 0, sessions=0, rate=0.0, start_seconds=0.5) == 2
    assert wanted(2, 128, 10, sessions=5, rate=0.0, start_seconds=0.5) == 12


def test_the_run_rate_adds_the_runs_expected_while_a_sandbox_starts() -> None:
    # 4 runs a second, half a second to start one: two more must be ready.
    assert wanted(0, 128, 0, sessions=3, rate=4.0, start_seconds=0.5) == 5


def test_the_maximum_caps_whatever_the_demand() -> None:
    assert wanted(2, 64, 100, sessions=500, rate=50.0, start_seconds=1.0) == 64


def test_the_memory_budget_caps_the_targets() -> None:
    targets = allocate({"py": 100}, {"py": 2}, {"py": 20}, budget=1000)
    assert targets == {"py": 50}


def test_floors_come_first_then_the_budget_is_shared_in_turn() -> None:
    wants = {"py": 100, "node": 100}
    floors = {"py": 2, "node": 10}
    targets = allocate(wants, floors, {"py": 10, "node": 10}, budget=300)
    # 120 for the floors, then 180 shared one by one: 9 more each.
    assert targets == {"py": 11, "node": 19}


def test_what_fits_is_given_and_no_more() -> None:
    targets = allocate({"py": 3, "node": 40}, {"py": 2, "node": 2}, {"py": 5, "node": 16}, 200)
    assert targets["py"] == 3  # wants little: gets it all
    assert targets["py"] * 5 + targets["node"] * 16 <= 200
    assert targets["node"] == (200 - 15) // 16


def test_a_budget_below_the_floors_gives_what_fits() -> None:
    assert allocate({"py": 5}, {"py": 5}, {"py": 20}, budget=50) == {"py": 2}


def test_an_unknown_cost_is_not_counted() -> None:
    assert allocate({"py": 40}, {"py": 2}, {"py": 0}, budget=0) == {"py": 40}


# The pool with a fake sandbox ---------------------------------------------------------------


class Idle:
    def __init__(self) -> None:
        self.live = True
        self.removed = False

    def alive(self) -> bool:
        return self.live

    async def remove(self, ended: bool = False) -> None:
        self.removed = True


async def made(language: object) -> Process:
    return Idle()  # type: ignore[return-value]


async def test_targets_follow_sessions_and_the_budget() -> None:
    # 200 bytes for Python and Node.js, on top of the floors (2 each, 10 bytes) of every other
    # kind of container.
    others = 2 * 10 * (len(sandboxes()) - 2)
    pool = Pool(
        made, 2, 64, memory_bytes=200 + others, cost=lambda lang: 5 if lang is PYTHON else 10
    )
    pool.start()
    try:
        assert pool.target(PYTHON) == 2 and pool.target(NODE) == 2
        pool.demand("python", 12)
        assert pool.target(PYTHON) == 12
        pool.demand("typescript", 3)  # shares Node.js with JavaScript
        pool.demand("javascript", 4)
        assert pool.target(NODE) == 7
        pool.demand("python", 30)  # 30 x 5 + 7 x 10 would pass 200
        assert pool.target(PYTHON) * 5 + pool.target(NODE) * 10 <= 200 and pool.target(NODE) == 7
        pool.demand("python", 0)
        assert pool.target(PYTHON) == 2
    finally:
        await pool.close()


async def test_sessions_whose_program_plots_want_preloading_containers() -> None:
    pool = Pool(made, 2, 64, kinds=sandboxes(preload=True))
    pool.start()
    try:
        pool.demand("python", 12, preloaded=5)  # 5 of 12 editors import matplotlib
        assert pool.target(PYTHON) == 7 and pool.target(preloading(PYTHON)) == 5
        pool.demand("python", 12, preloaded=0)
        assert pool.target(PYTHON) == 12 and pool.target(preloading(PYTHON)) == 2
    finally:
        await pool.close()


async def test_without_preloading_every_session_wants_a_plain_container() -> None:
    pool = Pool(made, 2, 64)  # no preloading kind (EXECSTREAM_PYTHON_PRELOAD=false)
    pool.start()
    try:
        pool.demand("python", 12, preloaded=5)
        assert pool.target(PYTHON) == 12
    finally:
        await pool.close()


async def test_reserve_grants_within_the_budget_and_ends() -> None:
    pool = Pool(made, 2, 64, memory_bytes=200, cost=lambda lang: 10)
    pool.start()
    try:
        # Floors: 2 for each kind of container (Python, Node.js, the compiled languages' runs
        # and compile containers), 10 bytes each; what is left of 200 goes to Python.
        granted = (200 - 2 * len(sandboxes()) * 10) // 10
        assert granted > 0
        assert pool.reserve(PYTHON, 50, 0.3) == granted
        assert pool.target(PYTHON) == 2 + granted
        assert pool.reserve(NODE, 5, 0.3) == 0  # nothing left
        await asyncio.sleep(0.4)
        pool.demand("python", 0)  # any look at demand drops ended reservations
        assert pool.target(PYTHON) == 2
        assert pool.stats()["python"]["size"] == 2
    finally:
        await pool.close()


async def test_the_pool_off_grants_nothing_and_counts_misses() -> None:
    pool = Pool(made, 0, 0)
    pool.start()
    assert pool.reserve(PYTHON, 5, 60) == 0
    assert pool.take(PYTHON) is None
    assert pool.stats()["python"] == {"size": 0, "idle": 0, "hits": 0, "misses": 1}
    await pool.close()


async def test_dead_idle_sandboxes_are_never_handed_out() -> None:
    pool = Pool(made, 2, 2)
    pool.start()
    try:
        async with asyncio.timeout(5):
            while pool.idle(PYTHON) < 2:
                await asyncio.sleep(0.01)
        dead = [p for _, p in pool._lanes[PYTHON.sandbox].idle]
        for process in dead:
            process.live = False  # type: ignore[attr-defined]
        assert pool.take(PYTHON) is None  # both were dead: a miss, the run starts cold
        await asyncio.sleep(0)
        assert all(p.removed for p in dead)  # type: ignore[attr-defined]
        assert pool.stats()["python"]["misses"] == 1
    finally:
        await pool.close()


async def test_a_sandbox_s_lifetime_counts_from_before_its_start() -> None:
    # The sandbox's own idle clock starts inside it, while the pool still waits for it: a
    # start that took 0.3 s of a 0.5 s lifetime leaves 0.2 s to hand it out, not 0.5 s.
    async def slow(language: object) -> Process:
        await asyncio.sleep(0.3)
        return Idle()  # type: ignore[return-value]

    pool = Pool(slow, 1, 1, lifetime=0.5)
    pool.start()
    try:
        async with asyncio.timeout(5):
            while pool.idle(PYTHON) < 1:
                await asyncio.sleep(0.01)
        first = pool._lanes[PYTHON.sandbox].idle[0][1]
        await asyncio.sleep(0.25)
        assert pool.take(PYTHON) is not first
        await asyncio.sleep(0)
        assert first.removed  # type: ignore[attr-defined]
    finally:
        await pool.close()


# The engine gate ---------------------------------------------------------------------------


async def test_the_gate_lets_foreground_work_go_before_background_work() -> None:
    gate = Gate(1)
    order: list[str] = []
    release = asyncio.Event()

    async def work(name: str, background: bool) -> None:
        async with gate.hold(background):
            order.append(name)
            if name == "first":
                await release.wait()

    first = asyncio.create_task(work("first", False))
    await asyncio.sleep(0)
    waiting = [asyncio.create_task(work("fill", True)), asyncio.create_task(work("cold", False))]
    await asyncio.sleep(0.01)
    assert order == ["first"]
    release.set()
    await asyncio.gather(first, *waiting)
    assert order == ["first", "cold", "fill"]
    assert gate.holders == 0


async def test_a_cancelled_waiter_does_not_lose_a_place() -> None:
    gate = Gate(2)
    held = asyncio.Event()
    done = asyncio.Event()

    async def hold() -> None:
        async with gate.hold():
            held.set()
            await done.wait()

    holders = [asyncio.create_task(hold()) for _ in range(2)]
    await held.wait()
    await asyncio.sleep(0)
    waiter = asyncio.create_task(hold())
    await asyncio.sleep(0)
    waiter.cancel()
    done.set()
    await asyncio.gather(*holders, return_exceptions=True)
    await asyncio.gather(waiter, return_exceptions=True)
    assert gate.holders == 0 and gate.waiting == 0
    async with asyncio.timeout(1), gate.hold(), gate.hold():
        assert gate.holders == 2


# Settings ----------------------------------------------------------------------------------


def test_pool_size_keeps_its_meaning(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXECSTREAM_POOL_SIZE", "0")
    off = Settings()
    assert (off.pool_min, off.pool_max) == (0, 0)  # the pool is off, as it always was
    monkeypatch.setenv("EXECSTREAM_POOL_SIZE", "5")
    assert (Settings().pool_min, Settings().pool_max) == (5, 128)


def test_a_minimum_above_the_maximum_is_refused_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXECSTREAM_POOL_MIN", "9")
    monkeypatch.setenv("EXECSTREAM_POOL_MAX", "3")
    with pytest.raises(ValidationError) as refused:
        Settings()
    assert "EXECSTREAM_POOL_MIN must be at most EXECSTREAM_POOL_MAX (9 > 3)" in explain(
        refused.value
    )


def test_pool_settings_have_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXECSTREAM_ENGINE_CONCURRENCY", "0")
    with pytest.raises(ValidationError) as refused:
        Settings()
    assert "EXECSTREAM_ENGINE_CONCURRENCY=0 is refused: allowed range 1..256" in explain(
        refused.value
    )


async def test_a_compiled_language_reserves_compile_containers_too() -> None:
    c = LANGUAGES["c"]
    pool = Pool(made, 1, 64)
    pool.start()
    try:
        assert pool.reserve(c, 5, 60) == 5
        assert pool.target(c) == 6
        assert pool.target(compiler(c)) == 6
        pool.demand("c", 9)  # nine editors on C: nine of each
        assert pool.target(c) == pool.target(compiler(c)) == 9
    finally:
        await pool.close()
