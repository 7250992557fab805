"""``python -m bench.balancer``: what going through the load balancer costs.

Two servers (warm pool) on one SQLite file, behind Debian's nginx configured from the
shipped ``deploy/nginx.conf`` (tests/nginx.py), against the same servers reached directly,
side by side and interleaved in one run:

- first output of a warm ``print("hello")`` over a WebSocket (p50, p95), in rounds that
  alternate between the two paths;
- REST latency: ``GET /api/v1/limits`` (no token, no database), ``GET /api/v1/code/history``
  (a token and a query) and ``POST /api/v1/code/execute`` of ``print("hello")``, each
  request direct then through nginx, on kept-alive connections;
- sustained completed runs/s: clients running ``print("hello")`` back to back on one
  server directly, then on the two replicas through nginx (one engine under both).

Writes ``bench/results/balancer.json`` and ``balancer.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench import sockets
from bench.engine import Engine
from bench.machine import describe, load_average
from bench.measure import say
from bench.servers import Server, raise_fd_limit
from bench.stats import summary
from server.config import Settings
from tests.nginx import NginxProcess

RESULTS = Path(__file__).parent / "results"
HELLO = 'print("hello")'
PROXY = "127.0.0.2"  # nginx reaches the servers from here; they trust it and only it


@dataclass(frozen=True)
class Options:
    rounds: int = 4
    runs: int = 15
    """Warm runs per path and round."""
    pause: float = 0.3
    requests: int = 200
    """REST requests per path and endpoint (execute: a tenth of it)."""
    clients: int = 8
    seconds: float = 20.0
    runtime: str = "runc"


@dataclass(frozen=True)
class Paths:
    """The same servers, reached directly (the first one) and through nginx."""

    direct: Server
    nginx: NginxProcess
    token: str


def parse(argv: list[str] | None) -> Options:
    parser = argparse.ArgumentParser(prog="python -m bench.balancer", description=__doc__)
    defaults = Options()
    parser.add_argument("--rounds", type=int, default=defaults.rounds)
    parser.add_argument("--runs", type=int, default=defaults.runs, help="runs per path and round")
    parser.add_argument("--pause", type=float, default=defaults.pause)
    parser.add_argument("--requests", type=int, default=defaults.requests)
    parser.add_argument("--clients", type=int, default=defaults.clients)
    parser.add_argument("--seconds", type=float, default=defaults.seconds)
    parser.add_argument("--runtime", choices=["runc", "runsc"], default=defaults.runtime)
    args = parser.parse_args(argv)
    return Options(
        max(args.rounds, 1),
        max(args.runs, 1),
        args.pause,
        max(args.requests, 10),
        max(args.clients, 1),
        args.seconds,
        args.runtime,
    )


async def first_output(options: Options, paths: Paths) -> dict[str, Any]:
    samples: dict[str, list[float]] = {"direct": [], "nginx": []}
    failures: list[str] = []
    urls = {"direct": paths.direct.ws_url, "nginx": paths.nginx.ws_url}
    for round_ in range(options.rounds):
        for name, url in urls.items():
            say(f"first output, round {round_ + 1}/{options.rounds}, {name}: {options.runs} runs")
            # One run first, not counted: a socket's first run is not what is compared.
            runs = options.runs + 1
            series = await sockets.series(
                url, paths.token, "python", HELLO, runs, options.pause, "success"
            )
            timings = [t.first_output for t in series.timings[1:] if t.first_output is not None]
            samples[name] += timings
            failures += series.failures
    return {**{name: summary(values) for name, values in samples.items()}, "failures": failures}


async def rest(options: Options, paths: Paths) -> dict[str, Any]:
    """Each request direct, then the same through nginx, on kept-alive connections."""
    headers = {"Authorization": f"Bearer {paths.token}"}
    requests = {
        "limits": ("GET", "/api/v1/limits", None, options.requests),
        "history": ("GET", "/api/v1/code/history?limit=20", None, options.requests),
        "execute": (
            "POST",
            "/api/v1/code/execute",
            {"language": "python", "code": HELLO, "save_history": False},
            max(options.requests // 10, 5),
        ),
    }
    results: dict[str, Any] = {}
    async with (
        httpx.AsyncClient(base_url=paths.direct.url, headers=headers, timeout=60) as direct,
        httpx.AsyncClient(base_url=paths.nginx.url, headers=headers, timeout=60) as nginx,
    ):
        clients = {"direct": direct, "nginx": nginx}
        for name, (method, path, body, count) in requests.items():
            say(f"REST {method} {path}: {count} requests per path")
            samples: dict[str, list[float]] = {"direct": [], "nginx": []}
            failures: list[str] = []
            for n in range(count + 1):
                for via, client in clients.items():
                    began = time.perf_counter()
                    response = await client.request(method, path, json=body)
                    took = time.perf_counter() - began
                    if response.status_code != 200:
                        failures.append(f"{via}: {response.status_code} {response.text[:100]}")
                    elif n:  # the first of each opens its connection: not counted
                        samples[via].append(took)
                    if method == "POST":  # as for first output: the pool refills meanwhile
                        await asyncio.sleep(options.pause)
            results[name] = {
                **{via: summary(values) for via, values in samples.items()},
                "failures": failures,
            }
    return results


async def throughput(options: Options, paths: Paths) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for name, url in (("direct", paths.direct.ws_url), ("nginx", paths.nginx.ws_url)):
        say(f"throughput, {name}: {options.clients} clients for {options.seconds:.0f} s")
        done = await sockets.sustained(url, paths.token, options.clients, options.seconds, HELLO)
        results[name] = {
            "clients": options.clients,
            "seconds": done.seconds,
            "completed": done.completed,
            "runs_per_second": done.per_second,
            "statuses": dict(done.statuses),
            "run_to_exit": summary(done.latencies),
            "errors": done.errors,
        }
        await asyncio.sleep(3)  # the last containers removed, the pools refilled
    return results


async def measure(options: Options, paths: Paths) -> dict[str, Any]:
    settings = Settings()
    engine = Engine(settings.image, settings.limits)
    try:
        machine = describe(await engine.version())
    finally:
        await engine.close()
    results: dict[str, Any] = {
        "machine": machine,
        "settings": {**options.__dict__},
        "first_output": await first_output(options, paths),
        "rest": await rest(options, paths),
        "throughput": await throughput(options, paths),
    }
    results["machine"]["load_average_at_end"] = load_average()
    return results


def servers(folder: Path, runtime: str) -> list[Server]:
    """Two replicas as deployed: one database, one token secret, nginx trusted."""
    shared = {
        "EXECSTREAM_DATABASE_URL": f"sqlite+aiosqlite:///{folder / 'shared.db'}",
        "EXECSTREAM_JWT_SECRET": os.urandom(32).hex(),
        "EXECSTREAM_TRUSTED_PROXIES": PROXY,
    }
    replicas = [Server(name, folder / name, 2, runtime) for name in ("a", "b")]
    for replica in replicas:
        replica.env.update(shared)
    return replicas


def run(options: Options) -> dict[str, Any]:
    """Start the servers and nginx, measure, stop them and sweep what they left."""
    folder = Path(tempfile.mkdtemp(prefix="execstream-bench-balancer-"))
    replicas = servers(folder, options.runtime)
    nginx = NginxProcess(folder / "nginx", [f"127.0.0.1:{s.port}" for s in replicas], PROXY)
    ok = False
    try:
        for replica in replicas:  # one after the other: the first creates the database
            replica.start()
        nginx.start()
        paths = Paths(replicas[0], nginx, replicas[0].token())
        results = asyncio.run(measure(options, paths))
        ok = True
        return results
    finally:
        nginx.stop()
        owners = []
        for replica in replicas:
            replica.stop()
            owners += replica.instances()
        asyncio.run(sweep(owners))
        if ok:
            shutil.rmtree(folder, ignore_errors=True)
        else:
            say(f"logs kept in {folder}")


async def sweep(owners: list[str]) -> None:
    settings = Settings()
    engine = Engine(settings.image, settings.limits)
    try:
        removed = await engine.sweep(owners)
    finally:
        await engine.close()
    if removed:
        say(f"removed {removed} container(s) left behind")


def ratio(nginx: float, direct: float) -> str:
    return f"{nginx / direct:.2f}x" if direct else "—"


def row(what: str, direct: float, nginx: float, unit: str = "ms") -> str:
    added = f"{nginx - direct:+.2f} {unit}"
    return (
        f"| {what} | {direct:.2f} {unit} | {nginx:.2f} {unit} | {ratio(nginx, direct)} | {added} |"
    )


def markdown(results: dict[str, Any]) -> str:
    machine = results["machine"]
    settings = results["settings"]
    first = results["first_output"]
    lines = [
        "## Through the load balancer (`python -m bench.balancer`)",
        "",
        f"{machine['nproc']} x {machine['cpu_model']}, Docker {machine['docker_server_version']}, "
        f"commit {machine['git_commit']}, load average at start "
        f"{' '.join(map(str, machine['load_average_at_start']))}, at end "
        f"{' '.join(map(str, machine['load_average_at_end']))}. Two servers (warm "
        f"pool 2, {settings['runtime']}) on one SQLite file; nginx from deploy/nginx.conf; "
        f"direct = the first server itself. First output: {settings['rounds']} rounds of "
        f"{settings['runs']} runs per path, alternating; REST: each request direct then "
        "through nginx, kept-alive connections.",
        "",
        "| what | direct | through nginx | ratio (nginx/direct) | added |",
        "|---|---|---|---|---|",
    ]
    for p in ("p50", "p95"):
        key = f"{p}_ms"
        lines.append(
            row(f"WebSocket first output, warm, {p}", first["direct"][key], first["nginx"][key])
        )
    for name, label in (
        ("limits", "GET /api/v1/limits"),
        ("history", "GET /api/v1/code/history"),
        ("execute", 'POST /api/v1/code/execute print("hello")'),
    ):
        figures = results["rest"][name]
        for p in ("p50", "p95"):
            key = f"{p}_ms"
            lines.append(row(f"{label}, {p}", figures["direct"][key], figures["nginx"][key]))
    flow = results["throughput"]
    lines.append(
        row(
            f"completed runs/s, {flow['direct']['clients']} clients "
            f"(direct: 1 server; nginx: 2 replicas; one engine)",
            flow["direct"]["runs_per_second"],
            flow["nginx"]["runs_per_second"],
            "/s",
        )
    )
    failures = sum(len(part.get("failures", [])) for part in [first, *results["rest"].values()])
    failures += sum(len(flow[via]["errors"]) for via in ("direct", "nginx"))
    lines += ["", f"Failures: {failures}."]
    return "\n".join(lines) + "\n"


def write(results: dict[str, Any]) -> str:
    text = markdown(results)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "balancer.json").write_text(json.dumps(results, indent=2) + "\n")
    (RESULTS / "balancer.md").write_text(text)
    return text


def main(argv: list[str] | None = None) -> int:
    options = parse(argv)
    raise_fd_limit()
    print(write(run(options)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
