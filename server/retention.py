"""Retention of stored runs: the oldest are purged in the background, a little at a time.

Runs older than ``history_days`` go, and past ``history_per_user`` runs a user's oldest go.
Each batch is a short transaction of its own with a pause after it, so a run that starts or
ends meanwhile waits at most one small batch for the database. Runs still ``running`` are
never purged.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from server.periodic import Pause, Periodic
from storage import Database
from storage.models import utc_now

log = logging.getLogger(__name__)

BATCH = 200
PAUSE = 0.05


async def purge(db: Database, *, days: int, per_user: int, batch: int = BATCH) -> int:
    """Purge what retention no longer keeps; how many runs were deleted."""
    deleted = 0
    while n := await db.purge_executions_before(utc_now() - timedelta(days=days), batch):
        deleted += n
        await asyncio.sleep(PAUSE)
    while n := await db.purge_executions_over(per_user, batch):
        deleted += n
        await asyncio.sleep(PAUSE)
    return deleted


class Retention:
    """Purges stored runs every ``interval`` seconds, from start to close."""

    def __init__(self, db: Database, *, days: int, per_user: int, interval: float) -> None:
        self.db = db
        self.days = days
        self.per_user = per_user
        self.interval = interval
        self._loop = Periodic(self._purge)

    def start(self) -> None:
        self._loop.start("retention")

    async def stop(self) -> None:
        await self._loop.stop()

    async def _purge(self, pause: Pause) -> None:
        while True:
            try:
                if deleted := await purge(self.db, days=self.days, per_user=self.per_user):
                    log.info("retention purged %d stored run(s)", deleted)
            except Exception:
                log.exception("purging old runs failed")
            if not await pause(self.interval):
                return
