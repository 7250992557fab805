"""Runs that outlive their socket: a replay of their frames, a grace period, and ``attach``.

Each live run's frames go through a ``Channel``: to the socket that holds it (if any), and
into its replay, the frames a socket that attaches later gets first. A socket that closes
without a Stop leaves its run *detached* for ``grace`` seconds: the program keeps running,
its output goes to the replay, and its owner may ``attach`` from a new socket (the editor
does after a reload). Nobody attaches in time: the run is killed, as a disconnect did at
once before (``grace == 0`` still does).

The replay is a list of protocol frames, not raw output, so every kind of frame a run sends
comes back as it was sent. ``started`` and ``stdin_ack`` are not kept: they are state, which
the ``attached`` frame gives as it is now.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Protocol

from pydantic import BaseModel

from server.audit import audit
from server.protocol import Attached, OutputMessage
from server.runs import Execution

log = logging.getLogger(__name__)


class Holder(Protocol):
    """The side of a socket a channel sends to: a ``Session``."""

    async def send(self, message: BaseModel) -> None: ...

    async def displace(self) -> None:
        """Another socket attached to this one's run: let go of it and say why."""


class Channel:
    """One live run's frames: to the socket holding it, and kept for one that attaches."""

    def __init__(self, execution: Execution, holder: Holder | None, replay_bytes: int) -> None:
        self.execution = execution
        self.holder = holder
        self.task: asyncio.Task[None] | None = None
        """The task relaying the run: it goes on whichever socket holds the run, or none."""
        self.ended = False
        """The run's ``exit`` frame was sent (into the replay at least)."""
        self._frames: deque[tuple[BaseModel, int]] = deque()
        self._size = 0
        self._bound = replay_bytes
        self._truncated = False
        self._lock = asyncio.Lock()
        """Held while a frame goes out, and while an attach replays: nothing interleaves."""
        self._grace: asyncio.Task[None] | None = None

    @property
    def run_id(self) -> str:
        return self.execution.run.id

    @property
    def user_id(self) -> int:
        return self.execution.user_id

    async def send(self, message: BaseModel, *, keep: bool = True) -> None:
        """Send a frame of the run to its socket, if it has one; keep it for a replay."""
        async with self._lock:
            if keep:
                self._keep(message)
            if self.holder is not None:
                await self.holder.send(message)

    def _keep(self, message: BaseModel) -> None:
        last = self._frames[-1][0] if self._frames else None
        if (
            isinstance(message, OutputMessage)
            and isinstance(last, OutputMessage)
            and last.stream == message.stream
        ):
            # Consecutive output of one stream is kept as one frame: the replay's size is
            # then about the output's own, which the output cap bounds.
            message = OutputMessage(stream=message.stream, data=last.data + message.data)
            self._size -= self._frames.pop()[1]
        size = len(message.model_dump_json())
        self._frames.append((message, size))
        self._size += size
        while self._size > self._bound and len(self._frames) > 1:
            self._size -= self._frames.popleft()[1]
            self._truncated = True

    async def attach(self, holder: Holder) -> None:
        """Hand the run to ``holder``: ``attached``, the replay, then the live frames."""
        async with self._lock:
            previous, self.holder = self.holder, holder
            self._cancel_grace()
            run = self.execution.run
            sent, acked = run.stdin_counts
            await holder.send(
                Attached(
                    run_id=run.id,
                    language=run.language.id,
                    version=run.version,
                    stdin_window=run.stdin_window,
                    stdin_sent=sent,
                    stdin_acked=acked,
                    execution_id=self.execution.record_id,
                    replay_truncated=self._truncated,
                )
            )
            for message, _ in self._frames:
                await holder.send(message)
        if previous is not None and previous is not holder:
            await previous.displace()

    def detach(self, expire: asyncio.Task[None]) -> None:
        """The socket holding the run is gone; ``expire`` ends the run unless one attaches."""
        self.holder = None
        self._grace = expire

    def _cancel_grace(self) -> None:
        if self._grace is not None and self._grace is not asyncio.current_task():
            self._grace.cancel()
        self._grace = None


class LiveRuns:
    """This server's live runs by id, for ``attach``; detached ones wait out their grace."""

    def __init__(self, grace: float, replay_bytes: int) -> None:
        self.grace = grace
        self.replay_bytes = replay_bytes
        self._channels: dict[str, Channel] = {}
        self._closing = False

    def open(self, execution: Execution, holder: Holder) -> Channel:
        """A run has started for ``holder``'s socket: its frames go through the channel."""
        channel = Channel(execution, holder, self.replay_bytes)
        channel.task = asyncio.current_task()  # type: ignore[assignment]
        self._channels[channel.run_id] = channel
        return channel

    def find(self, run_id: str, user_id: int) -> Channel | None:
        """The user's live run ``run_id``; another user's is not found, as an unknown one."""
        channel = self._channels.get(run_id)
        if channel is None:
            return None
        if channel.user_id != user_id:
            audit("attach_refused", user=user_id, run_id=run_id, reason="not the owner")
            return None
        return channel

    def detach(self, channel: Channel, holder: Holder) -> bool:
        """``holder``'s socket closed without a Stop: keep its run for ``grace`` seconds.

        False when the run is not kept (no grace, or the server is stopping): the caller
        kills it, as a disconnect always did.
        """
        if channel.holder is not holder:
            return True  # another socket holds it now: nothing of ours to end
        if self.grace <= 0 or self._closing:
            return False
        if channel.ended:
            self._channels.pop(channel.run_id, None)
            return True
        expire = asyncio.create_task(self._expire(channel), name=f"grace-{channel.run_id}")
        channel.detach(expire)
        return True

    def ended(self, channel: Channel) -> None:
        """The run's exit frame is out: a socket holding it heard it, so it is forgotten;
        a detached run's stays for the rest of its grace, for its owner to attach and see."""
        channel.ended = True
        if channel.holder is not None:
            self._channels.pop(channel.run_id, None)

    async def _expire(self, channel: Channel) -> None:
        await asyncio.sleep(self.grace)
        if channel.holder is not None:
            return
        self._channels.pop(channel.run_id, None)
        if channel.ended:
            return
        log.info("run %s: nobody attached within %.0f s; killing it", channel.run_id, self.grace)
        await channel.execution.run.kill()
        if channel.task is not None:
            await asyncio.wait({channel.task})

    async def close(self) -> None:
        """Server shutdown: no more detaching; end every run still held for an attach."""
        self._closing = True
        channels = list(self._channels.values())
        self._channels.clear()
        for channel in channels:
            channel._cancel_grace()
            if channel.holder is None:
                await channel.execution.run.kill()
        tasks = {c.task for c in channels if c.task is not None and c.holder is None}
        if tasks:
            await asyncio.wait(tasks)
