"""The raw engine as a baseline: aiodocker with the server's container config, no server.

Every container made here carries ``execstream.managed=true``, ``execstream.server`` naming
this process, and ``execstream.bench=true``; each one is removed after use, and ``sweep``
removes whatever an interrupted run left.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

import aiodocker
from aiodocker.containers import DockerContainer
from aiodocker.stream import Stream

from sandbox import LANGUAGES, Language, Limits
from sandbox.backend import header
from sandbox.container import (
    FOLDER,
    LABEL,
    LAUNCHERS,
    OWNER_LABEL,
    Runtime,
    container_config,
    new_owner_id,
)
from sandbox.docker import wait_ready
from sandbox.remover import remove_container

BENCH_LABEL = "execstream.bench"
RUN_SECONDS = 30.0  # bound on one container's whole life here


@dataclass(frozen=True)
class Phases:
    """One cold start on the raw engine, each phase in seconds."""

    create: float
    attach: float
    start: float
    write: float
    first_byte: float
    """From the header written to the first byte of stdout: the container's own share."""

    @property
    def total(self) -> float:
        return self.create + self.attach + self.start + self.write + self.first_byte


@dataclass
class Rate:
    """Completed runs over a fixed time by concurrent workers."""

    completed: int = 0
    failed: int = 0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)

    @property
    def per_second(self) -> float:
        return self.completed / self.seconds if self.seconds else 0.0


