"""Creating and removing containers so that none is left behind, whatever the engine does."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Coroutine
from typing import Any

import aiodocker
import aiohttp
from aiodocker.containers import DockerContainer

from sandbox.gate import Gate

log = logging.getLogger(__name__)

# The engine wraps calls that fail for reasons of its own; these are the ones we expect.
ENGINE_ERRORS = (aiodocker.DockerError, aiohttp.ClientError, OSError, asyncio.TimeoutError)
_RETRY_SECONDS = (1, 5, 30, 60)  # between tries to remove a container the engine refused


REMOVE_TIMEOUT = 15.0
"""Seconds one removal may take before it is left to the retries."""
LULL_SECONDS = 0.5
"""A finished container is removed once no program has started for this long: a class
presses Run within a second or so, and tearing the first containers down while the others
start made every later first output wait (bench/results/burst.md)."""
LATER_SECONDS = 10.0
"""Seconds a finished container waits for a lull at most, under a steady stream of runs."""
LATER_MAX = 64
"""Finished containers waiting at most; past that, removals begin at once."""


class Remover:
    """Removes containers within a bounded time, and never raises.

    A container the engine would not remove (an error, or no answer in time) is kept and
    retried in the background, with growing pauses, for as long as the backend is open.
    What is still there when it closes is logged and left to the sweep of the containers of
    dead instances (it carries our owner label); its init has stopped it by then anyway.
    """

    def __init__(self, timeout: float, gate: Gate | None = None) -> None:
        self.timeout = timeout
        self.failed: dict[str, DockerContainer] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._retrying: asyncio.Task[None] | None = None
        self._gate = gate or Gate(1_000_000)
        self._waiting = 0
        self._closing = asyncio.Event()
        self._last_start = 0.0
        self.finishing = 0
        """Finished containers handed to ``remove_later`` and not yet removed."""

    async def remove(self, container: DockerContainer) -> bool:
        """Whether the container is gone; if not, it is retried later."""
        # A task of ours, so that ``close`` waits for removals under way.
        if await asyncio.shield(self._spawn(self._attempt(container))):
            return True
        if self._retrying is None or self._retrying.done():
            self._retrying = self._spawn(self._retry())
        return False

    async def _attempt(self, container: DockerContainer) -> bool:
        """One bounded try; a container that is still there is kept for the next."""
        try:
            async with asyncio.timeout(self.timeout):
                await remove_container(container)
        except ENGINE_ERRORS as exc:
            log.warning("could not remove container %s: %s", container.id[:12], describe(exc))
            self.failed[container.id] = container
            return False
        self.failed.pop(container.id, None)
        return True

    def started(self) -> None:
        """A program starts now: removals wait for a lull."""
        self._last_start = asyncio.get_running_loop().time()

    def remove_later(self, container: DockerContainer) -> None:
        """Remove a container whose program has ended, once the engine has time: when no
        program has started for a while, as background work of the engine's gate (starts
        that runs wait for go first)."""
        self.finishing += 1
        task = self._spawn(self._remove_later(container))
        task.add_done_callback(self._finished)

    def _finished(self, _: asyncio.Task[Any]) -> None:
        self.finishing -= 1

    async def _remove_later(self, container: DockerContainer) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + LATER_SECONDS
        self._waiting += 1
        try:
            while self._waiting <= LATER_MAX and not self._closing.is_set():
                pause = min(self._last_start + LULL_SECONDS, deadline) - loop.time()
                if pause <= 0:
                    break
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(pause):
                        await self._closing.wait()
        finally:
            self._waiting -= 1
        async with self._gate.hold(background=True):
            await self.remove(container)

    def remove_when_made(self, creating: asyncio.Future[DockerContainer]) -> None:
        """For a create we stopped waiting for: remove the container if the engine makes it
        (``close`` waits for that a while)."""
        self._spawn(self._remove_when_made(creating))

    async def _remove_when_made(self, creating: asyncio.Future[DockerContainer]) -> None:
        try:
            container = await creating
        except ENGINE_ERRORS:
            return  # never made
        await self.remove(container)

    async def _retry(self) -> None:
        for delay in itertools.chain(_RETRY_SECONDS, itertools.repeat(_RETRY_SECONDS[-1])):
            await asyncio.sleep(delay)
            for container in list(self.failed.values()):
                await self._attempt(container)
            if not self.failed:
                return

    def _spawn(self, work: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def close(self) -> None:
        """One last bounded try for what is left; the rest goes to the sweep."""
        self._closing.set()  # what waits to be removed later goes now
        if self._retrying is not None:
            self._retrying.cancel()
        pending = [task for task in self._tasks if task is not self._retrying]
        if pending:
            await asyncio.wait(pending, timeout=self.timeout)
        for container in list(self.failed.values()):
            await self._attempt(container)
        if self.failed:
            log.error(
                "left %d container(s) the engine would not remove, for the sweep: %s",
                len(self.failed),
                ", ".join(id_[:12] for id_ in self.failed),
            )


async def create_container(
    docker: aiodocker.Docker, config: dict[str, Any], remover: Remover
) -> DockerContainer:
    """Create a container. If we stop waiting (cancelled, or out of time), the engine may
    still make it: it is removed when it appears, rather than left behind."""
    creating = asyncio.ensure_future(docker.containers.create(config=config))
    try:
        return await asyncio.shield(creating)
    except asyncio.CancelledError:
        remover.remove_when_made(creating)
        raise


async def remove_container(container: DockerContainer) -> None:
    """Remove a container whatever state it is in; gone already is fine."""
    for attempt in range(3):
        try:
            await container.delete(force=True, v=True)
            return
        except aiodocker.DockerError as exc:
            if exc.status == 404:
                return
            if attempt == 2:
                raise
            await asyncio.sleep(0.2 * (attempt + 1))


def describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "the engine did not answer in time"
    return str(exc) or type(exc).__name__
