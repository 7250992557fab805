"""This server instance's lease, and the sweep of what dead instances left behind.

Every container carries the id of the instance that made it (``execstream.owner``); the
``instances`` table holds each instance's lease, which its heartbeat keeps renewing. Any server
sweeps, at start and then periodically: it removes the containers of instances whose lease it
sees expired, and marks ``interrupted`` the runs they left ``running``.

Only an expired lease condemns an owner. Containers whose owner is not in our database are
left alone, since they may belong to a live server that keeps its leases in another database
(two servers on one engine with separate databases): that server's next start sweeps them, and
their in-container watchdog ends them at their wall time or idle time meanwhile. An instance
writes its lease before it makes any container, so no live server's containers can be found
before its lease.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from datetime import timedelta

from sandbox import Backend
from server.periodic import Pause, Periodic
from storage import Database

log = logging.getLogger(__name__)

FORGET_AFTER = timedelta(days=1)
"""Leases expired this long are deleted: every sweep since has removed what they left."""


class Lease:
    """Holds this instance's lease in the database, renews it, and sweeps dead instances."""

    def __init__(
        self,
        db: Database,
        backend: Backend,
        instance_id: str,
        *,
        ttl: float,
        heartbeat: float,
        sweep_every: float,
    ) -> None:
        self.db = db
        self.backend = backend
        self.id = instance_id
        self.ttl = ttl
        self.heartbeat = heartbeat
        self.sweep_every = sweep_every
        self._beats = Periodic(self._beat)

    async def acquire(self) -> None:
        """Write the lease; call it before the backend makes any container."""
        await self.db.register_instance(self.id, socket.gethostname(), os.getpid(), self.ttl)
        log.info("instance %s", self.id)

    def start(self) -> None:
        self._beats.start("lease")

    async def release(self) -> None:
        """Stop renewing and end the lease now: whatever is left of us may be swept at once."""
        await self._beats.stop()
        try:
            await self.db.release_instance(self.id)
        except Exception:
            log.exception("could not release the lease of instance %s", self.id)

    async def sweep(self) -> tuple[int, int]:
        """Remove dead instances' containers and interrupt their runs; (removed, interrupted)."""
        owners = await self.backend.owners()
        dead = (set(owners) & await self.db.expired_instances()) - {self.id}
        removed = await self.backend.remove_owned_by(dead) if dead else 0
        interrupted = await self.db.interrupt_runs(keep=self.id)
        # Their run slots already stopped counting when their lease expired.
        await self.db.forget_slots(keep=self.id)
        if removed or interrupted:
            log.warning(
                "swept instance(s) %s: %d container(s) removed, %d run(s) interrupted",
                ", ".join(sorted(dead)) or "-",
                removed,
                interrupted,
            )
        await self.db.forget_instances(FORGET_AFTER)
        return removed, interrupted

    async def _beat(self, pause: Pause) -> None:
        loop = asyncio.get_running_loop()
        renewed = loop.time()
        next_sweep = renewed + self.sweep_every
        while await pause(self.heartbeat):
            try:
                if not await self.db.renew_instance(self.id, self.ttl):
                    log.error("the lease of instance %s was gone; writing it again", self.id)
                    await self.acquire()
            except Exception:
                log.exception("could not renew the lease of instance %s", self.id)
                continue
            if loop.time() - renewed > self.ttl:
                # Stalled (event loop or database) past our lease: neighbours may have taken
                # us for dead and removed our containers; the runs they held failed.
                log.error("instance %s renewed its lease too late: it may have been swept", self.id)
            renewed = loop.time()
            if loop.time() < next_sweep:
                continue
            next_sweep = loop.time() + self.sweep_every
            try:
                await self.sweep()
            except Exception:
                log.exception("sweeping dead instances failed")
