"""Run slots, in all and per user, and a fair queue for the runs that wait for one.

When every slot is taken a run waits its turn instead of being refused. Turns go round the
users: of the users with a run waiting that may start (below their own cap), the one served
least recently goes next, and each user's runs go in the order they came. So one user's many
tabs (or a grader's 20 parallel requests) cannot starve a class, and a newcomer overtakes a
user who already has runs going. The queue is bounded, in all and per user: past that a run
is refused at once, since waiting longer would help nobody.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from sandbox import SandboxError, TooManyRuns

RETRY_AFTER_SECONDS = 5
"""What a refused client is told to wait: about how long a typical teaching run takes."""


class ServerBusy(SandboxError):
    """Every slot is taken and the queue is full: the server as a whole is overloaded."""

    code = "server_busy"


@dataclass(eq=False)
class Waiter:
    """One run waiting for a slot."""

    user_id: int
    seq: int
    position: int = 0
    """1 for the next run to start; kept up to date while it waits."""
    granted: bool = False
    since: float = field(default_factory=time.monotonic)
    wake: asyncio.Event = field(default_factory=asyncio.Event)


Notify = Callable[[int], Awaitable[None]]


class RunQueue:
    """Slots for ``max_runs`` runs in all and ``max_per_user`` per user, and who waits."""

    def __init__(
        self, max_runs: int, max_per_user: int, queue_max: int, queue_per_user: int
    ) -> None:
        self.max_runs = max_runs
        self.max_per_user = max_per_user
        self.queue_max = queue_max
        self.queue_per_user = queue_per_user
        self.running: Counter[int] = Counter()
        self._waiting: dict[int, deque[Waiter]] = {}
        self._served: dict[int, int] = {}
        """Per user with runs going or waiting: the number of their last turn (lower: longer
        ago). Forgotten when they have neither, so a returning user counts as new."""
        self._turns = itertools.count(1)
        self._arrivals = itertools.count()

    @property
    def depth(self) -> int:
        """Runs waiting, in all."""
        return sum(len(waiting) for waiting in self._waiting.values())

    def waiting(self, user_id: int) -> int:
        return len(self._waiting.get(user_id, ()))

    async def acquire(self, user_id: int, notify: Notify | None = None) -> float:
        """Take a slot for one of ``user_id``'s runs, waiting for it if need be; the seconds
        waited. ``notify`` hears the run's position whenever it changes while it waits.

        Raises ``ServerBusy`` or ``TooManyRuns`` when the queue is full. Cancelled while it
        waits, the run leaves the queue (and gives back a slot it was just granted).
        """
        if self._may_start(user_id) and not self._ready():
            self._grant(user_id)
            return 0.0
        waiter = self._enqueue(user_id)
        told = 0
        try:
            while True:
                waiter.wake.clear()
                if waiter.granted:
                    return time.monotonic() - waiter.since
                if notify is not None and waiter.position != told:
                    told = waiter.position
                    await notify(told)
                    continue
                await waiter.wake.wait()
        except BaseException:
            self._leave(waiter)
            raise

    def release(self, user_id: int) -> None:
        """A run ended: its slot goes to whoever's turn it is."""
        self.running[user_id] -= 1
        if self.running[user_id] <= 0:
            del self.running[user_id]
            if user_id not in self._waiting:
                self._served.pop(user_id, None)
        self._dispatch()

    # Inside ----------------------------------------------------------------------------------

    def _may_start(self, user_id: int) -> bool:
        return self.running.total() < self.max_runs and self.running[user_id] < self.max_per_user

    def _ready(self) -> list[int]:
        """Users with a run waiting that their own cap lets start."""
        return [u for u in self._waiting if self.running[u] < self.max_per_user]

    def _grant(self, user_id: int) -> None:
        self.running[user_id] += 1
        self._served[user_id] = next(self._turns)

    def _enqueue(self, user_id: int) -> Waiter:
        if self.depth >= self.queue_max:
            raise ServerBusy(
                f"the server runs {self.running.total()} programs and {self.depth} wait: "
                f"try again in {RETRY_AFTER_SECONDS} s"
            )
        if self.waiting(user_id) >= self.queue_per_user:
            raise TooManyRuns(
                f"you have {self.running[user_id]} programs running and "
                f"{self.waiting(user_id)} waiting, the most one user may have"
            )
        waiter = Waiter(user_id, next(self._arrivals))
        self._waiting.setdefault(user_id, deque()).append(waiter)
        self._served.setdefault(user_id, 0)
        self._dispatch()  # also gives the newcomer its position
        return waiter

    def _leave(self, waiter: Waiter) -> None:
        if waiter.granted:
            self.release(waiter.user_id)
            return
        queue = self._waiting.get(waiter.user_id)
        if queue is None or waiter not in queue:
            return
        queue.remove(waiter)
        if not queue:
            del self._waiting[waiter.user_id]
            if not self.running[waiter.user_id]:
                self._served.pop(waiter.user_id, None)
        self._dispatch()

    def _dispatch(self) -> None:
        """Start whoever may start, by turns; then tell the rest where they stand."""
        while self.running.total() < self.max_runs:
            ready = self._ready()
            if not ready:
                break
            user_id = min(ready, key=lambda u: (self._served[u], self._waiting[u][0].seq))
            queue = self._waiting[user_id]
            waiter = queue.popleft()
            if not queue:
                del self._waiting[user_id]
            self._grant(user_id)
            waiter.granted = True
            waiter.wake.set()
        self._number()

    def _number(self) -> None:
        """Each waiting run's position: its place in the order of turns if no user had a cap
        of their own (an estimate for a user at their cap, exact otherwise)."""
        turns = [(self._served[u], queue[0].seq, u) for u, queue in self._waiting.items()]
        heapq.heapify(turns)
        taken = dict.fromkeys(self._waiting, 0)
        turn = max(self._served.values(), default=0)  # simulated turns come after real ones
        position = 0
        while turns:
            _, _, user_id = heapq.heappop(turns)
            queue = self._waiting[user_id]
            waiter = queue[taken[user_id]]
            taken[user_id] += 1
            position += 1
            if waiter.position != position:
                waiter.position = position
                waiter.wake.set()
            if taken[user_id] < len(queue):
                turn += 1
                heapq.heappush(turns, (turn, queue[taken[user_id]].seq, user_id))
