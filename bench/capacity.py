"""``python -m bench.capacity``: the figures docs/scaling.md sizes a deployment from.

On one server with the warm pool (size 2), for each runtime asked for:

- sustained completed runs/s: clients running a short program (``print("hello")``) back to
  back, the engine's CPU the limit (reported per engine core too);
- the server process's own CPU time per run (what sizes replicas);
- the server's memory per open WebSocket session: its VmRSS before and with idle,
  authenticated sessions open;
- the server's memory and the engine's warm containers after the runs.

Writes ``bench/results/capacity.json`` and ``capacity.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench import sockets
from bench.engine import Engine
from bench.machine import describe, load_average
from bench.measure import Options, Target, idle_sessions, say
from bench.servers import Server, raise_fd_limit, rss_bytes
from bench.stats import summary
from server.config import Settings

RESULTS = Path(__file__).parent / "results"
HELLO = 'print("hello")'


async def measure(server: Server, runtime: str, clients: int, seconds: float, sessions: int):
    token = server.token()
    say(f"{runtime}: {clients} clients for {seconds:.0f} s")
    await sockets.series(server.ws_url, token, "python", HELLO, 1, 0, "success")  # warm-up
    cpu_before = cpu_seconds(server.pid)
    done = await sockets.sustained(server.ws_url, token, clients, seconds, HELLO)
    server_cpu = cpu_seconds(server.pid) - cpu_before
    await asyncio.sleep(3)
    figures: dict[str, Any] = {
        "clients": clients,
        "seconds": done.seconds,
        "completed": done.completed,
        "runs_per_second": done.per_second,
        "runs_per_second_per_core": done.per_second / len(os.sched_getaffinity(0)),
        "statuses": dict(done.statuses),
        "run_to_exit": summary(done.latencies),
        "errors": done.errors,
        "server_rss_after_runs_bytes": rss_bytes(server.pid),
        "server_cpu_seconds_per_run": server_cpu / max(done.completed, 1),
    }
    if sessions:
        say(f"{runtime}: {sessions} idle sessions")
        options = Options(sessions=sessions)
        figures["idle_sessions"] = await idle_sessions(options, Target(server, token))
    return figures


def cpu_seconds(pid: int) -> float:
    """CPU time (user and system) a process has used so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def markdown(results: dict[str, Any]) -> str:
    machine = results["machine"]
    lines = [
        "## Capacity figures (`python -m bench.capacity`)",
        "",
        f"{machine['nproc']} x {machine['cpu_model']}, Docker {machine['docker_server_version']}, "
        f"commit {machine['git_commit']}, load average at start "
        f"{' '.join(map(str, machine['load_average_at_start']))}, at end "
        f"{' '.join(map(str, machine['load_average_at_end']))}. One server, warm pool 2, "
        'print("hello") back to back.',
        "",
        "| runtime | clients | runs/s | runs/s per core | run → exit p50 / p95 | "
        "server CPU per run | server RSS after | per idle session | errors |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for runtime, f in results["runtimes"].items():
        idle = f.get("idle_sessions")
        session = (
            f"{idle['per_session_bytes'] / 1024:.1f} KiB ({idle['open']} open)" if idle else "—"
        )
        lines.append(
            f"| {runtime} | {f['clients']} | {f['runs_per_second']:.2f} | "
            f"{f['runs_per_second_per_core']:.2f} | {f['run_to_exit']['p50_ms']:.0f} / "
            f"{f['run_to_exit']['p95_ms']:.0f} ms | "
            f"{f['server_cpu_seconds_per_run'] * 1000:.1f} ms | "
            f"{f['server_rss_after_runs_bytes'] / 2**20:.0f} "
            f"MiB | {session} | {len(f['errors'])} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.capacity", description=__doc__)
    parser.add_argument(
        "--runtimes", nargs="+", choices=["runc", "runsc"], default=["runc", "runsc"]
    )
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--sessions", type=int, default=1000)
    args = parser.parse_args(argv)
    raise_fd_limit()
    settings = Settings()
    folder = Path(tempfile.mkdtemp(prefix="execstream-bench-capacity-"))
    results: dict[str, Any] = {"runtimes": {}}
    owners: list[str] = []

    async def version() -> str:
        engine = Engine(settings.image, settings.limits)
        try:
            return await engine.version()
        finally:
            await engine.close()

    results["machine"] = describe(asyncio.run(version()))
    try:
        for runtime in args.runtimes:
            server = Server(runtime, folder / runtime, 2, runtime)
            try:
                server.start()
                results["runtimes"][runtime] = asyncio.run(
                    measure(server, runtime, args.clients, args.seconds, args.sessions)
                )
            finally:
                server.stop()
                owners += server.instances()
    finally:
        asyncio.run(sweep(settings, owners))
        shutil.rmtree(folder, ignore_errors=True)
    results["machine"]["load_average_at_end"] = load_average()
    text = markdown(results)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "capacity.json").write_text(json.dumps(results, indent=2) + "\n")
    (RESULTS / "capacity.md").write_text(text)
    print(text)
    return 0


async def sweep(settings: Settings, owners: list[str]) -> None:
    engine = Engine(settings.image, settings.limits)
    try:
        await engine.sweep(owners)
    finally:
        await engine.close()


if __name__ == "__main__":
    sys.exit(main())
