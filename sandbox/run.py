"""A run in progress: live output, stdin, signals, and its result.

``Run`` holds the policy every backend shares (wall time, the output cap, how a run's
status is decided, cleanup); a backend only supplies a ``Process``, the seam to one
sandboxed program.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal, Protocol

from sandbox.errors import StdinBacklog
from sandbox.languages import Language

log = logging.getLogger(__name__)

StreamName = Literal["stdout", "stderr"]
SIGNALS = ("SIGINT", "SIGTERM", "SIGKILL")
_KILL_GRACE = 5.0  # seconds to wait for a killed process to be reported gone
_DRAIN_GRACE = 1.0  # seconds for the last output to arrive once the process is gone


class Status(StrEnum):
    SUCCESS = "success"
    ERROR = "error"
    TIMEOUT = "timeout"
    MEMORY_LIMIT = "memory_limit"
    OUTPUT_LIMIT = "output_limit"
    KILLED = "killed"
    INTERNAL_ERROR = "internal_error"


@dataclass(frozen=True)
class Limits:
    """What one run may use. The defaults live in the server's configuration."""

    wall_time: float
    memory_bytes: int
    cpus: float
    pids: int
    output_bytes: int
    code_bytes: int
    stdin_backlog_bytes: int
    """Input accepted from the client but not yet taken by the program, at most."""
    tmp_bytes: int
    open_files: int
    file_bytes: int


@dataclass(frozen=True)
class RunRequest:
    language: str
    code: str
    stdin: bytes | None = None
    """The whole input, followed by end-of-file; ``None`` keeps stdin open for ``write_stdin``."""
    timeout: float | None = None
    """Wall time in seconds; at most ``Limits.wall_time``, which is also the default."""


@dataclass(frozen=True)
class Output:
    stream: StreamName
    data: bytes


@dataclass(frozen=True)
class Exit:
    """How the process ended, as the backend saw it."""

    exit_code: int | None
    signal: str | None
    oom_killed: bool = False


@dataclass(frozen=True)
class Result:
    status: Status
    exit_code: int | None
    signal: str | None
    execution_time: float
    output_truncated: bool


class Process(Protocol):
    """One sandboxed program as a backend runs it; every method may be called once it began."""

    async def begin(self, header: bytes) -> None:
        """Hand the launcher its program. The wall clock starts here."""

    def alive(self) -> bool:
        """Whether a process that has not begun could still take a program (cheap: no I/O)."""

    async def read(self) -> Output | None:
        """The next chunk of output, or None once the program closed its output."""

    async def write(self, data: bytes) -> None: ...

    async def close_stdin(self) -> None: ...

    async def signal(self, name: str) -> None: ...

    async def wait(self) -> Exit: ...

    async def remove(self) -> None:
        """Stop the program if needed and free everything it held; safe to call twice."""