class Engine:
    """Creates, drives and removes containers exactly as the Docker backend does."""

    def __init__(
        self, image: str, limits: Limits, runtime: Runtime = "runc", exec_tmp: bool = False
    ) -> None:
        self.image = image
        self.limits = limits
        self.runtime: Runtime = runtime
        self.exec_tmp = exec_tmp
        """The folder mounted ``exec``: a baseline that builds and runs a program in one
        container, as ``docker run --tmpfs /tmp:exec`` would (the server never does)."""
        self.owner = new_owner_id("bench")
        self.docker = aiodocker.Docker()
        self.live: set[str] = set()

    async def close(self) -> None:
        await self.docker.close()

    def config(self, language: Language) -> dict[str, Any]:
        # The server's config, idle deadline included (its default: these containers never idle).
        config = container_config(self.image, language, self.limits, self.owner, self.runtime, 600)
        config["Labels"] = {**config["Labels"], BENCH_LABEL: "true"}
        if self.exec_tmp:
            tmpfs = config["HostConfig"]["Tmpfs"]
            tmpfs[FOLDER] = tmpfs[FOLDER].replace("noexec", "exec")
        return config

    async def version(self) -> str:
        return str((await self.docker.version()).get("Version", "unknown"))

    # One run --------------------------------------------------------------------------------

    async def first_output(self, language_id: str | Language, code: str) -> Phases:
        """create → attach → start → header → first stdout byte; the container is then removed.

        ``language_id`` may be a ``Language`` of the caller's own (one run another way)."""
        language = language_id if isinstance(language_id, Language) else LANGUAGES[language_id]
        language_id = language.id
        program = header(language, code, self.limits.wall_time, FOLDER, LAUNCHERS)
        async with asyncio.timeout(RUN_SECONDS):
            t0 = time.perf_counter()
            container = await self._create(language)
            stream: Stream | None = None
            try:
                t1 = time.perf_counter()
                stream = container.attach(stdin=True, stdout=True, stderr=True)
                await stream.__aenter__()
                t2 = time.perf_counter()
                await container.start()
                # As the backend does: signals are safe from here. A command that does not
                # wait for its program (bench.languages) may have printed with the ready byte.
                early = await wait_ready(stream)
                t3 = time.perf_counter()
                await stream.write_in(program)
                t4 = time.perf_counter()
                if early is None:
                    await _first_stdout(stream, language_id)
                t5 = time.perf_counter()
            finally:
                await self._remove(container, stream)
        return Phases(t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4)

    async def waiting_first_byte(
        self, language_id: str, code: str, count: int, settle: float = 2.0
    ) -> list[float]:
        """Header → first stdout byte on ``count`` containers started ahead, as a pool has them.

        The containers are created and started together, left ``settle`` seconds for their
        launchers to be waiting, then given their program one after the other.
        """
        language = LANGUAGES[language_id]
        program = header(language, code, self.limits.wall_time, FOLDER, LAUNCHERS)
        started: list[tuple[DockerContainer, Stream]] = []
        times: list[float] = []
        try:
            async with asyncio.timeout(RUN_SECONDS):
                await asyncio.gather(*(self._start(language, started) for _ in range(count)))
                await asyncio.sleep(settle)
                for _, stream in started:
                    t0 = time.perf_counter()
                    await stream.write_in(program)
                    await _first_stdout(stream, language_id)
                    times.append(time.perf_counter() - t0)
                    await asyncio.sleep(0.05)
        finally:
            await asyncio.gather(*(self._remove(c, s) for c, s in started), return_exceptions=True)
        return times

    async def together_first_byte(
        self, language_id: str, code: str, count: int, settle: float = 3.0
    ) -> list[float]:
        """Header → first stdout byte on ``count`` containers started ahead, all given their
        program at once (a class burst on warm containers, with no server)."""
        language = LANGUAGES[language_id]
        program = header(language, code, self.limits.wall_time, FOLDER, LAUNCHERS)
        started: list[tuple[DockerContainer, Stream]] = []

        async def one(stream: Stream) -> float:
            t0 = time.perf_counter()
            await stream.write_in(program)
            await _first_stdout(stream, language_id)
            return time.perf_counter() - t0

        try:
            async with asyncio.timeout(RUN_SECONDS):
                await asyncio.gather(*(self._start(language, started) for _ in range(count)))
                await asyncio.sleep(settle)
                return list(await asyncio.gather(*(one(stream) for _, stream in started)))
        finally:
            await asyncio.gather(*(self._remove(c, s) for c, s in started), return_exceptions=True)

    async def _start(
        self, language: Language, started: list[tuple[DockerContainer, Stream]]
    ) -> None:
        container = await self._create(language)
        stream = container.attach(stdin=True, stdout=True, stderr=True)
        try:
            await stream.__aenter__()
            await container.start()
            await wait_ready(stream)
        except BaseException:
            await self._remove(container, stream)
            raise
        started.append((container, stream))

    async def complete(self, language_id: str, code: str) -> int:
        """create → attach → start → header → read to the end → wait → remove; the exit code."""
        language = LANGUAGES[language_id]
        program = header(language, code, self.limits.wall_time, FOLDER, LAUNCHERS)
        async with asyncio.timeout(RUN_SECONDS):
            container = await self._create(language)
            stream: Stream | None = None
            try:
                stream = container.attach(stdin=True, stdout=True, stderr=True)
                await stream.__aenter__()
                await container.start()
                await stream.write_in(program)
                while await stream.read_out() is not None:
                    pass
                return int((await container.wait())["StatusCode"])
            finally:
                await self._remove(container, stream)

    async def rate(self, language_id: str, code: str, workers: int, seconds: float) -> Rate:
        """``workers`` loops of ``complete`` for ``seconds``; counts runs that ended in time."""
        rate = Rate()
        deadline = time.perf_counter() + seconds

        async def worker() -> None:
            while time.perf_counter() < deadline:
                try:
                    status = await self.complete(language_id, code)
                except Exception as exc:
                    rate.failed += 1
                    rate.errors.append(f"{type(exc).__name__}: {exc}"[:200])
                    continue
                if time.perf_counter() <= deadline:
                    if status == 0:
                        rate.completed += 1
                    else:
                        rate.failed += 1

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(workers)))
        rate.seconds = min(time.perf_counter(), deadline) - began
        return rate

    # Containers -----------------------------------------------------------------------------

    async def _create(self, language: Language) -> DockerContainer:
        container = await self.docker.containers.create(config=self.config(language))
        self.live.add(container.id)
        return container

    async def _remove(self, container: DockerContainer, stream: Stream | None) -> None:
        if stream is not None:
            with contextlib.suppress(Exception):
                await stream.close()
        await asyncio.shield(remove_container(container))
        self.live.discard(container.id)

    async def running(self, owner: str) -> int:
        """Running containers that ``owner`` (a server instance id) made."""
        found = await self.docker.containers.list(
            filters={"label": [f"{LABEL}=true", f"{OWNER_LABEL}={owner}"], "status": ["running"]}
        )
        return len(found)

    async def sweep(self, owners: list[str]) -> int:
        """Remove every managed container made by this process or by one of ``owners``."""
        removed = 0
        for owner in {self.owner, *owners}:
            found = await self.docker.containers.list(
                all=True, filters={"label": [f"{LABEL}=true", f"{OWNER_LABEL}={owner}"]}
            )
            for container in found:
                with contextlib.suppress(aiodocker.DockerError):
                    await remove_container(container)
                    removed += 1
        self.live.clear()
        return removed


async def _first_stdout(stream: Stream, language_id: str) -> None:
    """Read until the program's first stdout byte."""
    while True:
        message = await stream.read_out()
        if message is None:
            raise RuntimeError(f"{language_id}: output closed before any stdout")
        if message.stream == 1 and message.data:
            return
