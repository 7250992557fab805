"""Warm sandboxes: started ahead with their launcher waiting, each used for one run only."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable

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
    """

    def __init__(self, prepare: Callable[[Language], Awaitable[Process]], size: int) -> None:
        self._prepare = prepare
        self.size = size
        self._idle: dict[tuple[str, ...], deque[Process]] = {}
        self._wanted: dict[tuple[str, ...], asyncio.Event] = {}
        self._fillers: list[asyncio.Task[None]] = []

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
        if not idle:
            return None
        process = idle.popleft()
        self._wanted[language.launcher].set()
        return process

    def idle(self, language: Language) -> int:
        return len(self._idle.get(language.launcher, ()))

    async def _fill(self, language: Language) -> None:
        idle, wanted = self._idle[language.launcher], self._wanted[language.launcher]
        failures = 0
        while True:
            while len(idle) < self.size:
                try:
                    idle.append(await self._prepare(language))
                    failures = 0
                except Exception as exc:
                    delay = _RETRY_SECONDS[min(failures, len(_RETRY_SECONDS) - 1)]
                    failures += 1
                    log.warning(
                        "warm %s sandbox failed (%s); retrying in %s s", language.id, exc, delay
                    )
                    await asyncio.sleep(delay)
            wanted.clear()
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
        processes = [p for idle in self._idle.values() for p in idle]
        self._idle.clear()
        await asyncio.gather(*(p.remove() for p in processes), return_exceptions=True)
