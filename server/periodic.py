"""Background loops that stop between two pieces of work, never inside one.

A loop cancelled in the middle of a database write leaves that write undone and
SQLAlchemy's pool logging a failed reset (a traceback in the server's log at every
shutdown that happened to land on one). ``Periodic`` asks its loop to stop at its next
pause instead, and cancels it only when it does not within ``grace`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

Pause = Callable[[float], Awaitable[bool]]
"""What a loop calls between two pieces of work: sleeps, and says whether to go on."""


class Periodic:
    """Runs ``loop(pause)`` as a task; ``pause(seconds)`` sleeps and says whether to go on."""

    def __init__(self, loop: Callable[[Pause], Coroutine[Any, Any, None]]) -> None:
        self._loop = loop
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self, name: str) -> None:
        self._task = asyncio.create_task(self._loop(self.pause), name=name)

    async def pause(self, seconds: float) -> bool:
        """Sleep ``seconds``, or less when asked to stop; whether the loop goes on."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._stopping.wait()
        return not self._stopping.is_set()

    async def stop(self, grace: float = 5.0) -> None:
        """Let the work under way finish (``grace`` seconds at most), then end the loop."""
        self._stopping.set()
        task, self._task = self._task, None
        if task is None:
            return
        await asyncio.wait({task}, timeout=grace)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
