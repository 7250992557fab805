"""Runs as the server sees them: started for a user, decoded for clients, stored throughout.

Both the WebSocket sessions and the REST endpoint go through here, so a run is recorded the
same way whichever door it came in by. ``RunService`` is the one owner of live runs: it starts
them, stores them (``running`` from their start, their output so far every
``checkpoint_seconds``, then how they ended), and stops them all at shutdown.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import logging
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sandbox import (
    Backend,
    BackendUnavailable,
    Image,
    Result,
    Run,
    RunRequest,
    SourceFile,
    Stage,
    Status,
    StdinTooLarge,
    TooManyRuns,
)
from sandbox.files import check_program
from sandbox.languages import get_language
from sandbox.model import StreamName
from server.audit import audit
from server.metrics import Metrics, PoolStats
from server.periodic import Pause, Periodic
from server.queue import Notify, RunQueue, ServerBusy
from server.slots import SharedSlots
from storage import Database
from storage.executions import RUNNING
from storage.models import utc_now

log = logging.getLogger(__name__)

DRAIN_SECONDS = 10.0
"""At shutdown, how long runs get to be killed, stored and reported before we go anyway."""

LIMITS = {Status.MEMORY_LIMIT: "memory", Status.OUTPUT_LIMIT: "output"}
# A program that hit the process limit fails to fork or to start a thread; nothing else tells
# it apart from a program that failed for reasons of its own, so this is a guess from stderr.
FORK_FAILED = re.compile(r"Resource temporarily unavailable|EAGAIN|can't start new thread")


@dataclass(frozen=True)
class RunSpec:
    """What a client asked to run, whichever protocol it used."""

    language: str
    code: str
    stdin: str | None = None
    timeout: float | None = None
    project_id: int | None = None
    save_history: bool = True
    files: tuple[SourceFile, ...] = ()
    """The program's other files, beside ``code`` (its entry file)."""

    def files_json(self) -> list[dict[str, str]] | None:
        return [{"name": f.name, "content": f.content} for f in self.files] or None


@dataclass(frozen=True)
class Admission:
    """A run that has its slot and may start: ``RunService.launch`` it, or the slot leaks."""

    user_id: int
    spec: RunSpec
    asked_at: float
    """When it was asked for (``time.monotonic``), before any wait for a slot."""
    slot: int | None = None
    """Its slot among all replicas' (``SharedSlots``), when they share one database."""


