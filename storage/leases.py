"""Server instances and their leases: who is alive, and the runs of those who are not."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import or_, update
from sqlmodel import col, delete, select

from storage.executions import INTERRUPTED, RUNNING
from storage.models import CodeExecution, Instance, utc_now
from storage.store import Store


class Leases(Store):
    """Each server's lease, renewed while it lives; what a dead one left is taken back."""

    async def register_instance(self, instance_id: str, host: str, pid: int, ttl: float) -> None:
        """Write this server's lease; it must exist before anything is labelled with its id."""
        now = utc_now()
        instance = Instance(
            id=instance_id,
            host=host,
            pid=pid,
            started_at=now,
            heartbeat_at=now,
            expires_at=now + timedelta(seconds=ttl),
        )
        async with self._session() as session:
            session.add(instance)
            await session.commit()

    async def renew_instance(self, instance_id: str, ttl: float) -> bool:
        """Extend a lease by ``ttl`` from now; False when the row is gone."""
        now = utc_now()
        query = (
            update(Instance)
            .where(col(Instance.id) == instance_id)
            .values(heartbeat_at=now, expires_at=now + timedelta(seconds=ttl))
        )
        async with self._session() as session:
            result = await session.exec(query)
            await session.commit()
        return bool(result.rowcount)

    async def release_instance(self, instance_id: str) -> None:
        """End a lease now (a clean shutdown): what is left of it may be swept at once."""
        query = update(Instance).where(col(Instance.id) == instance_id).values(expires_at=utc_now())
        async with self._session() as session:
            await session.exec(query)
            await session.commit()

    async def expired_instances(self) -> set[str]:
        """The instances whose lease has run out."""
        query = select(Instance.id).where(col(Instance.expires_at) <= utc_now())
        async with self._session() as session:
            return set((await session.exec(query)).all())

    async def forget_instances(self, expired_for: timedelta) -> int:
        """Delete leases expired longer than ``expired_for`` (long swept by then)."""
        query = delete(Instance).where(col(Instance.expires_at) < utc_now() - expired_for)
        async with self._session() as session:
            result = await session.exec(query)
            await session.commit()
        return int(result.rowcount)

    async def interrupt_runs(self, keep: str) -> int:
        """Mark ``interrupted`` the runs left ``running`` by instances without a live lease
        (expired or forgotten), never those of ``keep`` (the caller); how many there were.

        Runs in this database are only ever started by instances registered in it, so an
        instance missing from it is long dead.
        """
        live = select(Instance.id).where(col(Instance.expires_at) > utc_now())
        query = (
            update(CodeExecution)
            .where(col(CodeExecution.status) == RUNNING)
            .where(
                or_(
                    col(CodeExecution.instance_id).is_(None),
                    (col(CodeExecution.instance_id) != keep)
                    & col(CodeExecution.instance_id).not_in(live),
                )
            )
            .values(status=INTERRUPTED)
        )
        async with self._session() as session:
            result = await session.exec(query)
            await session.commit()
        return int(result.rowcount)
