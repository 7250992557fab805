"""``python -m bench.db_statements``: what the database does per run, counted.

A real server whose SQLAlchemy engine has a listener on every statement it sends (an event
on ``Engine``, registered before ``execstream serve`` starts, in the server's own process),
writing one line per statement: when, verb, table. Then, on one server, in turn:

- idle, with one open session: the background (lease heartbeat, sweeps, checkpoints);
- ``print("hello")`` over a WebSocket, one run at a time;
- the same through ``POST /api/v1/code/execute``;
- a program running 5 s and printing every second (what a running program costs).

Each figure has the idle rate over its duration taken off. Writes
``bench/results/db_statements.json`` and ``db_statements.md``. ``EXECSTREAM_DATABASE_URL``
is passed on, so the same count can be made against PostgreSQL.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from bench import sockets
from bench.measure import say
from bench.servers import Server

RESULTS = Path(__file__).parent / "results"
HELLO = 'print("hello")'
SLOW = "import time\nfor n in range(5):\n    print(n, flush=True)\n    time.sleep(1)"
TABLE = re.compile(r"^\s*(?:INSERT\s+INTO|UPDATE|DELETE\s+FROM|SELECT\b.*?\bFROM)\s+(\w+)", re.S)


def count_statements(path: Path) -> None:
    """In the server's process: one line per statement into ``path``."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    out = open(path, "a", buffering=1)  # noqa: SIM115 (open for the process's life)

    @event.listens_for(Engine, "before_cursor_execute")
    def statement(conn: Any, cursor: Any, text: str, params: Any, context: Any, many: Any) -> None:
        verb = text.split(None, 1)[0].upper() if text.strip() else "?"
        match = TABLE.match(text)
        out.write(f"{time.time():.6f} {verb} {match.group(1) if match else '-'}\n")

    @event.listens_for(Engine, "commit")
    def commit(conn: Any) -> None:
        out.write(f"{time.time():.6f} COMMIT -\n")


class CountingServer(Server):
    """``execstream serve`` with the statement listener in its process."""

    def __init__(self, data_dir: Path) -> None:
        super().__init__("counted", data_dir, 2)
        self.statements = data_dir / "statements.log"
        self.env["EXECSTREAM_BENCH_STATEMENTS"] = str(self.statements)

    def launch(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "bench.db_statements", "--serve"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.pids.append(self.process.pid)

    def between(self, began: float, ended: float) -> Counter[str]:
        counted: Counter[str] = Counter()
        for line in self.statements.read_text().splitlines():
            when, verb, table = line.split()
            if began <= float(when) < ended:
                counted[f"{verb} {table}" if table != "-" else verb] += 1
        return counted


def per(counted: Counter[str], idle: Counter[str], idle_seconds: float, seconds: float, n: int):
    """Statements per unit (run), with the idle background over ``seconds`` taken off."""
    figures = {}
    for key in sorted(set(counted) | set(idle)):
        value = (counted[key] - idle[key] * seconds / idle_seconds) / n
        if abs(value) >= 0.05:
            figures[key] = round(value, 2)
    return figures


async def phases(server: CountingServer, token: str, runs: int, idle_seconds: float):
    results: dict[str, Any] = {}
    async with await sockets.open_socket(server.ws_url, token) as ws:
        await sockets.run_once(ws, "python", HELLO)  # the first run loads code: not counted
        await asyncio.sleep(2)
        say(f"idle for {idle_seconds:.0f} s")
        began = time.time()
        await asyncio.sleep(idle_seconds)
        idle = server.between(began, time.time())
        results["idle_per_second"] = {k: round(v / idle_seconds, 3) for k, v in idle.items()}

        say(f"{runs} WebSocket runs")
        began = time.time()
        for _ in range(runs):
            timing = await sockets.run_once(ws, "python", HELLO)
            assert timing.status == "success", timing
            await asyncio.sleep(0.3)
        await asyncio.sleep(1.5)  # the last run's row written
        ended = time.time()
        counted = server.between(began, ended)
        results["websocket_run"] = per(counted, idle, idle_seconds, ended - began, runs)

        say(f"{runs} REST runs")
        headers = {"Authorization": f"Bearer {token}"}
        body = {"language": "python", "code": HELLO}
        async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=60) as client:
            began = time.time()
            for _ in range(runs):
                response = await client.post("/api/v1/code/execute", json=body)
                response.raise_for_status()
                await asyncio.sleep(0.3)
            await asyncio.sleep(1.5)
            ended = time.time()
        counted = server.between(began, ended)
        results["rest_run"] = per(counted, idle, idle_seconds, ended - began, runs)

        slow_runs = max(runs // 5, 2)
        say(f"{slow_runs} runs of 5 s printing every second")
        began = time.time()
        for _ in range(slow_runs):
            await sockets.run_once(ws, "python", SLOW)
        await asyncio.sleep(1.5)
        ended = time.time()
        counted = server.between(began, ended)
        results["five_second_run"] = per(counted, idle, idle_seconds, ended - began, slow_runs)
    return results


def total(figures: dict[str, float]) -> float:
    return round(sum(v for k, v in figures.items() if not k.startswith("COMMIT")), 1)


def markdown(results: dict[str, Any]) -> str:
    lines = [
        "## Database statements per run (`python -m bench.db_statements`)",
        "",
        f"Database: {results['database']}; {results['runs']} runs per kind, one at a time; "
        "the idle background (per second) taken off each figure. COMMIT counts transactions.",
        "",
        "| what | statements (without COMMIT) | by kind |",
        "|---|---|---|",
    ]
    for key, label in (
        ("websocket_run", 'WebSocket run of print("hello")'),
        ("rest_run", 'REST execute of print("hello")'),
        ("five_second_run", "a run of 5 s printing every second"),
    ):
        figures = results[key]
        kinds = ", ".join(f"{k} {v}" for k, v in figures.items())
        lines.append(f"| {label} | {total(figures)} | {kinds} |")
    idle = results["idle_per_second"]
    kinds = ", ".join(f"{k} {v}" for k, v in idle.items())
    lines.append(f"| idle server, per second | {total(idle)} | {kinds} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.db_statements", description=__doc__)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--idle-seconds", type=float, default=15.0)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        count_statements(Path(os.environ["EXECSTREAM_BENCH_STATEMENTS"]))
        from server.cli import main as cli

        return cli(["serve"]) or 0
    folder = Path(tempfile.mkdtemp(prefix="execstream-bench-db-"))
    server = CountingServer(folder / "server")
    try:
        server.start()
        token = server.token()
        results = asyncio.run(phases(server, token, max(args.runs, 1), args.idle_seconds))
    finally:
        server.stop()
    url = os.environ.get("EXECSTREAM_DATABASE_URL", "sqlite+aiosqlite (a file)")
    results = {"database": url.split("://", 1)[0], "runs": args.runs, **results}
    text = markdown(results)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "db_statements.json").write_text(json.dumps(results, indent=2) + "\n")
    (RESULTS / "db_statements.md").write_text(text)
    shutil.rmtree(folder, ignore_errors=True)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
