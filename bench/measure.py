"""The four measurements, each side by side with its comparison, in one event loop."""

from __future__ import annotations

import asyncio
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any

from bench import inprocess, login_flood, sockets
from bench.engine import Engine, Phases
from bench.machine import describe, load_average
from bench.servers import Server, rss_bytes
from bench.stats import ms, summary
from sandbox.container import Runtime
from sandbox.languages import sandboxes
from server.config import Settings

HELLO = {"python": 'print("hello")', "javascript": 'console.log("hello")'}
FLOOD = 'while True: print("x" * 100)'
# Kinds of warm container a bench server keeps (it preloads, as by default).
KINDS = len(sandboxes(preload=True))


@dataclass(frozen=True)
class Options:
    runs: int = 50
    pause: float = 0.3
    pool_size: int = 2
    clients: int = 8
    seconds: float = 30.0
    sessions: int = 1000
    flood_runs: int = 20
    login_rounds: int = 5
    """Rounds of 40 wrong sign-ins at once against a program printing every 50 ms."""
    breakdown_runs: int = 20
    """Runs for the warm breakdown: DockerBackend in-process, and raw started containers."""
    runtime: Runtime = "runc"
    """Container runtime of the servers and the raw baseline (``python -m bench.runtimes``
    compares runc with runsc)."""
    core: bool = False
    """Only the measurements of the main table (``--core``)."""


@dataclass(frozen=True)
class Target:
    """A running server and a signed-in user's token for it."""

    server: Server
    token: str

    @property
    def url(self) -> str:
        return self.server.ws_url


