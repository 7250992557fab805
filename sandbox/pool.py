"""Warm sandboxes: started ahead with their launcher waiting, each used for one run only.

How many are kept follows demand: the editor sessions that announced a language, the recent
run rate, and reservations (a teacher warming up for a lesson); always within a minimum, a
maximum and a memory budget shared by every launcher.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections import deque
from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from sandbox.languages import LANGUAGES, Language, compiler, preloading, sandboxes
from sandbox.model import Process

log = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)

_RETRY_SECONDS = (0.5, 1, 2, 5, 10)
# Let the run that just took a process get going before making its replacement: creating a
# container competes with that run for the engine and the CPU (measured: ~3 ms of its first
# output on two cores).
_REFILL_DELAY = 0.15
CHECK_SECONDS = 1.0
"""How often idle processes are checked for life, and demand is looked at again."""
RATE_SECONDS = 60.0
"""Time constant of the run rate: a run counts for about this long, fading."""
START_SECONDS = 0.5
"""What a sandbox takes to start before one was timed (the pool keeps a moving average)."""


def wanted(
    minimum: int, maximum: int, reserved: int, sessions: int, rate: float, start_seconds: float
) -> int:
    """Warm processes one launcher wants: a ready one for every announced session, plus the
    runs expected while a replacement starts; never below the minimum plus reservations."""
    demand = sessions + math.ceil(rate * start_seconds)
    return min(maximum, max(minimum + reserved, demand))


def allocate(
    wants: Mapping[K, int], floors: Mapping[K, int], costs: Mapping[K, int], budget: int
) -> dict[K, int]:
    """Targets within a memory budget: every floor first (as far as the budget goes), then
    the rest of what each wants, one process at a time in turn, so no launcher starves."""
    targets: dict[K, int] = {}
    left = budget
    for key, want in wants.items():
        cost = costs[key]
        floor = min(floors[key], want)
        targets[key] = min(floor, left // cost) if cost else floor
        left -= targets[key] * cost
    growing = True
    while growing:
        growing = False
        for key, want in wants.items():
            if targets[key] < want and costs[key] <= left:
                targets[key] += 1
                left -= costs[key]
                growing = True
    return targets


class PoolView(Protocol):
    """What the server steers and reports of warm processes, one pool or several."""

    @property
    def failing(self) -> set[str]:
        """Launchers (named by a language) whose last warm sandbox failed to start."""

    def demand(self, language_id: str, sessions: int, preloaded: int = 0) -> None: ...

    def reserve(self, language: Language, count: int, seconds: float) -> int: ...

    def stats(self) -> dict[str, dict[str, int]]: ...


@dataclass
class _Lane:
    """The warm processes of one launcher, and what it knows of their demand."""

    language: Language
    """The representative language: the first registered with this launcher."""
    cost: int = 0
    """Bytes of memory one idle process holds."""
    idle: deque[tuple[float, Process]] = field(default_factory=deque)
    """Oldest first, each with the loop time after which it is not handed out any more."""
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    target: int = 0
    making: int = 0
    failures: int = 0
    sessions: dict[str, int] = field(default_factory=dict)
    reservations: list[tuple[float, int]] = field(default_factory=list)
    rate: float = 0.0
    rate_at: float = 0.0
    start_seconds: float = START_SECONDS
    surplus_since: float | None = None
    hits: int = 0
    misses: int = 0

    @property
    def reserved(self) -> int:
        return sum(count for _, count in self.reservations)


class Pool:
    """Keeps ready processes per launcher, as many as demand asks, refilled in the background.

    Languages that share a launcher (JavaScript and TypeScript both start Node.js) share
    its warm processes. A process leaves the pool for exactly one run and never comes back.
    A process older than ``lifetime`` seconds is never handed out: it is replaced (a sandbox
    may end itself when it waited too long for a program); one found dead is replaced too.
    Processes beyond the target are removed once they have been surplus for
    ``shrink_seconds``. ``maximum`` 0 turns the pool off. ``kinds`` are the kinds of
    processes kept (by default ``sandboxes()``).
    """

    def __init__(
        self,
        prepare: Callable[[Language], Awaitable[Process]],
        minimum: int,
        maximum: int | None = None,
        lifetime: float | None = None,
        memory_bytes: int | None = None,
        cost: Callable[[Language], int] = lambda language: 0,
        shrink_seconds: float = 60.0,
        kinds: Sequence[Language] | None = None,
    ) -> None:
        self._prepare = prepare
        self.minimum = minimum
        self.maximum = minimum if maximum is None else maximum
        self.lifetime = lifetime
        self.memory_bytes = memory_bytes
        self.shrink_seconds = shrink_seconds
        self._cost = cost
        # One lane per kind of container (launcher and limits), compile containers included.
        self._lanes: dict[tuple[object, ...], _Lane] = {}
        for language in sandboxes() if kinds is None else kinds:
            self._lanes.setdefault(language.sandbox, _Lane(language))
        self._keepers: list[asyncio.Task[None]] = []
        self._makers: set[asyncio.Task[Any]] = set()
        self._removers: set[asyncio.Task[Any]] = set()
        self.failing: set[str] = set()
        """Launchers (named by a language) whose last attempt at a warm sandbox failed."""
        self.paused = False
        """Nothing is made while paused (the engine is down); what is idle stays."""

    @property
    def on(self) -> bool:
        return self.maximum > 0

    def start(self) -> None:
        if not self.on:
            return
        for lane in self._lanes.values():
            lane.cost = self._cost(lane.language)  # known once the backend is open
        self._retarget()
        for lane in self._lanes.values():
            self._keepers.append(
                asyncio.create_task(self._keep(lane), name=f"pool-{lane.language.id}")
            )

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        self.paused = False
        for lane in self._lanes.values():
            lane.wake.set()

    # Demand ---------------------------------------------------------------------------------

    def demand(self, language_id: str, sessions: int, preloaded: int = 0) -> None:
        """``sessions`` open editor sessions now have ``language_id`` chosen (a compiled
        language wants a compile container ready too); ``preloaded`` of them hold a program
        that starts sooner in a preloading container, kept for them when there are any."""
        language = LANGUAGES[language_id]
        preloading_lane = (
            self._lanes.get(preloading(language).sandbox) if language.preload_for else None
        )
        if preloading_lane is not None:
            preloading_lane.sessions[language_id] = preloaded
            sessions -= preloaded
        self._lanes[language.sandbox].sessions[language_id] = sessions
        if language.compile_stage is not None:
            self._lanes[compiler(language).sandbox].sessions[language_id] = sessions
        self._retarget()

    def reserve(self, language: Language, count: int, seconds: float) -> int:
        """Keep ``count`` more warm processes for ``seconds`` (a lesson about to start), as
        far as the maximum and the memory budget allow; returns how many were granted. A
        compiled language gets as many compile containers as it was granted, budget allowing."""
        if not self.on or count <= 0 or seconds <= 0:
            return 0
        granted = self._reserve(self._lanes[language.sandbox], count, seconds)
        if granted and language.compile_stage is not None:
            self._reserve(self._lanes[compiler(language).sandbox], granted, seconds)
        return granted

    def _reserve(self, lane: _Lane, count: int, seconds: float) -> int:
        self._expire(asyncio.get_running_loop().time())
        floor = self.minimum + lane.reserved
        room = self.maximum - floor
        if self.memory_bytes is not None and lane.cost:
            used = sum(
                (self.minimum + other.reserved) * other.cost for other in self._lanes.values()
            )
            room = min(room, (self.memory_bytes - used) // lane.cost)
        granted = max(0, min(count, room))
        if granted:
            expires = asyncio.get_running_loop().time() + seconds
            lane.reservations.append((expires, granted))
            self._retarget()
        return granted

    def stats(self) -> dict[str, dict[str, int]]:
        """Per launcher, named by its first language: target size, idle, hits and misses."""
        return {
            lane.language.lane: {
                "size": lane.target,
                "idle": len(lane.idle),
                "hits": lane.hits,
                "misses": lane.misses,
            }
            for lane in self._lanes.values()
        }

    def target(self, language: Language) -> int:
        return self._lanes[language.sandbox].target

    def _retarget(self) -> None:
        """Work out every launcher's target again; wake those that should grow."""
        now = asyncio.get_running_loop().time()
        self._expire(now)
        wants, floors, costs = {}, {}, {}
        for key, lane in self._lanes.items():
            rate = self._rate(lane, now)
            wants[key] = wanted(
                self.minimum,
                self.maximum,
                lane.reserved,
                sum(lane.sessions.values()),
                rate,
                lane.start_seconds,
            )
            floors[key] = self.minimum + lane.reserved
            costs[key] = lane.cost
        if self.memory_bytes is None:
            targets = wants
        else:
            targets = allocate(wants, floors, costs, self.memory_bytes)
        for key, lane in self._lanes.items():
            if targets[key] > lane.target:
                lane.wake.set()
            lane.target = targets[key] if self.on else 0

    def _expire(self, now: float) -> None:
        for lane in self._lanes.values():
            lane.reservations = [(end, n) for end, n in lane.reservations if end > now]

    @staticmethod
    def _rate(lane: _Lane, now: float) -> float:
        """Runs per second lately, fading with ``RATE_SECONDS``."""
        return lane.rate * math.exp(-(now - lane.rate_at) / RATE_SECONDS)

    # Taking ---------------------------------------------------------------------------------

    def take(self, language: Language) -> Process | None:
        """A ready process for ``language``, or None when the pool has none right now."""
        lane = self._lanes[language.sandbox]
        now = asyncio.get_running_loop().time()
        lane.rate, lane.rate_at = self._rate(lane, now) + 1 / RATE_SECONDS, now
        self._drop_unusable(lane)
        if not lane.idle:
            lane.misses += 1
            self._retarget()
            return None
        lane.hits += 1
        _, process = lane.idle.popleft()
        self._retarget()
        lane.wake.set()
        return process

    def idle(self, language: Language) -> int:
        return len(self._lanes[language.sandbox].idle)

    def _drop_unusable(self, lane: _Lane) -> None:
        """Remove the idle processes that expired or died: nobody may take them."""
        now = asyncio.get_running_loop().time()
        keep = deque((end, p) for end, p in lane.idle if end > now and p.alive())
        if len(keep) == len(lane.idle):
            return
        gone = [p for end, p in lane.idle if end <= now or not p.alive()]
        lane.idle = keep
        for process in gone:
            self._spawn(process.remove(), self._removers)

    # Keeping --------------------------------------------------------------------------------

    async def _keep(self, lane: _Lane) -> None:
        """Drop what cannot be used, shrink what is not needed, make what is missing; then
        wait for a take, a change of target, or the next check."""
        loop = asyncio.get_running_loop()
        while True:
            self._retarget()
            self._drop_unusable(lane)
            self._shrink(lane, loop.time())
            missing = 0 if self.paused else lane.target - len(lane.idle) - lane.making
            for _ in range(missing):
                lane.making += 1
                self._spawn(self._make(lane), self._makers)
            lane.wake.clear()
            woken = False
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CHECK_SECONDS):
                    await lane.wake.wait()
                    woken = True
            if woken:
                await asyncio.sleep(_REFILL_DELAY)

    def _shrink(self, lane: _Lane, now: float) -> None:
        """Processes beyond the target go once they have been surplus for a while."""
        if len(lane.idle) <= lane.target:
            lane.surplus_since = None
            return
        if lane.surplus_since is None:
            lane.surplus_since = now
        if now - lane.surplus_since < self.shrink_seconds:
            return
        while len(lane.idle) > lane.target:
            _, process = lane.idle.popleft()  # the oldest: the nearest to its end anyway
            self._spawn(process.remove(), self._removers)
        lane.surplus_since = None

    async def _make(self, lane: _Lane) -> None:
        loop = asyncio.get_running_loop()
        language = lane.language
        try:
            began = loop.time()
            process = await self._prepare(language)
            # A moving average of start times: how far ahead the run rate must be met.
            lane.start_seconds += (loop.time() - began - lane.start_seconds) / 8
            # Counted from before the start: the sandbox's own idle clock began inside it.
            expires = began + self.lifetime if self.lifetime else float("inf")
            lane.idle.append((expires, process))
            lane.failures = 0
            self.failing.discard(language.id)
        except Exception as exc:
            delay = _RETRY_SECONDS[min(lane.failures, len(_RETRY_SECONDS) - 1)]
            lane.failures += 1
            self.failing.add(language.id)
            log.warning("warm %s sandbox failed (%s); retrying in %s s", language.id, exc, delay)
            await asyncio.sleep(delay)
        finally:
            lane.making -= 1
            lane.wake.set()

    @staticmethod
    def _spawn(work: Awaitable[Any], tasks: set[asyncio.Task[Any]]) -> None:
        task = asyncio.ensure_future(work)
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async def close(self) -> None:
        """Stop refilling and remove every idle process."""
        # A start cancelled half-way removes what it made (see the backends' prepare).
        stopping = [*self._keepers, *self._makers]
        for task in stopping:
            task.cancel()
        for task in stopping:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._keepers.clear()
        processes = [p for lane in self._lanes.values() for _, p in lane.idle]
        for lane in self._lanes.values():
            lane.idle.clear()
        await asyncio.gather(
            *(p.remove() for p in processes), *self._removers, return_exceptions=True
        )
