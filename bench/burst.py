"""``python -m bench.burst``: a class presses Run within the same second.

N students (N = 30 and N = 100 by default), each signed in with an account of their own and
an open socket on which the editor has announced Python (a ``prepare`` frame), press Run
together. Measured side by side, under each runtime asked for:

- ``pool``: a server with default settings (the predictive warm pool);
- ``off``: the same burst against a server with the pool off (``EXECSTREAM_POOL_SIZE=0``);
- ``raw``: the raw engine starting N containers at once (create, attach, start, program,
  first byte), no server.

Reported: first output p50, p95 and max (from the ``run`` frame to the first output frame),
failures, the warm pool's idle memory before the burst (the cgroup memory usage the engine's
stats report for each of the server's containers, summed), and a single warm Python run's
first output (20 runs, one at a time, 2 s apart: a student's pace, and time for the pool to
refill when it preloads matplotlib). Writes ``bench/results/burst.json`` and ``burst.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench import sockets
from bench.engine import Engine
from bench.machine import describe, load_average
from bench.measure import say
from bench.servers import raise_fd_limit
from bench.stats import summary
from sandbox.container import LABEL, OWNER_LABEL, Runtime
from server.config import Settings
from tests.server import PASSWORD, ServerProcess

RESULTS = Path(__file__).parent / "results"
HELLO = 'print("hello")'
SIZES = (30, 100)
TARGETS = {30: 150.0, 100: 2000.0}  # p95 of first output, ms
SETTLE_SECONDS = 3.0  # the pool's container count unchanged this long: it is full
FILL_SECONDS = 180.0
SINGLE_RUNS = 20
SINGLE_PAUSE = 2.0


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.burst", description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument(
        "--runtimes", nargs="+", choices=["runc", "runsc"], default=["runsc", "runc"]
    )
    parser.add_argument("--single-runs", type=int, default=SINGLE_RUNS)
    return parser.parse_args(argv)


def servers(folder: Path, runtime: str, max_runs: int) -> dict[str, ServerProcess]:
    # Default settings but the runtime, and the cap on runs at once: until runs past it wait
    # in a queue (another branch), they are refused, so the cap is raised to the burst's size.
    common = {"EXECSTREAM_RUNTIME": runtime, "EXECSTREAM_MAX_RUNS": str(max(64, max_runs))}
    return {
        "pool": ServerProcess(folder / f"{runtime}-pool", **common),
        "off": ServerProcess(folder / f"{runtime}-off", EXECSTREAM_POOL_SIZE="0", **common),
    }


async def tokens(server: ServerProcess, count: int) -> list[str]:
    """``count`` fresh accounts, signed in: one per student."""
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:

        async def one(n: int) -> str:
            credentials = {"username": f"student{n:03d}", "password": PASSWORD}
            (await http.post("/api/v1/auth/register", json=credentials)).raise_for_status()
            reply = await http.post("/api/v1/auth/token", data=credentials)
            reply.raise_for_status()
            return str(reply.json()["access_token"])

        return list(await asyncio.gather(*(one(n) for n in range(count))))


async def containers(engine: Engine, owner: str) -> list[Any]:
    return list(
        await engine.docker.containers.list(
            filters={"label": [f"{LABEL}=true", f"{OWNER_LABEL}={owner}"], "status": ["running"]}
        )
    )


async def settled(engine: Engine, owner: str) -> int:
    """Wait until the server's container count stops changing; that count."""
    last, since = -1, time.monotonic()
    deadline = time.monotonic() + FILL_SECONDS
    while time.monotonic() < deadline:
        count = len(await containers(engine, owner))
        if count != last:
            last, since = count, time.monotonic()
        elif time.monotonic() - since >= SETTLE_SECONDS:
            return count
        await asyncio.sleep(0.25)
    say(f"warning: the pool did not settle within {FILL_SECONDS:.0f} s")
    return last


