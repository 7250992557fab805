"""Several Docker engines behind one backend: placement, and engines going down and back up.

Each engine is a ``DockerBackend`` of its own, with its own warm pool, start gate and remover.
A run goes to the least-loaded engine that is up: load is its live runs plus the starts under
way, per CPU the engine reports; at equal load an engine with a warm container for the
language goes first, then the engines take turns.

Every engine is pinged in the background. One that does not answer within ``engine_timeout``
is down: it gets no runs, its pool makes nothing, and the runs it held end with
``backend_unavailable`` (their end can no longer be seen; the containers are removed once it
answers again, by its remover's retries or by the sweep). A start that fails on an engine
takes it out of placement (while another engine is up) and pings it at once: if it answers,
it is back in at once. An engine that answers again is used again, and its pool refills.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sandbox.backend import Backend
from sandbox.docker import DockerBackend
from sandbox.errors import BackendUnavailable, RuntimeMissing
from sandbox.files import SourceFile
from sandbox.languages import Language, get_language
from sandbox.model import Process, RunRequest
from sandbox.remover import ENGINE_ERRORS, describe
from sandbox.run import Run

log = logging.getLogger(__name__)


@dataclass(eq=False)
class Engine:
    """One engine, named by its place in the list (never by its URL, which is not public)."""

    name: str
    backend: DockerBackend
    up: bool = True
    """Runs may be placed here."""
    lost: bool = False
    """Found down by a ping: its runs have ended; it is back once a ping answers."""
    live: int = 0
    starting: int = 0
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    """Set to ping at once (a start failed here)."""

    @property
    def load(self) -> float:
        return (self.live + self.starting) / max(1, self.backend.cpus)


class EnginePools:
    """The engines' warm pools, steered and reported as one."""

    def __init__(self, engines: Sequence[Engine]) -> None:
        self._engines = engines

    @property
    def failing(self) -> set[str]:
        """Launchers failing on an engine that is up (a lost engine's pool just waits)."""
        return set().union(*(e.backend.warm.failing for e in self._engines if not e.lost))

    def demand(self, language_id: str, sessions: int, preloaded: int = 0) -> None:
        """Sessions spread over the engines: each keeps ready its share of them."""
        parts = len(self._engines)
        share, preloaded_share = math.ceil(sessions / parts), math.ceil(preloaded / parts)
        for engine in self._engines:
            engine.backend.warm.demand(language_id, share, preloaded_share)

    def reserve(self, language: Language, count: int, seconds: float) -> int:
        granted = 0
        for engine, share in zip(self._engines, _shares(count, len(self._engines)), strict=True):
            granted += engine.backend.warm.reserve(language, share, seconds)
        return granted

    def stats(self) -> dict[str, dict[str, int]]:
        total: dict[str, Counter[str]] = {}
        for engine in self._engines:
            for launcher, lane in engine.backend.warm.stats().items():
                total.setdefault(launcher, Counter()).update(lane)
        return {launcher: dict(lane) for launcher, lane in total.items()}