def say(text: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


async def measure(options: Options, engine: Engine, warm: Target, cold: Target) -> dict[str, Any]:
    results: dict[str, Any] = {
        "machine": describe(await engine.version()),
        "settings": {
            "runs": options.runs,
            "pause_s": options.pause,
            "pool_size": options.pool_size,
            "clients": options.clients,
            "seconds": options.seconds,
            "sessions": options.sessions,
            "flood_runs": options.flood_runs,
            "login_rounds": options.login_rounds,
            "breakdown_runs": options.breakdown_runs,
            "runtime": options.runtime,
        },
        "first_output": {},
    }
    for language, code in HELLO.items():
        results["first_output"][language] = await first_output(
            options, engine, warm, cold, language, code
        )
    results["flood"] = await flood(options, engine, warm)
    # What a flood is compared with: print("hello") from run to exit, in its warm series.
    results["flood"]["hello_run_to_exit"] = results["first_output"]["python"]["warm"]["exit"]
    say(f"sign-in flood, warm: {options.login_rounds} rounds")
    results["login_flood"] = await login_flood.measure(
        warm.server.url, warm.url, warm.token, options.login_rounds, login_flood.LOGINS
    )
    results["throughput"] = await throughput(options, engine, warm)
    results["idle_sessions"] = await idle_sessions(options, warm)
    results["machine"]["load_average_at_end"] = load_average()
    return results


async def first_output(
    options: Options, engine: Engine, warm: Target, cold: Target, language: str, code: str
) -> dict[str, Any]:
    """Warm server, cold server, raw engine: the same program, the same number of runs."""
    figures: dict[str, Any] = {}
    for mode, target in (("warm", warm), ("cold", cold)):
        say(f"first output, {language}, {mode}: {options.runs} runs")
        # One run first, not counted: the server's first run of a language loads code.
        await sockets.series(target.url, target.token, language, code, 1, options.pause, "success")
        if target is warm:
            await pool_full(engine, warm, options.pool_size)
        series = await sockets.series(
            target.url, target.token, language, code, options.runs, options.pause, "success"
        )
        figures[mode] = {
            "first_output": summary(
                [t.first_output for t in series.timings if t.first_output is not None]
            ),
            "started": summary([t.started for t in series.timings]),
            "started_to_first_output": summary(
                [t.first_output - t.started for t in series.timings if t.first_output is not None]
            ),
            "exit": summary([t.exit for t in series.timings]),
            "failures": series.failures,
        }
    say(f"first output, {language}, raw engine: {options.runs} runs")
    phases: list[Phases] = []
    failures: list[str] = []
    for n in range(options.runs + 1):
        try:
            measured = await engine.first_output(language, code)
        except Exception as exc:
            failures.append(f"{type(exc).__name__}: {exc}"[:200])
        else:
            if n:  # the first one is a warm-up, as for the servers
                phases.append(measured)
        await asyncio.sleep(options.pause)
    figures["raw"] = {
        "total": summary([p.total for p in phases]),
        **{
            name: summary([getattr(p, name) for p in phases])
            for name in asdict(Phases(0, 0, 0, 0, 0))
        },
        "failures": failures,
    }
    figures.update(await breakdown(options, engine, language, code))
    return figures


async def breakdown(options: Options, engine: Engine, language: str, code: str) -> dict[str, Any]:
    """Where a warm run's time goes: the sandbox layer alone, and the container alone."""
    runs = options.breakdown_runs
    say(f"first output, {language}, DockerBackend in this process (warm): {runs} runs")
    settings = Settings()
    backend = await inprocess.series(
        settings.image,
        settings.limits,
        options.pool_size,
        language,
        code,
        runs + 1,
        options.pause,
        options.runtime,
    )
    timings = backend.timings[1:]
    say(f"first output, {language}, raw started containers: {runs} runs")
    waiting: list[float] = []
    failures: list[str] = []
    while len(waiting) < runs and len(failures) < 3:
        try:
            waiting += await engine.waiting_first_byte(language, code, min(10, runs - len(waiting)))
        except Exception as exc:
            failures.append(f"{type(exc).__name__}: {exc}"[:200])
    return {
        "backend_warm": {
            "start": summary([t.start for t in timings]),
            "first_output": summary([t.first_output for t in timings]),
            "warm_runs": sum(t.warm for t in timings),
            "container_age": summary([t.age for t in timings if t.age is not None]),
            "runs": [
                {
                    "first_output_ms": ms(t.first_output),
                    "age_ms": None if t.age is None else ms(t.age),
                }
                for t in timings
            ],
            "failures": backend.failures,
        },
        "raw_warm": {"first_byte": summary(waiting), "failures": failures},
    }


async def flood(options: Options, engine: Engine, warm: Target) -> dict[str, Any]:
    say(f"output flood, warm: {options.flood_runs} runs")
    await pool_full(engine, warm, options.pool_size)
    series = await sockets.series(
        warm.url, warm.token, "python", FLOOD, options.flood_runs, options.pause, "output_limit"
    )
    return {
        "run_to_exit": summary([t.exit for t in series.timings]),
        "first_output": summary(
            [t.first_output for t in series.timings if t.first_output is not None]
        ),
        "failures": series.failures,
    }


async def throughput(options: Options, engine: Engine, warm: Target) -> dict[str, Any]:
    await pool_full(engine, warm, options.pool_size)
    say(f"throughput, ours: {options.clients} clients for {options.seconds:.0f} s")
    ours = await sockets.sustained(
        warm.url, warm.token, options.clients, options.seconds, HELLO["python"]
    )
    await asyncio.sleep(2)  # let the server finish removing the last containers
    say(f"throughput, raw engine: {options.clients} workers for {options.seconds:.0f} s")
    raw = await engine.rate("python", HELLO["python"], options.clients, options.seconds)
    return {
        "ours": {
            "clients": options.clients,
            "seconds": ours.seconds,
            "completed": ours.completed,
            "runs_per_second": ours.per_second,
            "statuses": dict(ours.statuses),
            "run_to_exit": summary(ours.latencies),
            "errors": ours.errors,
        },
        "raw": {
            "workers": options.clients,
            "seconds": raw.seconds,
            "completed": raw.completed,
            "failed": raw.failed,
            "runs_per_second": raw.per_second,
            "errors": raw.errors,
        },
        "ratio": ours.per_second / raw.per_second if raw.per_second else None,
    }


async def idle_sessions(options: Options, warm: Target) -> dict[str, Any]:
    say(f"idle sessions: {options.sessions} sockets")
    pid = warm.server.pid
    await asyncio.sleep(1)
    before = rss_bytes(pid)
    began = time.perf_counter()
    opened, failures = await sockets.idle_sockets(warm.url, warm.token, options.sessions)
    try:
        opening = time.perf_counter() - began
        await asyncio.sleep(2)
        during = rss_bytes(pid)
        still_open = sum(ws.state.name == "OPEN" for ws in opened)
    finally:
        await sockets.close_all(opened)
    await asyncio.sleep(2)
    return {
        "wanted": options.sessions,
        "open": still_open,
        "opening_seconds": round(opening, 3),
        "rss_before_bytes": before,
        "rss_open_bytes": during,
        "rss_after_close_bytes": rss_bytes(pid),
        "per_session_bytes": (during - before) / max(still_open, 1),
        "failures": failures,
    }


async def pool_full(engine: Engine, warm: Target, size: int, seconds: float = 60) -> None:
    """Before a series: wait until the warm server's pool holds ``size`` containers of
    each kind, then ``SETTLE_SECONDS`` for their launchers to be waiting."""
    deadline = time.monotonic() + seconds
    while await engine.running(warm.server.owner) < size * KINDS:
        if time.monotonic() > deadline:
            say(f"warning: the pool did not fill within {seconds:.0f} s")
            return
        await asyncio.sleep(0.1)
    await asyncio.sleep(inprocess.SETTLE_SECONDS)
