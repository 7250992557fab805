"""A run in progress: live output, stdin, signals, and its result.

``Run`` holds the policy every backend shares (wall time, the output cap, stdin, cleanup;
how its end reads is ``sandbox/verdict.py``); a backend only supplies a ``Process``, the
seam to one sandboxed program.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable

from sandbox.build import Build
from sandbox.errors import BackendUnavailable, StdinBacklog
from sandbox.languages import Language
from sandbox.model import (
    SIGNALS,
    CompileStage,
    Exit,
    Image,
    Output,
    Process,
    Result,
    Stage,
    Status,
    StreamName,
)
from sandbox.sidechannel import SideChannel
from sandbox.utf8 import boundary, unfinished
from sandbox.verdict import Ending, parse_usage

log = logging.getLogger(__name__)

_KILL_GRACE = 5.0  # seconds to wait for a killed process to be reported gone
_DRAIN_GRACE = 1.0  # seconds for the last output to arrive once the process is gone


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
        compile_stage: CompileStage | None = None,
        side_channel: Callable[[Process], SideChannel] | None = None,
        images: int = 0,
        cpus: float | None = None,
    ) -> None:
        self.id = uuid.uuid4().hex
        self.language = language
        self.version = version
        self.warm = warm
        self._process = process
        self._wall_time = wall_time
        self._output_bytes = output_bytes
        # A side channel per sandbox, for its keys: the run stage's (not the compiler's).
        self._side_channel = side_channel
        self._side: SideChannel | None = None
        self._end: SideChannel | None = None
        if not compile_stage:
            self._watch(process)
        self._images_left = images
        self.images_dropped = False
        self._cpus = cpus
        self._ending = Ending()
        # Bytes of frames dropped past the image caps: bounded like output, or a program
        # could stream them for its whole wall time.
        self._side_budget = max(images, 1) * 4 * 1024 * 1024
        # Output waiting for the consumer. The output cap bounds it, so it needs no bound.
        self._chunks: deque[Output | Stage | Image] = deque()
        self._arrived = asyncio.Event()
        self._output_ended = False
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
        self._compile_stage = compile_stage
        self._compile_time: float | None = None
        self._cleanup: asyncio.Task[None] | None = None
        marker = language.memory_error
        self._memory_marker = marker.encode() if marker else b""
        self._stderr_tail = b""
        self._result: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._task = asyncio.create_task(self._supervise(), name=f"run-{self.id}")

    # Output -------------------------------------------------------------------------------

    def __aiter__(self) -> AsyncIterator[Output | Stage | Image]:
        return self

    async def __anext__(self) -> Output | Stage | Image:
        while not self._chunks:
            if self._output_ended:
                raise StopAsyncIteration
            self._arrived.clear()
            await self._arrived.wait()
        first = self._chunks.popleft()
        if not isinstance(first, Output):
            return first
        # Join what is already waiting of the same stream: fewer, larger messages.
        parts = [first.data]
        while self._chunks and _same_stream(self._chunks[0], first.stream):
            parts.append(self._chunks.popleft().data)  # type: ignore[union-attr,arg-type]
        return first if len(parts) == 1 else Output(first.stream, b"".join(parts))

    def _emit(self, out: Output | Stage | Image) -> None:
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

    @property
    def stdin_counts(self) -> tuple[int, int]:
        """Bytes of ``write_stdin`` input accepted so far, and of those taken by the program:
        what a client that takes over a run needs to resume its flow control."""
        return self._stdin_taken + self._stdin_pending, self._stdin_taken

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
        self._ending.signalled = True
        await self._process.signal(name)

    async def kill(self) -> None:
        """Stop the program now; its status becomes ``killed``. Never raises: when the
        sandbox cannot be signalled, it is removed, which stops the program too."""
        if self.done:
            return
        self._ending.stop_requested = True
        try:
            await self._process.signal("SIGKILL")
        except Exception as exc:
            log.warning("could not kill run %s (%s): removing its sandbox", self.id, exc)
            with contextlib.suppress(Exception):
                await self._process.remove()

    def on_ended(self, callback: Callable[[Run], object]) -> None:
        """Call ``callback(run)`` once its result is known (its sandbox may still be going)."""
        self._result.add_done_callback(lambda _: callback(self))

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
        """Compile if there is a compile stage; run to the end, publish the result, then
        remove the sandbox. Input sent during the compile waits in the queue for the run."""
        feeder: asyncio.Task[None] | None = None
        try:
            if self._compile_stage is not None and not await self._compile(self._compile_stage):
                return
            feeder = asyncio.create_task(self._feed())
            self._result.set_result(await self._outcome())
        finally:
            if feeder is not None:
                feeder.cancel()
            self._output_ended = True
            self._arrived.set()
            if not self._result.done():  # cancelled: whoever waits must not hang
                self._result.set_result(self._failure())
            ended = self._ending.reported_exit() is not None
            with contextlib.suppress(Exception):
                await asyncio.shield(self._process.remove(ended=ended))
            if self._cleanup is not None:
                with contextlib.suppress(Exception):
                    await asyncio.shield(self._cleanup)

    # Compile stage --------------------------------------------------------------------------

    async def _compile(self, stage: CompileStage) -> bool:
        """Run the compile stage, then begin the run stage with what it built: True. False
        when the run stage never begins: the result is set then."""
        self._emit(Stage("compile"))
        began = time.monotonic()
        compiler = self._process
        build = Build(stage.output_bytes, stage.artifact_bytes)
        pump = asyncio.create_task(self._pump_build(compiler, build))
        exited = asyncio.create_task(compiler.wait())
        note = None
        try:
            try:
                async with asyncio.timeout(stage.wall_time):
                    await asyncio.wait({pump, exited}, return_when=asyncio.FIRST_COMPLETED)
                    if not build.complete:  # a failure: its exit code and last words
                        await asyncio.wait({pump, exited})
            except TimeoutError:
                note = f"the compile took longer than {stage.wall_time:g} s and was stopped"
                await compiler.signal("SIGKILL")
            if build.complete and note is None:
                # The launcher says the build is whole only once the compiler succeeded: no
                # need to wait for its container to end (it is removed meanwhile).
                exit_ = Exit(0, None)
            else:
                async with asyncio.timeout(_KILL_GRACE):
                    exit_ = await exited
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(_DRAIN_GRACE):
                        await pump
        except Exception:
            log.exception("the compile of run %s (%s) failed", self.id, self.language.id)
            self._compile_time = round(time.monotonic() - began, 4)
            self._result.set_result(self._failure())
            return False
        finally:
            pump.cancel()
            exited.cancel()
        self._compile_time = round(time.monotonic() - began, 4)
        self._truncated = build.truncated
        if note is None and exit_.oom_killed:
            note = f"the compiler ran out of memory ({stage.memory_bytes // 2**20} MB)"
        if note is None and build.overflow:
            note = f"the build is larger than {stage.artifact_bytes} bytes: it cannot be run"
        if note is None and exit_.exit_code == 0 and not build.complete:
            note = "the build did not arrive whole"
        stopped = self._ending.stopped(exit_)
        if note is not None or stopped or exit_.exit_code != 0:
            if note is not None and not stopped:
                self._emit(Output("stderr", f"execstream: {note}\n".encode()))
            self._result.set_result(
                Result(
                    status=Status.KILLED if stopped else Status.COMPILE_ERROR,
                    exit_code=exit_.exit_code,
                    signal=exit_.signal,
                    execution_time=0.0,
                    output_truncated=self._truncated,
                    compile_time=self._compile_time,
                )
            )
            return False
        return await self._begin_run(stage, compiler, build.artifact())

    async def _begin_run(self, stage: CompileStage, compiler: Process, artifact: bytes) -> bool:
        # The compile container goes while the run starts: off the run's path.
        self._cleanup = asyncio.create_task(compiler.remove())
        try:
            self._process = await stage.start_run(artifact)
        except Exception:
            log.exception("the run stage of run %s (%s) did not start", self.id, self.language.id)
            self._result.set_result(self._failure())
            return False
        self._watch(self._process)
        self._started = time.monotonic()
        self._emit(Stage("run"))
        if self._ending.stop_requested:  # a Stop between the two stages
            await self._process.signal("SIGKILL")
        return True

    async def _pump_build(self, compiler: Process, build: Build) -> None:
        """The compiler's messages go out (up to their cap); the artifact is kept. Ends at
        the end of the output, or as soon as the build is complete."""
        # The compiler's init reports its usage too: that frame is not a message (the run's
        # figures are the run stage's).
        side = self._side_channel(compiler) if self._side_channel else None
        while not build.complete and (out := await compiler.read()) is not None:
            if out.stream == "stdout":
                build.keep(out.data)
                continue
            build.said += len(out.data)
            text = side.feed(out.data)[0] if side is not None else out.data
            shown = build.message(text)
            if shown:
                self._emit(Output("stderr", shown))
            if build.truncated and not build.told:
                build.told = True
                note = f"\n[execstream: compiler messages cut at {build.message_bytes} bytes]\n"
                self._emit(Output("stderr", note.encode()))
        if side is not None and (rest := build.message(side.flush())):
            self._emit(Output("stderr", rest))

    async def _outcome(self) -> Result:
        pump = asyncio.create_task(self._pump())
        exited = asyncio.create_task(self._process.wait())
        try:
            stop = await self._until_end(pump, exited)
            elapsed = time.monotonic() - self._started
            reported = self._ending.reported_exit() if stop is None else None
            if reported is not None:
                return self._result_of(stop, reported, elapsed)
            if stop is Status.OUTPUT_LIMIT:
                # Past the cap nobody forwards output any more, but it must still be read: an
                # engine whose output stream is not drained may hold up the kill and the exit.
                pump = asyncio.create_task(self._discard())
            if stop is not None:
                await self._process.signal("SIGKILL")
            async with asyncio.timeout(_KILL_GRACE):
                exit_ = await exited
            stop = stop or await self._drain(pump)
        except BackendUnavailable as exc:
            log.warning("run %s (%s) lost its engine: %s", self.id, self.language.id, exc)
            return self._failure(Status.BACKEND_UNAVAILABLE)
        except Exception:
            log.exception("run %s (%s) failed inside the sandbox", self.id, self.language.id)
            return self._failure()
        finally:
            pump.cancel()
            exited.cancel()
        return self._result_of(stop, exit_, elapsed)

    def _result_of(self, stop: Status | None, exit_: Exit, elapsed: float) -> Result:
        ending = self._ending
        ending.reports = bool(getattr(self._process, "report_key", ""))  # an init that reports
        return Result(
            status=ending.status(stop, exit_),
            exit_code=exit_.exit_code,
            signal=exit_.signal,
            execution_time=round(elapsed, 4),
            output_truncated=self._truncated,
            compile_time=self._compile_time,
            cpu_time=ending.cpu_time(self._cpus, elapsed),
            memory_peak=ending.memory_peak(),
        )

    async def _until_end(
        self, pump: asyncio.Task[Status | None], exited: asyncio.Task[Exit]
    ) -> Status | None:
        """Wait until the program ends, or a limit stops it (then that limit's status).

        The end is init's report in-band, when it sends one (then the output is all in), or
        else the process's exit, not the end of its output: an engine may hold the output
        open (Docker does while it still tries to deliver unread stdin).
        """
        try:
            async with asyncio.timeout(self._wall_time):
                await asyncio.wait({pump, exited}, return_when=asyncio.FIRST_COMPLETED)
                if pump.done() and (stop := pump.result()) is not None:
                    return stop
                if pump.done() and self._ending.reported_exit() is not None:
                    return None
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

    def _failure(self, status: Status = Status.INTERNAL_ERROR) -> Result:
        return Result(
            status=status,
            exit_code=None,
            signal=None,
            execution_time=round(time.monotonic() - self._started, 4),
            output_truncated=self._truncated,
            compile_time=self._compile_time,
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
        while not self._ending.reported_exit() and (out := await self._process.read()) is not None:
            if out.stream == "stderr" and self._side is not None:
                out = Output("stderr", self._frames(out.data))
                if self._side_budget < 0:
                    return Status.OUTPUT_LIMIT
            if out.stream == "stdout" and self._end is not None:
                out = Output("stdout", self._end_frame(out.data))
            data = held[out.stream] + out.data
            whole = len(data) - unfinished(data)
            if whole > budget:
                if cut := boundary(data, budget):
                    self._emit(Output(out.stream, data[:cut]))
                self._truncated = True
                return Status.OUTPUT_LIMIT
            budget -= whole
            if out.stream == "stderr" and self._memory_marker:
                self._watch_memory(out.data)
            held[out.stream] = data[whole:]
            if whole:
                self._emit(Output(out.stream, data[:whole]))
        if self._side is not None:
            held["stderr"] += self._side.flush()
        if self._end is not None:
            held["stdout"] += self._end.flush()
        # Bytes of a character the program never finished are its own output: send them.
        for stream, rest in held.items():
            if len(rest) > budget:
                self._truncated = True
                return Status.OUTPUT_LIMIT
            if rest:
                budget -= len(rest)
                self._emit(Output(stream, rest))
        return None

    def _watch_memory(self, data: bytes) -> None:
        """Look for the language's out-of-memory message, also across two chunks."""
        seen = self._stderr_tail + data
        if self._memory_marker in seen:
            self._ending.out_of_memory = True
        self._stderr_tail = seen[-len(self._memory_marker) :]

    def _watch(self, process: Process) -> None:
        """Read the side channels of the run stage's sandbox: stderr's for plots and usage,
        stdout's for init's end frame, when it reports the end in-band."""
        if self._side_channel is None:
            return
        self._side = self._side_channel(process)
        key = getattr(process, "end_key", "")
        self._end = SideChannel({key.encode(): "end"}, 0) if key else None

    def _end_frame(self, data: bytes) -> bytes:
        """Take init's end frame out of a chunk of stdout; the program's text is returned."""
        assert self._end is not None
        text, frames = self._end.feed(data)
        self._ending.end_seen = self._ending.end_seen or bool(frames)
        return text

    def _frames(self, data: bytes) -> bytes:
        """Take our frames out of a chunk of stderr; the program's own text is returned."""
        assert self._side is not None
        text, frames = self._side.feed(data)
        for frame in frames:
            if frame.kind == "usage":
                self._ending.usage = parse_usage(frame.payload)
                continue
            if frame.payload is not None and self._images_left > 0:
                self._images_left -= 1
                self._emit(Image(frame.payload))
                continue
            self._side_budget -= frame.size
            if not self.images_dropped:
                self.images_dropped = True
                self._emit(Image(None))
        return text

    async def _discard(self) -> Status | None:
        """Read output nobody will see until the program closes it."""
        while await self._process.read() is not None:
            pass
        return None


def _same_stream(chunk: Output | Stage | Image, stream: StreamName) -> bool:
    return isinstance(chunk, Output) and chunk.stream == stream