@dataclass(eq=False)
class Execution:
    """One run for one user: its output as text, as delivered, and its stored record."""

    run: Run
    spec: RunSpec
    user_id: int
    stdin_bytes: int
    stdout: list[str] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)
    typed: list[str] = field(default_factory=list)
    """What the user typed into the running program, kept (up to ``stdin_bytes``) for history."""
    typed_bytes: int = 0
    compile_messages: list[str] = field(default_factory=list)
    """What the compiler said (a compile stage's output), apart from the program's output."""
    images: list[tuple[str, bytes]] = field(default_factory=list)
    """The plots the program showed, as ``(mime, data)``: the sandbox's caps bound them."""
    stage: str | None = None
    """The stage the run is in, for a compiled language."""
    started_at: datetime = field(default_factory=utc_now)
    asked_at: float = field(default_factory=time.monotonic)
    """When the run was asked for (``time.monotonic``), before any wait for a slot."""
    first_output_at: float | None = None
    record: asyncio.Future[int | None] | None = None
    """Storing the run's ``running`` row, which goes on beside the run's start."""
    record_id: int | None = None
    """The stored record's id once that row exists (None before, or when not stored)."""
    changed: bool = False
    """Output or input arrived since the record was last saved."""
    stored: asyncio.Event = field(default_factory=asyncio.Event)
    """Set once the run has ended and its record is final (or was not to be kept)."""
    slot: int | None = None
    """Its shared slot (``Admission.slot``), freed when it ends."""

    def __post_init__(self) -> None:
        self._clock = time.monotonic()
        if self.record is not None and self.record.done():
            self._recorded(self.record)
        elif self.record is not None:
            self.record.add_done_callback(self._recorded)
        # Forgotten by RunService once both are done: sandbox gone and record final.
        self._pending = {"sandbox", "record"}
        # One incremental decoder per stream: a character split across chunks arrives whole.
        self._decoders = {
            name: codecs.getincrementaldecoder("utf-8")(errors="replace")
            for name in ("stdout", "stderr")
        }

    def _recorded(self, record: asyncio.Future[int | None]) -> None:
        if not record.cancelled() and record.exception() is None:
            self.record_id = self.record_id or record.result()

    async def recorded(self) -> int | None:
        """The record's id, once its ``running`` row is stored (at once when it is)."""
        if self.record is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(self.record)
        return self.record_id

    async def write_stdin(self, text: str) -> None:
        data = text.encode()
        kept = data[: max(self.stdin_bytes - self.typed_bytes, 0)]
        if kept:
            self.typed.append(kept.decode(errors="ignore"))
            self.typed_bytes += len(kept)
            self.changed = True
        await self.run.write_stdin(data)

    @property
    def stdin(self) -> str | None:
        """The program's input for the record: given up front, or as it was typed."""
        if self.spec.stdin is not None:
            return self.spec.stdin
        return "".join(self.typed) or None

    async def output(self) -> AsyncIterator[tuple[StreamName, str] | Stage | Image]:
        """Decoded output chunks and plots in the order the program wrote them; for a
        compiled language, each ``Stage`` as it begins (what comes between ``compile`` and
        ``run`` is the compiler's)."""
        async for chunk in self.run:
            if isinstance(chunk, Stage):
                for item in self._flush():
                    yield item
                self.stage = chunk.stage
                yield chunk
                continue
            if isinstance(chunk, Image):
                if chunk.data is not None:
                    self.images.append((chunk.mime, chunk.data))
                yield chunk
                continue
            text = self._decoders[chunk.stream].decode(chunk.data)
            if text:
                yield self._keep(chunk.stream, text)
        for item in self._flush():
            yield item

    def _flush(self) -> list[tuple[StreamName, str]]:
        """What the decoders hold of an unfinished character, at the end of a stage."""
        held = []
        for name, decoder in self._decoders.items():
            if text := decoder.decode(b"", final=True):
                held.append(self._keep(name, text))  # type: ignore[arg-type]
            decoder.reset()
        return held

    def _keep(self, stream: StreamName, text: str) -> tuple[StreamName, str]:
        # The output path only appends: saving it is the checkpoint task's job.
        self.changed = True
        if self.stage == "compile":
            self.compile_messages.append(text)
            return stream, text
        if self.first_output_at is None:
            self.first_output_at = time.monotonic()
        (self.stdout if stream == "stdout" else self.stderr).append(text)
        return stream, text

    def progress(self) -> dict[str, Any]:
        """The record's fields as they are now, while the run goes on."""
        self.changed = False
        return {
            "stdin": self.stdin,
            "output": "".join(self.stdout) or None,
            "error": "".join(self.stderr) or None,
            "compile_output": "".join(self.compile_messages) or None,
            "execution_time": round(time.monotonic() - self._clock, 4),
        }


