"""Run slots shared by the replicas of one database: the per-user and global caps count them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import asyncpg
from sqlalchemy import func, insert, literal, text
from sqlmodel import col, delete, select

from storage.models import Instance, RunSlot, UTCDateTime, utc_now
from storage.store import Store

SLOTS_CHANNEL = "execstream_slots"
"""PostgreSQL channel on which a freed slot is announced to every replica."""
SLOTS_LOCK = 0x65786563_0002
"""PostgreSQL advisory lock key held while a slot is counted and taken (any number no other
code uses): one admission at a time across replicas, each a millisecond or two."""


class Slots(Store):
    """Slots taken at admission and freed at a run's end; a dead instance's stop counting."""

    async def take_slot(
        self, instance_id: str, user_id: int, max_runs: int, max_per_user: int
    ) -> int | None:
        """Take a run slot for ``user_id`` if the slots of live instances leave room under
        both caps; its id, or None when full. Atomic across replicas: on PostgreSQL an
        advisory lock orders the count and the insert; SQLite lets one writer in at a time,
        and ``BEGIN IMMEDIATE`` is not needed since one process holds one connection."""
        now = utc_now()
        live = select(Instance.id).where(col(Instance.expires_at) > now)
        ours = col(RunSlot.instance_id).in_(live)
        taken = select(func.count()).where(ours).scalar_subquery()
        mine = select(func.count()).where(ours, col(RunSlot.user_id) == user_id).scalar_subquery()
        # One statement counts and inserts: the lock is held for a single round trip.
        room = select(literal(instance_id), literal(user_id), literal(now, UTCDateTime())).where(
            taken < max_runs, mine < max_per_user
        )
        take = (
            insert(RunSlot)
            .from_select(["instance_id", "user_id", "taken_at"], room)
            .returning(col(RunSlot.id))
        )
        async with self._session() as session:
            connection = await session.connection()
            if self.url.get_backend_name() == "postgresql":
                # Taken before the statement starts: READ COMMITTED then sees every slot
                # committed by whoever held the lock before us.
                lock = text("SELECT pg_advisory_xact_lock(:key)")
                await connection.execute(lock, {"key": SLOTS_LOCK})
            slot = (await connection.execute(take)).scalar_one_or_none()
            await session.commit()
        return slot

    async def free_slot(self, slot_id: int) -> None:
        """Give a slot back; on PostgreSQL every replica listening hears it at commit."""
        async with self._session() as session:
            await session.exec(delete(RunSlot).where(col(RunSlot.id) == slot_id))
            if self.url.get_backend_name() == "postgresql":
                connection = await session.connection()
                await connection.execute(text(f"NOTIFY {SLOTS_CHANNEL}"))
            await session.commit()

    async def listen_for_freed_slots(
        self, callback: Callable[[], None]
    ) -> Callable[[], Awaitable[None]] | None:
        """PostgreSQL: call ``callback`` whenever any replica frees a slot, on a connection
        of its own (a listening connection cannot go back to the pool); returns what closes
        it. None on other databases, where no one else frees slots."""
        if self.url.get_backend_name() != "postgresql":
            return None
        dsn = self.url.set(drivername="postgresql").render_as_string(hide_password=False)
        connection = await asyncpg.connect(dsn)
        await connection.add_listener(SLOTS_CHANNEL, lambda *_: callback())
        return connection.close  # type: ignore[no-any-return]

    async def forget_slots(self, keep: str) -> int:
        """Delete the slots of instances without a live lease (they count no more), never
        those of ``keep``; how many there were."""
        live = select(Instance.id).where(col(Instance.expires_at) > utc_now())
        query = (
            delete(RunSlot)
            .where(col(RunSlot.instance_id) != keep)
            .where(col(RunSlot.instance_id).not_in(live))
        )
        async with self._session() as session:
            result = await session.exec(query)
            await session.commit()
        return int(result.rowcount)