async def idle_memory(engine: Engine, owner: str) -> dict[str, int]:
    """The memory the engine reports for each running container of ``owner``, summed."""
    gate = asyncio.Semaphore(8)

    async def usage(container: Any) -> int:
        async with gate:
            stats = await engine.docker._query_json(
                f"containers/{container.id}/stats", params={"stream": "false", "one-shot": "true"}
            )
        return int(stats.get("memory_stats", {}).get("usage", 0))

    found = await containers(engine, owner)
    used = await asyncio.gather(*(usage(c) for c in found))
    return {"containers": len(found), "bytes": sum(used)}


async def burst(server: ServerProcess, students: list[str], language: str) -> dict[str, Any]:
    """Every student's socket announces the language; once the pool has settled, all press
    Run at once."""
    engine_owner = server.owner
    opened = await asyncio.gather(
        *(sockets.open_socket(server.ws_url, token) for token in students)
    )
    try:
        for ws in opened:
            await ws.send(json.dumps({"type": "prepare", "language": language}))
        engine = Engine(Settings().image, Settings().limits)
        try:
            await settled(engine, engine_owner)
            memory = await idle_memory(engine, engine_owner)
        finally:
            await engine.close()
        timings = await asyncio.gather(
            *(sockets.run_once(ws, language, HELLO) for ws in opened), return_exceptions=True
        )
    finally:
        await sockets.close_all(list(opened))
    firsts, starts, failures = [], [], []
    for timing in timings:
        if isinstance(timing, BaseException):
            failures.append(f"{type(timing).__name__}: {timing}"[:200])
        elif timing.status != "success" or timing.first_output is None:
            failures.append(f"status {timing.status}, stdout {timing.stdout!r}")
        else:
            firsts.append(timing.first_output)
            starts.append(timing.started)
    return {
        "first_output": summary(firsts),
        "started": summary(starts),
        "failures": failures,
        "idle_memory": memory,
    }


async def raw(runtime: Runtime, count: int) -> dict[str, Any]:
    """The raw engine: ``count`` containers created, started and given a program at once."""
    settings = Settings()
    engine = Engine(settings.image, settings.limits, runtime)
    try:
        phases = await asyncio.gather(
            *(engine.first_output("python", HELLO) for _ in range(count)), return_exceptions=True
        )
        await engine.sweep([])
    finally:
        await engine.close()
    totals = [p.total for p in phases if not isinstance(p, BaseException)]
    failures = [f"{type(p).__name__}: {p}"[:200] for p in phases if isinstance(p, BaseException)]
    return {"first_output": summary(totals), "failures": failures}


async def single(server: ServerProcess, token: str, runs: int) -> dict[str, Any]:
    series = await sockets.series(
        server.ws_url, token, "python", HELLO, runs + 1, SINGLE_PAUSE, "success"
    )
    firsts = [t.first_output for t in series.timings[1:] if t.first_output is not None]
    return {"first_output": summary(firsts), "failures": series.failures}


async def measure_runtime(
    runtime: Runtime, sizes: list[int], single_runs: int, folder: Path
) -> dict[str, Any]:
    procs = servers(folder, runtime, max(sizes))
    owners: list[str] = []
    results: dict[str, Any] = {"bursts": {}}
    try:
        for server in procs.values():
            server.launch()
        for server in procs.values():
            server.ready(120)
            owners.append(server.owner)
        # Signing 2 x N students in takes a while: passwords are hashed one at a time.
        signed_in = await asyncio.gather(*(tokens(s, max(sizes)) for s in procs.values()))
        students = dict(zip(procs, signed_in, strict=True))
        say(f"{runtime}: a single warm Python run, {single_runs} times")
        results["single_warm"] = await single(procs["pool"], students["pool"][0], single_runs)
        for n in sizes:
            figures: dict[str, Any] = {}
            for name in ("pool", "off"):
                say(f"{runtime}: a burst of {n}, {name}")
                figures[name] = await burst(procs[name], students[name][:n], "python")
                await asyncio.sleep(5)  # let the removals of the burst's containers pass
            say(f"{runtime}: a burst of {n}, raw engine")
            figures["raw"] = await raw(runtime, n)
            results["bursts"][str(n)] = figures
    finally:
        for server in procs.values():
            server.stop()
        settings = Settings()
        engine = Engine(settings.image, settings.limits)
        try:
            await engine.sweep(owners)
        finally:
            await engine.close()
    return results


