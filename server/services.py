"""What the running server holds: the sandbox, the database, tokens, runs, its lease."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from starlette.requests import HTTPConnection

from sandbox import LANGUAGES, Backend
from sandbox.docker import DockerBackend, new_owner_id
from sandbox.local import LocalBackend
from server.auth import Passwords, Tokens
from server.config import Settings
from server.lease import Lease
from server.retention import Retention
from server.runs import RunService
from storage import Database

if TYPE_CHECKING:
    from server.session import Session

log = logging.getLogger(__name__)

CLOSE_SECONDS = 5.0
"""At shutdown, how long sessions get to send their last frames once their runs are stopped."""


def make_backend(settings: Settings, owner: str) -> Backend:
    if settings.backend == "local":
        return LocalBackend(
            settings.limits,
            settings.pool_min,
            pool_max=settings.pool_max,
            pool_memory_bytes=settings.pool_memory_bytes,
            pool_shrink_seconds=settings.pool_shrink_seconds,
        )
    return DockerBackend(
        settings.limits,
        settings.image,
        settings.docker_url,
        settings.pool_min,
        owner=owner,
        idle_seconds=settings.pool_idle_seconds,
        engine_timeout=settings.engine_timeout,
        runtime=settings.runtime,
        pool_max=settings.pool_max,
        pool_memory_bytes=settings.pool_memory_bytes,
        pool_shrink_seconds=settings.pool_shrink_seconds,
        engine_concurrency=settings.engine_concurrency,
    )


@dataclass
class Services:
    settings: Settings
    backend: Backend
    db: Database
    tokens: Tokens
    passwords: Passwords
    runs: RunService
    lease: Lease
    retention: Retention
    sessions: set[Session] = field(default_factory=set)
    """Open sockets, so shutdown can say goodbye to each; their runs are ``runs``'s."""

    @classmethod
    async def open(cls, settings: Settings) -> Services:
        instance_id = new_owner_id(settings.instance_prefix)
        db = Database(settings.db_url)
        await db.open()  # brings the schema up to date
        backend = make_backend(settings, instance_id)
        lease = Lease(
            db,
            backend,
            instance_id,
            ttl=settings.lease_seconds,
            heartbeat=settings.heartbeat_seconds,
            sweep_every=settings.sweep_seconds,
        )
        try:
            # The lease first: once the backend opens, containers carry our id, and a
            # neighbour sweeping must find our lease alive.
            await lease.acquire()
            await backend.open()
        except BaseException:
            await lease.release()
            await db.close()
            raise
        try:
            await lease.sweep()
        except Exception:
            log.exception("sweeping dead instances at start failed")
        lease.start()
        runs = RunService(
            backend,
            db,
            instance_id=instance_id,
            stdin_bytes=settings.stdin_bytes,
            max_runs=settings.max_runs,
            max_runs_per_user=settings.max_runs_per_user,
            checkpoint_seconds=settings.checkpoint_seconds,
            queue_max=settings.queue_max,
            queue_per_user=settings.queue_per_user,
            pool_stats=backend.pool.stats,
        )
        runs.open()
        retention = Retention(
            db,
            days=settings.history_days,
            per_user=settings.history_per_user,
            interval=settings.history_purge_seconds,
        )
        retention.start()
        return cls(
            settings=settings,
            backend=backend,
            db=db,
            tokens=Tokens.from_settings(settings),
            passwords=Passwords(settings.hash_concurrency),
            runs=runs,
            lease=lease,
            retention=retention,
        )

    def count_languages(self) -> None:
        """Tell the pool how many open sessions have each language chosen."""
        chosen = Counter(s.language for s in self.sessions if s.language is not None)
        for language in LANGUAGES:
            self.backend.pool.demand(language, chosen[language])

    async def drain(self) -> None:
        """Stop every run, let each client hear how it ended, then close the sockets."""
        await self.runs.shutdown()
        if not self.sessions:
            return
        try:
            async with asyncio.timeout(CLOSE_SECONDS):
                await asyncio.gather(*(s.shutdown() for s in list(self.sessions)))
        except TimeoutError:
            log.error("sessions did not close within %.0f s", CLOSE_SECONDS)

    async def close(self) -> None:
        await self.drain()
        await self.retention.stop()
        await self.backend.close()
        await self.lease.release()
        await self.db.close()


def services(conn: HTTPConnection) -> Services:
    return conn.app.state.services  # type: ignore[no-any-return]