class Run:
    """A started program. Iterate it for output; ``result()`` gives how it ended."""

    def __init__(
        self,
        process: Process,
        language: Language,
        version: str,
        wall_time: float,
        output_bytes: int,
        stdin_backlog_bytes: int,
        stdin: bytes | None = None,
        warm: bool = False,
    ) -> None:
        self.id = uuid.uuid4().hex
        self.language = language
        self.version = version
        self.warm = warm
        self._process = process
        self._wall_time = wall_time
        self._output_bytes = output_bytes
        # Output waiting for the consumer. The output cap bounds it, so it needs no bound.
        self._chunks: deque[Output] = deque()
        self._arrived = asyncio.Event()
        self._output_ended = False
        self._stop_requested = False
        self._signalled = False
        self._truncated = False
        # Input goes through one writer task, in order, so that a program not reading its
        # stdin never blocks whoever is sending it (a Stop must still get through).
        self._stdin: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._stdin_pending = 0
        self._stdin_backlog_bytes = stdin_backlog_bytes
        self._stdin_closed = False
        # Bytes of ``write_stdin`` input written into the program's stdin so far: what lets
        # a client keep sending as fast as the program reads (the protocol's ``stdin_ack``).
        self._stdin_taken = 0
        self._stdin_progress = asyncio.Event()
        self._given = stdin
        if stdin is not None:
            self._stdin_closed = True
        self._started = time.monotonic()
        self._result: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._task = asyncio.create_task(self._supervise(), name=f"run-{self.id}")

    # Output -------------------------------------------------------------------------------

    def __aiter__(self) -> AsyncIterator[Output]:
        return self

    async def __anext__(self) -> Output:
        while not self._chunks:
            if self._output_ended:
                raise StopAsyncIteration
            self._arrived.clear()
            await self._arrived.wait()
        first = self._chunks.popleft()
        # Join what is already waiting of the same stream: fewer, larger messages.
        parts = [first.data]
        while self._chunks and self._chunks[0].stream == first.stream:
            parts.append(self._chunks.popleft().data)
        return first if len(parts) == 1 else Output(first.stream, b"".join(parts))

    def _emit(self, out: Output) -> None:
        self._chunks.append(out)
        self._arrived.set()

    # Input and control ----------------------------------------------------------------------

    @property
    def done(self) -> bool:
        """Whether the program has ended (its sandbox may still be being removed)."""
        return self._result.done()

    async def write_stdin(self, data: bytes) -> None:
        """Queue input for the program; raises ``StdinBacklog`` when it is not reading."""
        if self.done or self._stdin_closed:
            return
        if self._stdin_pending + len(data) > self._stdin_backlog_bytes:
            raise StdinBacklog(self._stdin_backlog_bytes)
        self._stdin_pending += len(data)
        self._stdin.put_nowait(data)

    @property
    def stdin_window(self) -> int:
        """Input ``write_stdin`` accepts beyond what the program has taken, at most."""
        return self._stdin_backlog_bytes

    async def stdin_taken(self, seen: int) -> int:
        """Wait until the program has taken more than ``seen`` bytes of input; the new total.

        Counts what ``write_stdin`` queued, once written towards the program's stdin (the
        engine and the pipe hold a little more than the program has read, as a shell's pipe
        does).
        """
        while self._stdin_taken <= seen:
            self._stdin_progress.clear()
            await self._stdin_progress.wait()
        return self._stdin_taken

    async def close_stdin(self) -> None:
        """Send end-of-file after the input queued so far; the output keeps streaming."""
        if self.done or self._stdin_closed:
            return
        self._stdin_closed = True
        self._stdin.put_nowait(None)

    async def signal(self, name: str) -> None:
        """Deliver SIGINT, SIGTERM or SIGKILL to the program."""
        if name not in SIGNALS:
            raise ValueError(f"unsupported signal {name!r}; use one of {', '.join(SIGNALS)}")
        if self.done:
            return
        self._signalled = True
        await self._process.signal(name)

    async def kill(self) -> None:
        """Stop the program now; its status becomes ``killed``. Never raises: when the
        sandbox cannot be signalled, it is removed, which stops the program too."""
        if self.done:
            return
        self._stop_requested = True
        try:
            await self._process.signal("SIGKILL")
        except Exception as exc:
            log.warning("could not kill run %s (%s): removing its sandbox", self.id, exc)
            with contextlib.suppress(Exception):
                await self._process.remove()

    def on_closed(self, callback: Callable[[Run], object]) -> None:
        """Call ``callback(run)`` once the sandbox is gone."""
        self._task.add_done_callback(lambda _: callback(self))

    async def result(self) -> Result:
        """How the program ended; known as soon as it ended, before its sandbox is removed."""
        return await asyncio.shield(self._result)

    async def close(self) -> Result:
        """Kill the program if it still runs and wait until its sandbox is gone."""
        await self.kill()
        await asyncio.shield(self._task)
        return self._result.result()

    # Supervision ----------------------------------------------------------------------------

    async def _supervise(self) -> None:
        """Run to the end, publish the result, then remove the sandbox."""
        feeder = asyncio.create_task(self._feed())
        try:
            self._result.set_result(await self._outcome())
        finally:
            feeder.cancel()
            self._output_ended = True
            self._arrived.set()
            if not self._result.done():  # cancelled: whoever waits must not hang
                self._result.set_result(self._failure())
            with contextlib.suppress(Exception):
                await asyncio.shield(self._process.remove())

    async def _outcome(self) -> Result:
        pump = asyncio.create_task(self._pump())
        exited = asyncio.create_task(self._process.wait())
        try:
            stop = await self._until_end(pump, exited)
            elapsed = time.monotonic() - self._started
            if stop is Status.OUTPUT_LIMIT:
                # Past the cap nobody forwards output any more, but it must still be read: an
                # engine whose output stream is not drained may hold up the kill and the exit.
                pump = asyncio.create_task(self._discard())
            if stop is not None:
                await self._process.signal("SIGKILL")
            async with asyncio.timeout(_KILL_GRACE):
                exit_ = await exited
            stop = stop or await self._drain(pump)
        except Exception:
            log.exception("run %s (%s) failed inside the sandbox", self.id, self.language.id)
            return self._failure()
        finally:
            pump.cancel()
            exited.cancel()
        return Result(
            status=self._status(stop, exit_),
            exit_code=exit_.exit_code,
            signal=exit_.signal,
            execution_time=round(elapsed, 4),
            output_truncated=self._truncated,
        )

    async def _until_end(
        self, pump: asyncio.Task[Status | None], exited: asyncio.Task[Exit]
    ) -> Status | None:
        """Wait until the program ends, or a limit stops it (then that limit's status).

        The end is the process's exit, not the end of its output: an engine may hold the
        output open (Docker does while it still tries to deliver unread stdin).
        """
        try:
            async with asyncio.timeout(self._wall_time):
                await asyncio.wait({pump, exited}, return_when=asyncio.FIRST_COMPLETED)
                if pump.done() and (stop := pump.result()) is not None:
                    return stop
                await exited
        except TimeoutError:
            return Status.TIMEOUT
        return None

    async def _drain(self, pump: asyncio.Task[Status | None]) -> Status | None:
        """Output written just before the end may still be on its way: give it a moment."""
        try:
            async with asyncio.timeout(_DRAIN_GRACE):
                return await pump
        except TimeoutError:
            return None

    def _failure(self) -> Result:
        return Result(
            status=Status.INTERNAL_ERROR,
            exit_code=None,
            signal=None,
            execution_time=round(time.monotonic() - self._started, 4),
            output_truncated=self._truncated,
        )

    async def _feed(self) -> None:
        """Write the input to the program, in order, then end-of-file when asked.

        ``write`` returns once the data is on its way into the program's pipe (the engine and
        the pipe buffer a little), so the count of bytes taken follows the program's reading.
        """
        with contextlib.suppress(Exception):  # the program may end without reading it all
            if self._given is not None:
                await self._process.write(self._given)
            else:
                while (data := await self._stdin.get()) is not None:
                    await self._process.write(data)
                    self._stdin_pending -= len(data)
                    self._stdin_taken += len(data)
                    self._stdin_progress.set()
            await self._process.close_stdin()

    async def _pump(self) -> Status | None:
        """Forward output until the program closes it, or stop at the cap.

        stdout and stderr are each UTF-8 text, and the cap never cuts a character: a chunk's
        last bytes that begin a character go out with the chunk that completes it, and the
        cut falls before a character that would not fit whole.
        """
        budget = self._output_bytes
        held: dict[StreamName, bytes] = {"stdout": b"", "stderr": b""}
        while (out := await self._process.read()) is not None:
            data = held[out.stream] + out.data
            whole = len(data) - _unfinished(data)
            if whole > budget:
                if cut := _boundary(data, budget):
                    self._emit(Output(out.stream, data[:cut]))
                self._truncated = True
                return Status.OUTPUT_LIMIT
            budget -= whole
            held[out.stream] = data[whole:]
            if whole:
                self._emit(Output(out.stream, data[:whole]))
        # Bytes of a character the program never finished are its own output: send them.
        for stream, rest in held.items():
            if len(rest) > budget:
                self._truncated = True
                return Status.OUTPUT_LIMIT
            if rest:
                budget -= len(rest)
                self._emit(Output(stream, rest))
        return None

    async def _discard(self) -> Status | None:
        """Read output nobody will see until the program closes it."""
        while await self._process.read() is not None:
            pass
        return None

    def _status(self, stop: Status | None, exit_: Exit) -> Status:
        if stop is not None:
            return stop
        if exit_.oom_killed:
            return Status.MEMORY_LIMIT
        # A program sent a signal on request that then dies of it, or fails (it may have been
        # hit before its own handlers were up), was stopped; one that handles it and exits 0
        # was not.
        stopped = exit_.signal is not None or exit_.exit_code != 0
        if self._stop_requested or (self._signalled and stopped):
            return Status.KILLED
        return Status.SUCCESS if exit_.exit_code == 0 else Status.ERROR


def _continuation(byte: int) -> bool:
    return 0x80 <= byte <= 0xBF


def _unfinished(data: bytes) -> int:
    """How many bytes at the end of ``data`` begin a UTF-8 character it does not finish."""
    for back in range(1, min(4, len(data) + 1)):
        lead = data[-back]
        if _continuation(lead):
            continue
        return back if back < _length(lead) else 0
    return 0


def _length(lead: int) -> int:
    """Bytes in the UTF-8 character that ``lead`` begins (1 for anything that begins none)."""
    if 0xC2 <= lead <= 0xDF:
        return 2
    if 0xE0 <= lead <= 0xEF:
        return 3
    if 0xF0 <= lead <= 0xF4:
        return 4
    return 1


def _boundary(data: bytes, limit: int) -> int:
    """The largest cut at most ``limit`` that does not split a UTF-8 character."""
    cut = min(limit, len(data))
    for _ in range(3):
        if cut == len(data) or cut == 0 or not _continuation(data[cut]):
            break
        cut -= 1
    return cut