async def measure(runtimes: list[Runtime], sizes: list[int], single_runs: int) -> dict[str, Any]:
    settings = Settings()
    engine = Engine(settings.image, settings.limits)
    try:
        machine = describe(await engine.version())
    finally:
        await engine.close()
    folder = Path(tempfile.mkdtemp(prefix="execstream-burst-"))
    results: dict[str, Any] = {
        "machine": machine,
        "settings": {"sizes": sizes, "single_runs": single_runs, "runtimes": runtimes},
        "runtimes": {},
    }
    try:
        for runtime in runtimes:
            results["runtimes"][runtime] = await measure_runtime(
                runtime, sizes, single_runs, folder
            )
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    results["machine"]["load_average_at_end"] = load_average()
    return results


def cell(figures: dict[str, Any]) -> str:
    first = figures["first_output"]
    if not first.get("n"):
        return f"— ({len(figures['failures'])} failed)"
    return (
        f"{first['p50_ms']:.0f} / {first['p95_ms']:.0f} / {first['max_ms']:.0f} ms, "
        f"{len(figures['failures'])} failed"
    )


def markdown(results: dict[str, Any]) -> str:
    lines = [
        "## A class burst (python -m bench.burst)",
        "",
        "N students, one account and one socket each, announce Python, then press Run "
        'together (`print("hello")`). First output p50 / p95 / max, from the run frame; '
        "pool = default settings; off = EXECSTREAM_POOL_SIZE=0; raw = the engine starting N "
        "containers at once. EXECSTREAM_MAX_RUNS is raised to N (past 64 runs would be "
        "refused until runs wait in a queue).",
        "",
        "| runtime | N | pool | pool off | raw engine | pool idle memory before | "
        "target (p95) | met |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for runtime, figures in results["runtimes"].items():
        for n, burst_ in figures["bursts"].items():
            pool = burst_["pool"]
            memory = pool["idle_memory"]
            target = TARGETS.get(int(n))
            p95 = pool["first_output"].get("p95_ms", float("inf"))
            met = target is not None and p95 <= target and not pool["failures"]
            wanted = f"≤ {target:.0f} ms, 0 failed" if target else "—"
            lines.append(
                f"| {runtime} | {n} | {cell(pool)} | {cell(burst_['off'])} | "
                f"{cell(burst_['raw'])} | {memory['bytes'] / 2**20:.0f} MiB in "
                f"{memory['containers']} containers | "
                f"{wanted} | {'yes' if met else 'no'} |"
            )
        warm = figures["single_warm"]["first_output"]
        lines.append(
            f"| {runtime} | 1 (warm, {warm.get('n', 0)} runs) | p50 {warm.get('p50_ms', '—')} ms "
            f"| | | | p50 ≤ 5 ms | {'yes' if warm.get('p50_ms', 99) <= 5 else 'no'} |"
        )
    load = results["machine"].get("load_average_at_end")
    lines += ["", f"Machine: {results['machine']}; load average at the end: {load}."]
    return "\n".join(lines) + "\n"


def write(results: dict[str, Any], folder: Path = RESULTS) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "burst.json").write_text(json.dumps(results, indent=2) + "\n")
    text = markdown(results)
    (folder / "burst.md").write_text(text)
    return text


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    raise_fd_limit()
    results = asyncio.run(measure(args.runtimes, args.sizes, args.single_runs))
    print(write(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
