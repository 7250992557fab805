"""Runs as the server sees them: started for a user, decoded for clients, stored when done.

Both the WebSocket sessions and the REST endpoint go through here, so a run is recorded the
same way whichever door it came in by.
"""

from __future__ import annotations

import asyncio
import codecs
import logging
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from sandbox import Backend, Result, Run, RunRequest, StdinTooLarge, TooManyRuns
from sandbox.run import StreamName
from storage import Database

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunSpec:
    """What a client asked to run, whichever protocol it used."""

    language: str
    code: str
    stdin: str | None = None
    timeout: float | None = None
    project_id: int | None = None
    save_history: bool = True


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

    def __post_init__(self) -> None:
        # One incremental decoder per stream: a character split across chunks arrives whole.
        self._decoders = {
            name: codecs.getincrementaldecoder("utf-8")(errors="replace")
            for name in ("stdout", "stderr")
        }

    async def write_stdin(self, text: str) -> None:
        data = text.encode()
        kept = data[: max(self.stdin_bytes - self.typed_bytes, 0)]
        if kept:
            self.typed.append(kept.decode(errors="ignore"))
            self.typed_bytes += len(kept)
        await self.run.write_stdin(data)

    @property
    def stdin(self) -> str | None:
        """The program's input for the record: given up front, or as it was typed."""
        if self.spec.stdin is not None:
            return self.spec.stdin
        return "".join(self.typed) or None

    async def output(self) -> AsyncIterator[tuple[StreamName, str]]:
        """Decoded output chunks in the order the program wrote them."""
        async for chunk in self.run:
            text = self._decoders[chunk.stream].decode(chunk.data)
            if text:
                yield self._keep(chunk.stream, text)
        for name, decoder in self._decoders.items():
            if text := decoder.decode(b"", final=True):
                yield self._keep(name, text)  # type: ignore[arg-type]

    def _keep(self, stream: StreamName, text: str) -> tuple[StreamName, str]:
        (self.stdout if stream == "stdout" else self.stderr).append(text)
        return stream, text


class RunService:
    """Starts runs for users, keeps track of them, and stores each one when it ends."""

    def __init__(
        self,
        backend: Backend,
        db: Database,
        *,
        stdin_bytes: int,
        max_runs: int,
        max_runs_per_user: int,
    ) -> None:
        self.backend = backend
        self.db = db
        self.stdin_bytes = stdin_bytes
        self.max_runs = max_runs
        self.max_runs_per_user = max_runs_per_user
        self.active: set[Execution] = set()
        # Slots are taken before a run starts (starting takes a while) and freed when it ends.
        self._slots: Counter[int] = Counter()

    async def start(self, user_id: int, spec: RunSpec) -> Execution:
        """Start a run; raises a ``SandboxError`` when it is refused."""
        stdin = None if spec.stdin is None else spec.stdin.encode()
        if stdin is not None and len(stdin) > self.stdin_bytes:
            raise StdinTooLarge(len(stdin), self.stdin_bytes)
        self._take_slot(user_id)
        try:
            run = await self.backend.start(
                RunRequest(spec.language, spec.code, stdin=stdin, timeout=spec.timeout)
            )
        except BaseException:
            self._free_slot(user_id)
            raise
        execution = Execution(run, spec, user_id, self.stdin_bytes)
        self.active.add(execution)
        return execution

    def _take_slot(self, user_id: int) -> None:
        if self._slots.total() >= self.max_runs:
            raise TooManyRuns(f"the server runs {self.max_runs} programs already: try again soon")
        if self._slots[user_id] >= self.max_runs_per_user:
            raise TooManyRuns(
                f"you have {self._slots[user_id]} programs running, "
                "the most one user may run at once"
            )
        self._slots[user_id] += 1

    def _free_slot(self, user_id: int) -> None:
        self._slots[user_id] -= 1
        if self._slots[user_id] <= 0:
            del self._slots[user_id]

    async def finish(self, execution: Execution) -> tuple[Result, int | None]:
        """Wait for the end of a run whose output was consumed; store it when asked to."""
        try:
            result = await execution.run.result()
        finally:
            if execution in self.active:
                self.active.discard(execution)
                self._free_slot(execution.user_id)
        if not execution.spec.save_history:
            return result, None
        try:
            return result, await self._store(execution, result)
        except Exception:
            # The client still gets its exit frame; the failure is ours and is logged loudly.
            log.exception("could not store run %s", execution.run.id)
            return result, None

    async def _store(self, execution: Execution, result: Result) -> int:
        record = await self.db.save_execution(
            user_id=execution.user_id,
            project_id=execution.spec.project_id,
            language=execution.spec.language,
            code=execution.spec.code,
            stdin=execution.stdin,
            output="".join(execution.stdout) or None,
            error="".join(execution.stderr) or None,
            exit_code=result.exit_code,
            signal=result.signal,
            status=result.status.value,
            execution_time=result.execution_time,
            output_truncated=result.output_truncated,
        )
        assert record.id is not None
        return record.id

    async def kill_all(self) -> None:
        """Stop every running program (server shutdown)."""
        await asyncio.gather(
            *(execution.run.kill() for execution in list(self.active)), return_exceptions=True
        )
