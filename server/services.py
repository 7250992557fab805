"""What the running server holds: the sandbox, the database, tokens, runs, its lease."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from starlette.requests import HTTPConnection

from sandbox import LANGUAGES, Backend
from sandbox.container import new_owner_id
from sandbox.docker import DockerBackend
from sandbox.engines import EnginesBackend
from sandbox.local import LocalBackend
from server.auth import Passwords, Tokens
from server.config import Settings
from server.lease import Lease
from server.reattach import LiveRuns
from server.retention import Retention
from server.runs import RunService
from server.slots import SharedSlots
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
            compile_limits=settings.compile_limits,
        )
    engines = [docker_backend(settings, owner, url) for url in settings.docker_url_list]
    if len(engines) == 1:
        return engines[0]
    return EnginesBackend(engines, probe_seconds=settings.engine_probe_seconds)


def docker_backend(settings: Settings, owner: str, url: str | None) -> DockerBackend:
    return DockerBackend(
        settings.limits,
        settings.image,
        url,
        settings.pool_min,
        owner=owner,
        idle_seconds=settings.pool_idle_seconds,
        engine_timeout=settings.engine_timeout,
        runtime=settings.runtime,
        pool_max=settings.pool_max,
        pool_memory_bytes=settings.pool_memory_bytes,
        pool_shrink_seconds=settings.pool_shrink_seconds,
        engine_concurrency=settings.engine_concurrency,
        compile_limits=settings.compile_limits,
        preload=settings.python_preload,
    )


def shared_slots(settings: Settings, db: Database, instance_id: str) -> SharedSlots | None:
    """Slots shared with other replicas, except on SQLite: one file, one server."""
    if db.url.get_backend_name() == "sqlite":
        return None
    return SharedSlots(
        db,
        instance_id,
        max_runs=settings.max_runs,
        max_per_user=settings.max_runs_per_user,
        poll_seconds=settings.slot_poll_seconds,
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
    live: LiveRuns
    sessions: set[Session] = field(default_factory=set)
    """Open sockets, so shutdown can say goodbye to each; their runs are ``runs``'s."""

    @classmethod
    async def open(cls, settings: Settings) -> Services:
        instance_id = new_owner_id(settings.instance_prefix)
        db = Database(settings.db_url, settings.database_pool_size)
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
        slots = shared_slots(settings, db, instance_id)
        if slots is not None:
            await slots.open()
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
            slots=slots,
            test_concurrency=settings.test_concurrency,
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
            live=LiveRuns(settings.reattach_seconds, settings.reattach_replay_bytes),
        )

    def count_languages(self) -> None:
        """Tell the pool how many open sessions have each language chosen."""
        chosen = Counter(s.language for s in self.sessions if s.language is not None)
        preloads = Counter(s.language for s in self.sessions if s.preload)
        for language in LANGUAGES:
            self.backend.pool.demand(language, chosen[language], preloads[language])

    async def drain(self) -> None:
        """Stop every run, let each client hear how it ended, then close the sockets."""
        await self.runs.shutdown()
        await self.live.close()
        if not self.sessions:
            return
        try:
            async with asyncio.timeout(CLOSE_SECONDS):
                await asyncio.gather(*(s.shutdown() for s in list(self.sessions)))
        except TimeoutError:
            log.error("sessions did not close within %.0f s", CLOSE_SECONDS)

    async def close(self) -> None:
        await self.drain()
        if self.runs.slots is not None:
            await self.runs.slots.close()
        await self.retention.stop()
        await self.backend.close()
        await self.lease.release()
        await self.db.close()


def services(conn: HTTPConnection) -> Services:
    return conn.app.state.services  # type: ignore[no-any-return]
