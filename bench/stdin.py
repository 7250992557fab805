"""``python -m bench.stdin``: how fast input flows into a program (flow control, issue 9).

One warm server; a file piped through ``execstream run`` (a subprocess, as a user would)
and the same bytes through the Python client's ``run(stdin=...)``, each into a program that
counts its input. Prints the table and writes ``bench/results/stdin.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.measure import say
from bench.servers import Server
from client import ExecClient

RESULTS = Path(__file__).parent / "results"
MIB = 1024 * 1024
COUNT = "import sys\nprint(len(sys.stdin.buffer.read()))\n"


def through_terminal(server: Server, token: str, program: Path, data: Path) -> float:
    began = time.monotonic()
    with open(data, "rb") as stdin:
        done = subprocess.run(
            [sys.executable, "-m", "server.cli", "run", str(program), "--server", server.url],
            env={**os.environ, "EXECSTREAM_TOKEN": token},
            stdin=stdin,
            capture_output=True,
            timeout=300,
        )
    seconds = time.monotonic() - began
    if done.returncode != 0 or int(done.stdout) != data.stat().st_size:
        raise RuntimeError(f"execstream run failed: {done.stdout!r} {done.stderr!r}")
    return seconds


async def through_client(server: Server, token: str, text: str) -> float:
    began = time.monotonic()
    async with ExecClient(server.url, token) as client:
        result = await client.run("python", COUNT, stdin=text)
    seconds = time.monotonic() - began
    if result.stdout != f"{len(text)}\n":
        raise RuntimeError(f"the client's run failed: {result.stdout!r} {result.stderr!r}")
    return seconds


def summary(name: str, mib: int, seconds: list[float]) -> str:
    rates = sorted(mib / s for s in seconds)
    return (
        f"| {name} | {mib} MiB | {statistics.median(seconds):.2f} s "
        f"| {statistics.median(rates):.1f} MiB/s | {rates[0]:.1f} to {rates[-1]:.1f} MiB/s |"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.stdin", description=__doc__)
    parser.add_argument("--mib", type=int, default=20, help="input size in MiB")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="execstream-bench-stdin-"))
    server = Server("warm", folder / "server", 2)
    try:
        server.start()
        token = server.token()
        program, data = folder / "count.py", folder / "input.txt"
        program.write_text(COUNT)
        line = b"0123456789abcdef" * 4 + b"\n"
        data.write_bytes((line * (args.mib * MIB // len(line) + 1))[: args.mib * MIB])
        text = data.read_text()
        terminal, client = [], []
        for n in range(args.repeat):
            say(f"run {n + 1}/{args.repeat}")
            terminal.append(through_terminal(server, token, program, data))
            client.append(asyncio.run(through_client(server, token, text)))
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    table = "\n".join(
        [
            f"Input piped into a counting Python program, {args.repeat} runs each, warm pool, "
            f"stdin window 256 KiB; load average at the end {load}.",
            "",
            "| path | input | time p50 | throughput p50 | range |",
            "|---|---|---|---|---|",
            summary("`execstream run count.py < input.txt`", args.mib, terminal),
            summary("Python client `run(stdin=...)`", args.mib, client),
        ]
    )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "stdin.md").write_text(table + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