class RunService:
    """Starts runs for users, owns them while they live, and stores each one."""

    def __init__(
        self,
        backend: Backend,
        db: Database,
        *,
        instance_id: str,
        stdin_bytes: int,
        max_runs: int,
        max_runs_per_user: int,
        checkpoint_seconds: float,
        queue_max: int = 256,
        queue_per_user: int = 32,
        pool_stats: PoolStats | None = None,
        slots: SharedSlots | None = None,
        test_concurrency: int = 2,
    ) -> None:
        self.backend = backend
        self.slots = slots
        self._freeing: set[asyncio.Task[None]] = set()
        self.test_concurrency = test_concurrency
        """Runs of one set of test cases at a time (each also holds a run slot)."""
        self.db = db
        self.instance_id = instance_id
        self.stdin_bytes = stdin_bytes
        self.checkpoint_seconds = checkpoint_seconds
        self.active: set[Execution] = set()
        """Every run from its start until its record is final and its sandbox gone."""
        # Slots are taken before a run starts (starting takes a while) and freed when it ends.
        self.queue = RunQueue(max_runs, max_runs_per_user, queue_max, queue_per_user)
        self.metrics = Metrics(
            queue_depth=self._queue_depth, pool_stats=pool_stats, finishing=backend.finishing
        )
        self._closing = False
        self._checkpoints = Periodic(self._save_progress)

    def _queue_depth(self) -> int:
        """Runs waiting for a slot: this replica's, or another's (held across replicas)."""
        return self.queue.depth + (self.slots.waiting if self.slots is not None else 0)

    def open(self) -> None:
        self._checkpoints.start("checkpoints")

    async def start(self, user_id: int, spec: RunSpec, notify: Notify | None = None) -> Execution:
        """Admit a run, then launch it; raises a ``SandboxError`` when refused."""
        return await self.launch(await self.admit(user_id, spec, notify))

    async def admit(self, user_id: int, spec: RunSpec, notify: Notify | None = None) -> Admission:
        """Check a run, then wait for its slot (``notify`` hears its position meanwhile).

        Cancelling it while it waits leaves the queue; raises a ``SandboxError`` when the run
        is refused, before it waits when it could never start.
        """
        asked_at = time.monotonic()
        self._refuse_if_closing()
        if spec.stdin is not None and len(stdin := spec.stdin.encode()) > self.stdin_bytes:
            raise StdinTooLarge(len(stdin), self.stdin_bytes)
        language = get_language(spec.language)
        # Refused before it waits for a slot: it could never start.
        check_program(
            language.entry_name(spec.code),
            spec.code,
            spec.files,
            self.backend.limits.code_bytes,
        )
        try:
            waited = await self.queue.acquire(user_id, notify)
        except (ServerBusy, TooManyRuns) as exc:
            self.metrics.queue_refused.labels(exc.code).inc()
            raise
        slot = None
        if self.slots is not None:
            try:
                slot = await self.slots.take(user_id, notify)
            except BaseException:
                self.queue.release(user_id)
                raise
            waited = time.monotonic() - asked_at
        self.metrics.queue_wait_seconds.observe(waited)
        return Admission(user_id, spec, asked_at, slot)

    async def launch(self, admission: Admission) -> Execution:
        """Start an admitted run and store it as ``running``; its slot is freed when it ends
        (by ``finish``), or now when it cannot start."""
        user_id, spec = admission.user_id, admission.spec
        try:
            self._refuse_if_closing()
        except BackendUnavailable:
            self._release(user_id, admission.slot)
            raise
        stdin = None if spec.stdin is None else spec.stdin.encode()
        # From here on the clock runs: time spent waiting does not count against the run.
        started_at = utc_now()
        # The record is written while the sandbox starts, and the run does not wait for it:
        # in a class burst the writes queue up on SQLite's one writer, and holding each
        # run's first output back for its row made every student wait for all the others'.
        record = asyncio.create_task(self._insert_running(user_id, spec, started_at))
        try:
            run = await self.backend.start(
                RunRequest(
                    spec.language, spec.code, stdin=stdin, timeout=spec.timeout, files=spec.files
                )
            )
        except BaseException as exc:
            self._release(user_id, admission.slot)
            if isinstance(exc, BackendUnavailable):
                self.metrics.engine_errors.inc()
            await self._discard_record(record)
            raise
        execution = Execution(
            run,
            spec,
            user_id,
            self.stdin_bytes,
            started_at=started_at,
            asked_at=admission.asked_at,
            record=record,
            slot=admission.slot,
        )
        self.active.add(execution)
        run.on_closed(lambda _: self._forget(execution, "sandbox"))
        return execution

    async def _insert_running(
        self, user_id: int, spec: RunSpec, started_at: datetime
    ) -> int | None:
        if not spec.save_history:
            return None
        try:
            record = await self.db.save_execution(
                user_id=user_id,
                project_id=spec.project_id,
                language=spec.language,
                code=spec.code,
                stdin=spec.stdin,
                status=RUNNING,
                execution_time=0.0,
                created_at=started_at,
                instance_id=self.instance_id,
                files=spec.files_json(),
            )
        except Exception:
            log.exception("could not store the start of a run; storing it at its end")
            return None
        return record.id

    async def _discard_record(self, record: asyncio.Task[int | None]) -> None:
        """The run did not start after all: its record goes (it never ran)."""
        with contextlib.suppress(Exception):
            if (record_id := await asyncio.shield(record)) is not None:
                await self.db.delete_execution_by_id(record_id)

    def _release(self, user_id: int, slot: int | None) -> None:
        """Free a run's slots: this replica's now, the shared one in the background (a
        database round trip that neither a cancelled start nor a client should wait for)."""
        self.queue.release(user_id)
        if self.slots is None or slot is None:
            return
        task = asyncio.create_task(self.slots.free(slot), name="free-slot")
        self._freeing.add(task)
        task.add_done_callback(self._freeing.discard)

    def _refuse_if_closing(self) -> None:
        if self._closing:
            raise BackendUnavailable("the server is shutting down: try again in a moment")

    def _forget(self, execution: Execution, part: str) -> None:
        execution._pending.discard(part)
        if not execution._pending:
            self.active.discard(execution)

    async def finish(self, execution: Execution) -> tuple[Result, int | None]:
        """Wait for the end of a run whose output was consumed; store how it ended."""
        try:
            result = await execution.run.result()
        finally:
            self._release(execution.user_id, execution.slot)
        try:
            self._count(execution, result)
            self._audit_limit(execution, result)
            if not execution.spec.save_history:
                return result, None
            try:
                return result, await self._store(execution, result)
            except Exception:
                # The client still gets its exit frame; the failure is ours and is logged loudly.
                log.exception("could not store run %s", execution.run.id)
                return result, execution.record_id
        finally:
            execution.stored.set()
            self._forget(execution, "record")

    async def _insert(self, execution: Execution, **fields: Any) -> int:
        spec = execution.spec
        record = await self.db.save_execution(
            user_id=execution.user_id,
            project_id=spec.project_id,
            language=spec.language,
            code=spec.code,
            created_at=execution.started_at,
            instance_id=self.instance_id,
            files=spec.files_json(),
            **(execution.progress() | fields),
        )
        assert record.id is not None
        return record.id

    async def _store(self, execution: Execution, result: Result) -> int:
        final = {
            "status": result.status.value,
            "exit_code": result.exit_code,
            "signal": result.signal,
            "output_truncated": result.output_truncated,
            # The run's own clock, not the time since our record of it began.
            "execution_time": result.execution_time,
            "compile_time": result.compile_time,
            "cpu_time": result.cpu_time,
            "memory_peak": result.memory_peak,
        }
        record_id = await execution.recorded()
        if record_id is None:
            execution.record_id = await self._insert(execution, **final, images=execution.images)
            return execution.record_id
        await self.db.finish_execution(record_id, execution.progress() | final, execution.images)
        return record_id

    def _count(self, execution: Execution, result: Result) -> None:
        language = execution.spec.language
        self.metrics.runs.labels(language, result.status.value).inc()
        self.metrics.run_seconds.labels(language).observe(result.execution_time)
        if execution.first_output_at is not None:
            latency = execution.first_output_at - execution.asked_at
            self.metrics.first_output_seconds.labels(language).observe(latency)

    def _audit_limit(self, execution: Execution, result: Result) -> None:
        limit = LIMITS.get(result.status)
        stderr = "".join(execution.stderr)
        if limit is None and result.status is Status.ERROR and FORK_FAILED.search(stderr):
            limit = "pids"
        if limit is None:
            return
        audit(
            "run_limit",
            user=execution.user_id,
            limit=limit,
            language=execution.spec.language,
            run_id=execution.run.id,
        )

    async def _save_progress(self, pause: Pause) -> None:
        """Save the output of running runs, all in one write, every ``checkpoint_seconds``.

        One task for all runs rather than a write per output chunk: the output path only
        appends to memory, the database sees at most one transaction per interval whatever
        the number of runs and their output rate, and a crash loses at most one interval.
        """
        while await pause(self.checkpoint_seconds):
            changes = [
                (e.record_id, e.progress())
                for e in list(self.active)
                if e.record_id is not None and e.changed and not e.stored.is_set()
            ]
            if not changes:
                continue
            try:
                await self.db.update_executions(changes)
            except Exception:
                log.exception("could not save the output of %d running run(s)", len(changes))

    async def shutdown(self) -> None:
        """Stop every live run, let each be stored and reported, and remove its sandbox.

        The one path for a SIGTERM drain and for closing: new runs are refused, each run is
        killed, and we wait (at most ``DRAIN_SECONDS``) until its record is final and its
        sandbox gone. A kill that fails or hangs delays only its own run.
        """
        self._closing = True
        live = list(self.active)
        if live:
            log.info("stopping %d run(s)", len(live))
        try:
            async with asyncio.timeout(DRAIN_SECONDS):
                await asyncio.gather(*(self._stop(e) for e in live), return_exceptions=True)
        except TimeoutError:
            log.error("%d run(s) did not stop within %.0f s", len(self.active), DRAIN_SECONDS)
        if self._freeing:
            await asyncio.wait(self._freeing, timeout=DRAIN_SECONDS)
        await self._checkpoints.stop()

    async def _stop(self, execution: Execution) -> None:
        try:
            await execution.run.kill()
        finally:
            await execution.stored.wait()
            await execution.run.close()