def _shares(count: int, parts: int) -> list[int]:
    """``count`` split into ``parts`` as evenly as whole numbers go."""
    return [count // parts + (i < count % parts) for i in range(parts)]


class EnginesBackend(Backend):
    """Runs on several Docker engines; see the module's docstring."""

    name = "docker"

    def __init__(self, backends: Sequence[DockerBackend], probe_seconds: float = 2.0) -> None:
        # The engines' pools do the work; they all preload or none does.
        super().__init__(backends[0].limits, pool_max=0, preload=backends[0].preload)
        self.engines = [Engine(f"engine-{i}", b) for i, b in enumerate(backends)]
        self.pool = EnginePools(self.engines)
        self.probe_seconds = probe_seconds
        self._turn = itertools.count()
        self._probes: list[asyncio.Task[None]] = []

    async def open(self) -> None:
        """Open every engine; any that fails (unreachable, no image, no runtime) fails the
        start, naming the engine, so a misconfigured engine is found at once."""
        results = await asyncio.gather(
            *(e.backend.open() for e in self.engines), return_exceptions=True
        )
        failed = [(e, r) for e, r in zip(self.engines, results, strict=True) if r is not None]
        if failed:
            await asyncio.gather(
                *(
                    e.backend.close()
                    for e, r in zip(self.engines, results, strict=True)
                    if r is None
                )
            )
            for _, error in failed:
                if not isinstance(error, Exception):
                    raise error
            message = "; ".join(f"{e.name} ({e.backend.url}): {r}" for e, r in failed)
            if all(isinstance(r, RuntimeMissing) for _, r in failed):
                raise RuntimeMissing(message)
            raise BackendUnavailable(message)
        first = self.engines[0].backend
        self.runtime, self.versions = first.runtime, first.versions
        others = {e.backend.runtime for e in self.engines} - {self.runtime}
        if others:
            log.warning("the engines run programs under different runtimes: %s", others)
        self._probes = [
            asyncio.create_task(self._probe(e), name=f"probe-{e.name}") for e in self.engines
        ]

    async def close(self) -> None:
        for task in self._probes:
            task.cancel()
        for task in self._probes:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._probes.clear()
        await asyncio.gather(*(e.backend.close() for e in self.engines))

    # Placement ------------------------------------------------------------------------------

    async def start(self, request: RunRequest) -> Run:
        """Start on the best engine; when a start fails there, on the next best, and so on."""
        language = get_language(request.language)
        tried: set[Engine] = set()
        while True:
            engine = self._choose(language, tried)
            engine.starting += 1
            try:
                run = await engine.backend.start(request)
            except BackendUnavailable as exc:
                log.warning("a start failed on %s: %s", engine.name, exc)
                self._suspect(engine)
                tried.add(engine)
                continue
            finally:
                engine.starting -= 1
            engine.live += 1
            run.on_ended(functools.partial(self._ended, engine))
            return run

    def _choose(self, language: Language, tried: set[Engine]) -> Engine:
        # An engine whose last start failed is still tried when no other is left: on a
        # busy engine that may be all it was; a ping decides soon.
        candidates = [e for e in self.engines if not e.lost and e not in tried]
        if not candidates:
            raise BackendUnavailable("no Docker engine is up")
        turn = next(self._turn)
        return min(
            candidates,
            key=lambda e: (
                not e.up,
                e.load,
                e.backend.warm.idle(language) == 0,
                (self.engines.index(e) - turn) % len(self.engines),
            ),
        )

    @staticmethod
    def _ended(engine: Engine, run: Run) -> None:
        engine.live -= 1

    async def prepare(self, language: Language, background: bool = False) -> Process:
        return await self._choose(language, set()).backend.prepare(language, background)

    # Headers are each engine's own business: its backend starts the runs placed on it.
    def header(
        self,
        language: Language,
        code: str,
        wall_time: float,
        process: Process,
        files: Sequence[SourceFile] = (),
        artifact: bytes = b"",
        key: str = "",
    ) -> bytes:
        backend = self.engines[0].backend
        return backend.header(language, code, wall_time, process, files, artifact, key)

    def compile_header(
        self,
        language: Language,
        code: str,
        wall_time: float,
        process: Process,
        files: Sequence[SourceFile] = (),
    ) -> bytes:
        return self.engines[0].backend.compile_header(language, code, wall_time, process, files)

    # Health ---------------------------------------------------------------------------------

    def _suspect(self, engine: Engine) -> None:
        """No runs here until a ping answers, which is asked for now."""
        engine.up = False
        engine.wake.set()

    async def _probe(self, engine: Engine) -> None:
        while True:
            ok = (await engine.backend.health())["ok"]
            if ok and not engine.up:
                self._back(engine)
            elif not ok and not engine.lost:
                self._lose(engine)
            engine.wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.probe_seconds):
                    await engine.wake.wait()

    def _lose(self, engine: Engine) -> None:
        log.error("%s does not answer: it is down, its runs end", engine.name)
        engine.up, engine.lost = False, True
        engine.backend.warm.pause()
        engine.backend.lost.set()

    def _back(self, engine: Engine) -> None:
        log.warning("%s answers again: it takes runs", engine.name)
        if engine.lost:
            engine.backend.found()
            engine.backend.warm.resume()
        engine.up, engine.lost = True, False

    async def health(self) -> dict[str, Any]:
        engines = [{"name": e.name, "ok": e.up, "runtime": e.backend.runtime} for e in self.engines]
        down = [e.name for e in self.engines if not e.up]
        health: dict[str, Any] = {"backend": self.name, "ok": len(down) < len(self.engines)}
        if down:
            health["error"] = f"down: {', '.join(down)}"
        return {**health, "engines": engines}

    def finishing(self) -> int:
        return sum(engine.backend.finishing() for engine in self.engines)

    # Owners, for the sweep ------------------------------------------------------------------

    async def owners(self) -> Counter[str]:
        """Owners on every engine that answers (one that does not is swept when it does)."""
        total: Counter[str] = Counter()
        for engine in self._answering():
            try:
                total += await engine.backend.owners()
            except (BackendUnavailable, *ENGINE_ERRORS) as exc:
                log.warning("could not list the containers of %s: %s", engine.name, describe(exc))
        return total

    async def remove_owned_by(self, owners: Iterable[str]) -> int:
        owners = set(owners)
        removed = 0
        for engine in self._answering():
            try:
                removed += await engine.backend.remove_owned_by(owners)
            except (BackendUnavailable, *ENGINE_ERRORS) as exc:
                log.warning("could not sweep %s: %s", engine.name, describe(exc))
        return removed

    def _answering(self) -> list[Engine]:
        return [e for e in self.engines if not e.lost]
