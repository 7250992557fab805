"""What a run is made of: its request and limits, what it sends, how it ended, and the
``Process`` seam a backend supplies."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal, Protocol

from sandbox.files import SourceFile

StreamName = Literal["stdout", "stderr"]
SIGNALS = ("SIGINT", "SIGTERM", "SIGKILL")


class Status(StrEnum):
    SUCCESS = "success"
    ERROR = "error"
    TIMEOUT = "timeout"
    MEMORY_LIMIT = "memory_limit"
    OUTPUT_LIMIT = "output_limit"
    KILLED = "killed"
    INTERNAL_ERROR = "internal_error"
    COMPILE_ERROR = "compile_error"
    BACKEND_UNAVAILABLE = "backend_unavailable"
    """The engine running the program broke or stopped answering: how it ended is unknown."""


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
    image_bytes: int = 1024 * 1024
    """One plot's PNG, at most; a larger one is dropped (a ``limit`` frame says so)."""
    images: int = 5
    """Plots per run, at most; past them, a ``limit`` frame."""


@dataclass(frozen=True)
class RunRequest:
    language: str
    code: str
    stdin: bytes | None = None
    """The whole input, followed by end-of-file; ``None`` keeps stdin open for ``write_stdin``."""
    timeout: float | None = None
    """Wall time in seconds; at most ``Limits.wall_time``, which is also the default."""
    files: tuple[SourceFile, ...] = ()
    """Written beside the entry file (``code``); see ``sandbox.files``."""


@dataclass(frozen=True)
class Output:
    stream: StreamName
    data: bytes


@dataclass(frozen=True)
class Stage:
    """A two-stage run moved on: ``compile`` starts, then ``run`` once the build succeeded."""

    stage: Literal["compile", "run"]


@dataclass(frozen=True)
class CompileStage:
    """The compile stage of a run, as the backend set it up: its process has begun."""

    wall_time: float
    output_bytes: int
    """The cap on the compiler's messages."""
    artifact_bytes: int
    """What the build may send back at most (what fits on the run container's tmpfs)."""
    memory_bytes: int
    start_run: Callable[[bytes], Awaitable[Process]]
    """Starts the run stage with the build's artifact: the run's process, begun."""


@dataclass(frozen=True)
class Image:
    """A plot the program showed, in the order of its output; ``data`` None once past the
    image caps (said once, then later images are dropped silently)."""

    data: bytes | None
    mime: str = "image/png"


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
    """The run stage's time; a compile stage counts in ``compile_time``."""
    output_truncated: bool
    compile_time: float | None = None
    cpu_time: float | None = None
    """CPU seconds (user plus system) the program used, as the sandbox's init measured (the
    run stage's, for a compiled language)."""
    memory_peak: int | None = None
    """Its peak resident memory in bytes; both None when the sandbox could not report."""


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

    async def wait(self) -> Exit:
        """How the process ended; raises ``BackendUnavailable`` when that cannot be known."""

    async def remove(self, ended: bool = False) -> None:
        """Stop the program if needed and free everything it held; safe to call twice.
        ``ended``: the program is known to have ended, so the sandbox may go at the
        backend's pace rather than now."""
