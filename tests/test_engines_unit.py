"""Placement over several engines and the settings that list them (fast, no engine: the same
behaviour end to end is in tests/test_engines.py)."""

from __future__ import annotations

from typing import Any, cast

import pytest
from pydantic import ValidationError

from sandbox.docker import DockerBackend
from sandbox.engines import EnginesBackend, _shares
from sandbox.errors import BackendUnavailable
from sandbox.languages import LANGUAGES
from server.config import Settings

PYTHON = LANGUAGES["python"]


class FakePool:
    def __init__(self, idle: int = 0) -> None:
        self.idle_count = idle

    def idle(self, language: Any) -> int:
        return self.idle_count


class FakeEngine:
    def __init__(self, cpus: int = 2, idle: int = 0) -> None:
        self.limits = Settings().limits
        self.cpus = cpus
        self.preload = False
        self.warm = FakePool(idle)


def backend(*engines: FakeEngine) -> EnginesBackend:
    return EnginesBackend(cast(list[DockerBackend], list(engines)))


async def test_the_least_loaded_engine_per_cpu_gets_the_run() -> None:
    engines = backend(FakeEngine(cpus=2), FakeEngine(cpus=8))
    first, second = engines.engines
    first.live, second.live = 1, 3  # 0.5 against 0.375 runs per CPU
    assert engines._choose(PYTHON, set()) is second


async def test_at_equal_load_a_warm_engine_goes_first_else_they_take_turns() -> None:
    engines = backend(FakeEngine(), FakeEngine(idle=1))
    assert [engines._choose(PYTHON, set()).name for _ in range(3)] == ["engine-1"] * 3
    engines = backend(FakeEngine(), FakeEngine())
    assert [engines._choose(PYTHON, set()).name for _ in range(4)] == [
        "engine-0",
        "engine-1",
        "engine-0",
        "engine-1",
    ]


async def test_down_engines_get_nothing_and_suspect_ones_only_when_alone() -> None:
    engines = backend(FakeEngine(), FakeEngine())
    first, second = engines.engines
    first.up = False  # a start failed there; no ping yet
    second.live = 10
    assert engines._choose(PYTHON, set()) is second
    assert engines._choose(PYTHON, {second}) is first
    first.lost = True  # a ping found it down
    with pytest.raises(BackendUnavailable):
        engines._choose(PYTHON, {second})


def test_reservations_are_shared_out_evenly() -> None:
    assert _shares(5, 2) == [3, 2]
    assert _shares(1, 3) == [1, 0, 0]


def test_engine_urls_are_checked() -> None:
    urls = Settings(docker_urls="unix:///a.sock, tcp://10.0.0.2:2376").docker_url_list
    assert urls == ["unix:///a.sock", "tcp://10.0.0.2:2376"]
    assert Settings(docker_url="unix:///b.sock").docker_url_list == ["unix:///b.sock"]
    with pytest.raises(ValidationError, match="expected URLs starting with"):
        Settings(docker_urls="unix:///a.sock,ftp://x")
    with pytest.raises(ValidationError, match="listed twice"):
        Settings(docker_urls="unix:///a.sock,unix:///a.sock")
