"""``python -m bench.engines``: sustained runs per second on one Docker engine against two.

Two servers with the same settings (default pool, default runtime), one after the other so
they do not compete: ``one`` uses the main engine only; ``two`` uses the main engine and a
second dockerd on this same machine (scripts/second-engine.sh: its own data root and
containerd, reached over TCP with TLS). N clients (one socket each) run a short Python program
back to back for a fixed time. Reported: runs/s, run latency (``run`` frame to ``exit``)
p50/p95, statuses and errors, and the ratio two/one. Both engines share this machine's cores:
the ratio measures what a second engine's own daemon and containerd add here, not what a
second machine would. Writes ``bench/results/engines.json`` and ``engines.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench import sockets
from bench.burst import tokens
from bench.machine import describe, load_average
from bench.measure import say
from bench.servers import raise_fd_limit
from bench.stats import summary
from server.config import Settings
from tests.server import ServerProcess, free_port

RESULTS = Path(__file__).parent / "results"
SCRIPT = Path(__file__).parent.parent / "scripts" / "second-engine.sh"
MAIN = "unix:///var/run/docker.sock"
CODE = 'print("hello")'
CLIENTS = 8
SECONDS = 30.0
WARMUP_SECONDS = 10.0  # for the pools to fill before the clock starts


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.engines", description=__doc__)
    parser.add_argument("--clients", type=int, default=CLIENTS)
    parser.add_argument("--seconds", type=float, default=SECONDS)
    return parser.parse_args(argv)


def start_second_engine(folder: Path, image: str) -> dict[str, str]:
    out = subprocess.run(
        [SCRIPT, "start", folder, str(free_port()), image],
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    ).stdout
    return dict(line.split("=", 1) for line in out.split())


def stop_second_engine(folder: Path) -> None:
    subprocess.run([SCRIPT, "stop", folder], check=False, timeout=300)


async def sustained(server: ServerProcess, clients: int, seconds: float) -> dict[str, Any]:
    token = (await tokens(server, 1))[0]
    await asyncio.sleep(WARMUP_SECONDS)
    result = await sockets.sustained(server.ws_url, token, clients, seconds, CODE)
    return {
        "runs_per_second": round(result.per_second, 2),
        "completed": result.completed,
        "seconds": round(result.seconds, 1),
        "latency_ms": summary(result.latencies),
        "statuses": dict(result.statuses),
        "errors": len(result.errors),
        "first_errors": result.errors[:3],
    }


async def measure(clients: int, seconds: float) -> dict[str, Any]:
    settings = Settings()
    folder = Path(tempfile.mkdtemp(prefix="execstream-bench-engines-"))
    engine2 = Path(tempfile.mkdtemp(prefix="es-", dir="/tmp"))  # short: a socket lives there
    results: dict[str, Any] = {
        "clients": clients,
        "seconds": seconds,
        "code": CODE,
        "machine": describe(""),
    }
    try:
        say("starting a second dockerd (the image is loaded into it once)")
        env = start_second_engine(engine2, settings.image)
        tls = {"DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": env["DOCKER_CERT_PATH"]}
        setups = {
            "one": {"EXECSTREAM_DOCKER_URLS": MAIN},
            "two": {"EXECSTREAM_DOCKER_URLS": f"{MAIN},{env['EXECSTREAM_ENGINE2']}", **tls},
        }
        for name, extra in setups.items():
            server = ServerProcess(folder / name, **extra)
            say(f"{name} engine(s): {clients} clients for {seconds:.0f} s")
            server.start()
            try:
                results[name] = await sustained(server, clients, seconds)
            finally:
                server.stop()
        results["ratio"] = round(
            results["two"]["runs_per_second"] / max(results["one"]["runs_per_second"], 1e-9), 2
        )
    finally:
        await asyncio.to_thread(stop_second_engine, engine2)
        shutil.rmtree(folder, ignore_errors=True)
    results["load_average"] = load_average()
    return results


def markdown(results: dict[str, Any]) -> str:
    machine = results["machine"]
    lines = [
        "# One Docker engine against two on the same machine",
        "",
        f"{results['clients']} clients, each on its own socket, run `{results['code']}` back to "
        f"back for {results['seconds']:.0f} s per setup (the default warm pool and runtime).",
        "",
        "| engines | runs/s | latency p50 ms | latency p95 ms | errors |",
        "|---|---|---|---|---|",
    ]
    for name in ("one", "two"):
        row = results[name]
        p50, p95 = row["latency_ms"].get("p50_ms"), row["latency_ms"].get("p95_ms")
        lines.append(f"| {name} | {row['runs_per_second']} | {p50} | {p95} | {row['errors']} |")
    lines += [
        "",
        f"Ratio two/one: **{results['ratio']}**. Both engines run on the same cores here, so "
        "the second engine adds a daemon, not CPU: the ratio says what placement and a second "
        "dockerd cost or gain on one machine; engines on separate machines add their cores.",
        "",
        f"Machine: {machine['nproc']} CPUs ({machine['cpu_model']}), load average at the start "
        f"{machine['load_average_at_start']}, at the end {results['load_average']} (other "
        "work on the machine meanwhile counts: compare the two rows, measured minutes apart).",
    ]
    return "\n".join(lines) + "\n"


def write(results: dict[str, Any], folder: Path = RESULTS) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "engines.json").write_text(json.dumps(results, indent=2) + "\n")
    text = markdown(results)
    (folder / "engines.md").write_text(text)
    return text


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    raise_fd_limit()
    print(write(asyncio.run(measure(max(args.clients, 1), args.seconds))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
