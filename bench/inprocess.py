"""The sandbox layer alone: ``DockerBackend`` in this process, with no HTTP and no WebSocket."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from sandbox import LANGUAGES, Language, Limits, Output, RunRequest, Status
from sandbox.container import Runtime
from sandbox.docker import DockerBackend, DockerProcess

RUN_SECONDS = 35.0
SETTLE_SECONDS = 1.0  # once the pool is full, for its launchers to be waiting


@dataclass(frozen=True)
class Timing:
    """One run, in seconds from calling ``backend.start``."""

    start: float
    """``start`` returned: the program was written to the launcher."""
    first_output: float
    warm: bool
    age: float | None
    """How long the container had been started when it got its program (None: cold)."""


@dataclass
class Series:
    timings: list[Timing] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


async def series(
    image: str,
    limits: Limits,
    pool_size: int,
    language: str,
    code: str,
    runs: int,
    pause: float,
    runtime: Runtime = "runc",
) -> Series:
    """``runs`` warm runs back to back, ``pause`` seconds apart, after the pool has filled."""
    result = Series()
    backend = DockerBackend(limits, image, pool_size=pool_size, runtime=runtime)
    ready: dict[str, float] = {}
    prepare = backend.prepare

    async def timed_prepare(language: Language) -> DockerProcess:
        process = await prepare(language)
        ready[process.id] = time.perf_counter()
        return process

    backend.warm._prepare = timed_prepare  # type: ignore[method-assign]  # to learn each warm container's age
    await backend.open()
    try:
        for _ in range(1200):  # at most 60 s for the pool to fill
            if backend.warm.idle(LANGUAGES[language]) >= pool_size:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(SETTLE_SECONDS)
        for _ in range(runs):
            try:
                result.timings.append(await _run(backend, language, code, ready))
            except Exception as exc:
                result.failures.append(f"{type(exc).__name__}: {exc}"[:200])
            await asyncio.sleep(pause)
    finally:
        await backend.close()
    return result


async def _run(backend: DockerBackend, language: str, code: str, ready: dict[str, float]) -> Timing:
    async with asyncio.timeout(RUN_SECONDS):
        t0 = time.perf_counter()
        run = await backend.start(RunRequest(language, code))
        t1 = time.perf_counter()
        process_id = run._process.id  # type: ignore[attr-defined]
        first: float | None = None
        async for output in run:
            if first is None and isinstance(output, Output) and output.stream == "stdout":
                first = time.perf_counter()
        result = await run.result()
    if first is None or result.status is not Status.SUCCESS:
        raise RuntimeError(f"status {result.status}, stdout seen: {first is not None}")
    age = t0 - ready[process_id] if run.warm and process_id in ready else None
    return Timing(t1 - t0, first - t0, run.warm, age)
