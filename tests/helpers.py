"""Small helpers shared by the tests."""

from __future__ import annotations

from dataclasses import dataclass, field

from sandbox import Result, Run, Stage


@dataclass
class Collected:
    result: Result
    stdout: bytes = b""
    stderr: bytes = b""
    chunks: list[tuple[str, bytes]] = field(default_factory=list)
    stages: list[str] = field(default_factory=list)
    compiler: bytes = b""
    """What the compile stage said (its stderr), apart from the program's output."""


async def collect(run: Run) -> Collected:
    """Read a run to its end: every chunk, then its result. Output of a compile stage is
    kept apart, in ``compiler``."""
    chunks, stages, compiler = [], [], b""
    async for out in run:
        if isinstance(out, Stage):
            stages.append(out.stage)
        elif stages and stages[-1] == "compile":
            compiler += out.data
        else:
            chunks.append((out.stream, out.data))
    stdout = b"".join(data for stream, data in chunks if stream == "stdout")
    stderr = b"".join(data for stream, data in chunks if stream == "stderr")
    return Collected(await run.result(), stdout, stderr, chunks, stages, compiler)


async def read_until(run: Run, expected: bytes) -> bytes:
    """Read output until it ends with ``expected`` (a print may arrive in several chunks)."""
    seen = b""
    async for out in run:
        if isinstance(out, Stage):
            continue
        seen += out.data
        if seen.endswith(expected):
            return seen
    raise AssertionError(f"output ended before {expected!r}; got {seen!r}")
