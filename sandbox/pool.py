"""Warm sandboxes: started ahead with their launcher waiting, each used for one run only."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from sandbox.languages import LANGUAGES, Language
from sandbox.run import Process

log = logging.getLogger(__name__)

_RETRY_SECONDS = (0.5, 1, 2, 5, 10)
# Let the run that just took a process get going before making its replacement: creating a
# container competes with that run for the engine and the CPU (measured: ~3 ms of its first
# output on two cores).
_REFILL_DELAY = 0.15


class Pool:
    """Keeps ``size`` ready processes per launcher, refilled in the background.

    Languages that share a launcher (JavaScript and TypeScript both start Node.js) share
    its warm processes. A process leaves the pool for exactly one run and never comes back.
    A process older than ``lifetime`` seconds is never handed out: it is replaced (a sandbox
    may end itself when it waited too long for a program).
    """

    def __init__(
        self,
        prepare: Callable[[Language], Awaitable[Process]],
        size: int,
        lifetime: float | None = None,
    ) -> None:
        self._prepare = prepare
        self.size = size
        self.lifetime = lifetime
        # Oldest first, each with the loop time after which it is not handed out any more.
        self._idle: dict[tuple[str, ...], deque[tuple[float, Process]]] = {}
        self._wanted: dict[tuple[str, ...], asyncio.Event] = {}
        self._fillers: list[asyncio.Task[None]] = []
        self._removing: set[asyncio.Task[Any]] = set()
        self.failing: set[str] = set()
        """Launchers (named by a language) whose last attempt at a warm sandbox failed."""

    def start(self) -> None:
        if self.size <= 0:
            return
        for language in {lang.launcher: lang for lang in LANGUAGES.values()}.values():
            self._idle[language.launcher] = deque()
            self._wanted[language.launcher] = asyncio.Event()
            self._fillers.append(
                asyncio.create_task(self._fill(language), name=f"pool-{language.id}")
            )

    def take(self, language: Language) -> Process | None:
        """A ready process for ``language``, or None when the pool has none right now."""
        idle = self._idle.get(language.launcher)
        if idle is None:
            return None
        self._discard_expired(idle)
        if not idle:
            return None
        _, process = idle.popleft()
        self._wanted[language.launcher].set()
        return process

    def idle(self, language: Language) -> int:
        return len(self._idle.get(language.launcher, ()))

    def _discard_expired(self, idle: deque[tuple[float, Process]]) -> None:
        now = asyncio.get_running_loop().time()
        while idle and idle[0][0] <= now:
            _, process = idle.popleft()
            task = asyncio.create_task(process.remove())
            self._removing.add(task)
            task.add_done_callback(self._removing.discard)

    async def _fill(self, language: Language) -> None:
        idle, wanted = self._idle[language.launcher], self._wanted[language.launcher]
        loop = asyncio.get_running_loop()
        failures = 0
        while True:
            self._discard_expired(idle)
            while len(idle) < self.size:
                try:
                    process = await self._prepare(language)
                    expires = loop.time() + self.lifetime if self.lifetime else float("inf")
                    idle.append((expires, process))
                    failures = 0
                    self.failing.discard(language.id)
                except Exception as exc:
                    delay = _RETRY_SECONDS[min(failures, len(_RETRY_SECONDS) - 1)]
                    failures += 1
                    self.failing.add(language.id)
                    log.warning(
                        "warm %s sandbox failed (%s); retrying in %s s", language.id, exc, delay
                    )
                    await asyncio.sleep(delay)
            wanted.clear()
            # Wake when a process was taken, or when the oldest one expires.
            oldest = idle[0][0]
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(None if oldest == float("inf") else oldest):
                    await wanted.wait()
                    await asyncio.sleep(_REFILL_DELAY)

    async def close(self) -> None:
        """Stop refilling and remove every idle process."""
        for task in self._fillers:
            task.cancel()
        for task in self._fillers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._fillers.clear()
        processes = [p for idle in self._idle.values() for _, p in idle]
        self._idle.clear()
        await asyncio.gather(
            *(p.remove() for p in processes), *self._removing, return_exceptions=True
        )
