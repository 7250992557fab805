"""Small helpers shared by the tests."""

from __future__ import annotations

from dataclasses import dataclass, field

from sandbox import Result, Run


@dataclass
class Collected:
    result: Result
    stdout: bytes = b""
    stderr: bytes = b""
    chunks: list[tuple[str, bytes]] = field(default_factory=list)


async def collect(run: Run) -> Collected:
    """Read a run to its end: every chunk, then its result."""
    chunks = [(out.stream, out.data) async for out in run]
    stdout = b"".join(data for stream, data in chunks if stream == "stdout")
    stderr = b"".join(data for stream, data in chunks if stream == "stderr")
    return Collected(await run.result(), stdout, stderr, chunks)


async def read_until(run: Run, expected: bytes) -> bytes:
    """Read output until it ends with ``expected`` (a print may arrive in several chunks)."""
    seen = b""
    async for out in run:
        seen += out.data
        if seen.endswith(expected):
            return seen
    raise AssertionError(f"output ended before {expected!r}; got {seen!r}")
