"""Run slots shared by the replicas of one database, so the caps hold across them.

Each replica's own queue (server/queue.py) orders its waiting runs fairly and holds the caps
among its own runs; a run it admits then takes a slot in the shared database, which holds the
caps among every live replica's runs. When the shared slots are full the run waits: woken
when any replica frees a slot (PostgreSQL's LISTEN/NOTIFY), and in any case trying again
every ``poll_seconds`` (a lost notification, or a slot freed by a replica's lease expiring).
A replica that dies stops holding slots when its lease expires. With one SQLite file there is
one server, and this layer is off.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from server.queue import Notify
from storage import Database

log = logging.getLogger(__name__)


class SharedSlots:
    def __init__(
        self,
        db: Database,
        instance_id: str,
        *,
        max_runs: int,
        max_per_user: int,
        poll_seconds: float,
    ) -> None:
        self.db = db
        self.instance_id = instance_id
        self.max_runs = max_runs
        self.max_per_user = max_per_user
        self.poll_seconds = poll_seconds
        self.waiting = 0
        """This replica's runs waiting for a shared slot."""
        self._freed = asyncio.Event()
        self._unfreed: list[int] = []
        """Slots whose freeing failed: tried again at the next free (else they would count
        until our lease ends)."""
        self._stop_listening: Callable[[], Awaitable[None]] | None = None

    async def open(self) -> None:
        """Listen for slots freed by any replica; without it, waiting runs only poll."""
        try:
            self._stop_listening = await self.db.listen_for_freed_slots(self._wake)
        except Exception:
            log.exception("cannot listen for freed slots; runs waiting for one will poll")

    async def close(self) -> None:
        if self._stop_listening is not None:
            with contextlib.suppress(Exception):
                await self._stop_listening()
            self._stop_listening = None

    async def take(self, user_id: int, notify: Notify | None = None) -> int:
        """A slot for one of ``user_id``'s runs, waiting while the caps are full; its id.
        ``notify`` hears the run's place among this replica's waiting runs."""
        slot = await self._try(user_id)
        if slot is not None:
            return slot
        self.waiting += 1
        try:
            if notify is not None:
                await notify(self.waiting)
            while slot is None:
                freed = self._freed
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.poll_seconds):
                        await freed.wait()
                slot = await self._try(user_id)
            return slot
        finally:
            self.waiting -= 1

    async def free(self, slot_id: int) -> None:
        """Give a slot back and wake this replica's waiting runs."""
        pending, self._unfreed = [*self._unfreed, slot_id], []
        for slot in pending:
            try:
                await self.db.free_slot(slot)
            except Exception:
                log.exception("could not free run slot %d; trying again later", slot)
                self._unfreed.append(slot)
        self._wake()

    def _wake(self) -> None:
        # Every run waiting now wakes (each held the event it waits on); later ones wait anew.
        self._freed.set()
        self._freed = asyncio.Event()

    async def _try(self, user_id: int) -> int | None:
        return await self.db.take_slot(self.instance_id, user_id, self.max_runs, self.max_per_user)
