"""Our server as a client sees it: runs over the WebSocket, timed from the ``run`` frame."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import urlencode

from websockets.asyncio.client import ClientConnection, connect

RUN_SECONDS = 35.0  # bound on one run as the client waits for it (the server's wall time is 30)


@dataclass(frozen=True)
class Timing:
    """One run, each time in seconds from sending its ``run`` frame."""

    started: float
    first_output: float | None
    exit: float
    status: str
    stdout: str


@dataclass
class Series:
    """Runs of one program back to back on one socket."""

    timings: list[Timing] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


@dataclass
class Throughput:
    completed: int = 0
    seconds: float = 0.0
    statuses: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def per_second(self) -> float:
        return self.completed / self.seconds if self.seconds else 0.0


def address(ws_url: str, token: str) -> str:
    return f"{ws_url}?{urlencode({'token': token})}"


async def open_socket(ws_url: str, token: str) -> ClientConnection:
    return await connect(address(ws_url, token), open_timeout=30, ping_interval=None)


async def run_once(ws: ClientConnection, language: str, code: str) -> Timing:
    """Send one ``run`` and read its frames up to ``exit``."""
    frame = json.dumps({"type": "run", "language": language, "code": code})
    started: float | None = None
    first: float | None = None
    stdout: list[str] = []
    async with asyncio.timeout(RUN_SECONDS):
        t0 = time.perf_counter()
        await ws.send(frame)
        while True:
            raw = await ws.recv()
            now = time.perf_counter() - t0
            message = json.loads(raw)
            kind = message["type"]
            if kind == "output":
                if first is None:
                    first = now
                if message["stream"] == "stdout":
                    stdout.append(message["data"])
            elif kind == "started":
                started = now
            elif kind == "exit":
                if started is None:
                    raise RuntimeError("exit frame without a started frame")
                return Timing(started, first, now, message["status"], "".join(stdout))
            elif kind == "error":
                raise RuntimeError(f"error frame: {message['code']}: {message['message']}")


async def series(
    ws_url: str, token: str, language: str, code: str, runs: int, pause: float, expect: str
) -> Series:
    """``runs`` runs back to back on one socket, ``pause`` seconds apart."""
    result = Series()
    async with await open_socket(ws_url, token) as ws:
        for _ in range(runs):
            try:
                timing = await run_once(ws, language, code)
            except Exception as exc:
                result.failures.append(f"{type(exc).__name__}: {exc}"[:200])
                if ws.state.name != "OPEN":
                    break
            else:
                if timing.status == expect:
                    result.timings.append(timing)
                else:
                    result.failures.append(f"status {timing.status}, stdout {timing.stdout!r}")
            await asyncio.sleep(pause)
    return result


async def sustained(ws_url: str, token: str, clients: int, seconds: float, code: str) -> Throughput:
    """``clients`` sockets running ``code`` back to back; counts exit frames before the end."""
    result = Throughput()
    deadline = time.perf_counter() + seconds

    async def client() -> None:
        async with await open_socket(ws_url, token) as ws:
            while time.perf_counter() < deadline:
                try:
                    timing = await run_once(ws, "python", code)
                except Exception as exc:
                    result.errors.append(f"{type(exc).__name__}: {exc}"[:200])
                    if ws.state.name != "OPEN":
                        return
                    continue
                if time.perf_counter() <= deadline:
                    result.completed += 1
                    result.statuses[timing.status] += 1
                    result.latencies.append(timing.exit)

    began = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    result.seconds = min(time.perf_counter(), deadline) - began
    return result


async def idle_sockets(
    ws_url: str, token: str, count: int, concurrency: int = 50
) -> tuple[list[ClientConnection], list[str]]:
    """Open ``count`` authenticated sockets that run nothing; returns them and any failures."""
    gate = asyncio.Semaphore(concurrency)
    opened: list[ClientConnection] = []
    failures: list[str] = []

    async def one() -> None:
        async with gate:
            try:
                opened.append(await open_socket(ws_url, token))
            except Exception as exc:
                failures.append(f"{type(exc).__name__}: {exc}"[:200])

    await asyncio.gather(*(one() for _ in range(count)))
    return opened, failures


async def close_all(sockets: list[ClientConnection]) -> None:
    await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
