"""What the running server holds: the sandbox, the database, tokens, live sessions."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from starlette.requests import HTTPConnection

from sandbox import Backend
from sandbox.docker import DockerBackend, new_owner_id
from sandbox.local import LocalBackend
from server.auth import Tokens
from server.config import Settings
from server.runs import RunService
from storage import Database

if TYPE_CHECKING:
    from server.session import Session

log = logging.getLogger(__name__)

DRAIN_SECONDS = 10.0


def make_backend(settings: Settings) -> Backend:
    if settings.backend == "local":
        return LocalBackend(settings.limits, settings.pool_size)
    return DockerBackend(
        settings.limits,
        settings.image,
        settings.docker_url,
        settings.pool_size,
        owner=new_owner_id(settings.instance_prefix),
        runtime=settings.runtime,
    )


@dataclass
class Services:
    settings: Settings
    backend: Backend
    db: Database
    tokens: Tokens
    runs: RunService
    sessions: set[Session] = field(default_factory=set)

    @classmethod
    async def open(cls, settings: Settings) -> Services:
        backend = make_backend(settings)
        await backend.open()
        db = Database(settings.db_url)
        try:
            await db.open()
        except BaseException:
            await backend.close()
            raise
        return cls(
            settings=settings,
            backend=backend,
            db=db,
            tokens=Tokens.from_settings(settings),
            runs=RunService(
                backend,
                db,
                stdin_bytes=settings.stdin_bytes,
                max_runs=settings.max_runs,
                max_runs_per_user=settings.max_runs_per_user,
            ),
        )

    async def drain(self) -> None:
        """Stop every run and let each client hear how it ended, before sockets close."""
        if not self.sessions:
            return
        log.info("stopping %d session(s)", len(self.sessions))
        try:
            async with asyncio.timeout(DRAIN_SECONDS):
                await asyncio.gather(*(s.shutdown() for s in list(self.sessions)))
        except TimeoutError:
            log.error("sessions did not stop within %.0f s", DRAIN_SECONDS)

    async def close(self) -> None:
        await self.drain()
        await self.runs.kill_all()
        await self.backend.close()
        await self.db.close()


def services(conn: HTTPConnection) -> Services:
    return conn.app.state.services  # type: ignore[no-any-return]
