"""One limit on concurrent work, where work somebody waits for goes before background work."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator


class Gate:
    """At most ``limit`` holders at once. A freed place goes to the longest-waiting
    foreground caller, and to a background one only when no foreground caller waits.

    asyncio.Semaphore has no priorities: with it, a burst of cold starts would queue behind
    the pool's refills, which nobody is waiting for.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.holders = 0
        self._foreground: deque[asyncio.Future[None]] = deque()
        self._background: deque[asyncio.Future[None]] = deque()

    @property
    def waiting(self) -> int:
        return sum(not f.done() for f in (*self._foreground, *self._background))

    @contextlib.asynccontextmanager
    async def hold(self, background: bool = False) -> AsyncIterator[None]:
        if self.holders < self.limit and not self.waiting:
            self.holders += 1
        else:
            queue = self._background if background else self._foreground
            place = asyncio.get_running_loop().create_future()
            queue.append(place)
            try:
                await place  # resolved by a release, which hands its place over to us
            except asyncio.CancelledError:
                with contextlib.suppress(ValueError):
                    queue.remove(place)
                if place.done() and not place.cancelled():
                    self._release()  # handed a place just as we were cancelled: pass it on
                raise
        try:
            yield
        finally:
            self._release()

    def _release(self) -> None:
        for queue in (self._foreground, self._background):
            while queue:
                place = queue.popleft()
                if not place.done():
                    place.set_result(None)
                    return
        self.holders -= 1
