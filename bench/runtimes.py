"""``python -m bench.runtimes``: runc against gVisor (runsc), side by side.

For each runtime, two real servers (warm pool on, pool off) and the first-output series of
``python -m bench`` over WebSockets: warm first output, back to back as there (the pool
refilling while the next run goes) and with the pool full before each run, and cold start
(first output with the pool off). Writes ``bench/results/runtimes.json`` and
``runtimes.md`` and prints the table.
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
from bench.__main__ import RESULTS, sweep
from bench.engine import Engine
from bench.machine import describe, load_average
from bench.measure import HELLO, Target, pool_full, say
from bench.report import NAMES, Row, divide, times
from bench.servers import Server, raise_fd_limit
from bench.stats import summary
from sandbox.container import Runtime
from server.config import Settings

RUNTIMES: tuple[Runtime, Runtime] = ("runc", "runsc")
TARGET = 1.5
"""Warm first output p50 under runsc may be at most this many times runc's."""
LABELS = {
    "warm": "warm first output, back to back",
    "refilled": "warm first output, pool full before each run",
    "cold": "cold start (pool off) first output",
}


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.runtimes", description=__doc__)
    parser.add_argument("--runs", type=int, default=30, help="runs per series")
    parser.add_argument("--pause", type=float, default=0.3, help="seconds between runs")
    parser.add_argument("--pool-size", type=int, default=2)
    return parser.parse_args(argv)


async def first_output(
    args: argparse.Namespace, runtime: Runtime, warm: Target, cold: Target
) -> dict[str, Any]:
    """Warm and cold first output per language, as ``python -m bench`` measures them."""
    settings = Settings()
    engine = Engine(settings.image, settings.limits, runtime)
    figures: dict[str, Any] = {}
    try:
        for language, code in HELLO.items():
            figures[language] = {}
            for mode, target in (("warm", warm), ("cold", cold)):
                say(f"{runtime}, {language}, {mode}: {args.runs} runs")
                # One run first, not counted: the server's first run of a language loads code.
                await sockets.series(target.url, target.token, language, code, 1, 0, "success")
                if target is warm:
                    await pool_full(engine, warm, args.pool_size)
                series = await sockets.series(
                    target.url, target.token, language, code, args.runs, args.pause, "success"
                )
                figures[language][mode] = figure(series)
            say(f"{runtime}, {language}, warm, pool full before each run: {args.runs} runs")
            refilled = sockets.Series()
            for _ in range(args.runs):
                await pool_full(engine, warm, args.pool_size)
                one = await sockets.series(warm.url, warm.token, language, code, 1, 0, "success")
                refilled.timings += one.timings
                refilled.failures += one.failures
            figures[language]["refilled"] = figure(refilled)
    finally:
        await engine.close()
    return figures


def figure(series: sockets.Series) -> dict[str, Any]:
    return {
        "first_output": summary(
            [t.first_output for t in series.timings if t.first_output is not None]
        ),
        "failures": series.failures,
    }


def measure(args: argparse.Namespace, runtime: Runtime, folder: Path) -> dict[str, Any]:
    servers = [
        Server("warm", folder / f"{runtime}-warm", args.pool_size, runtime),
        Server("cold", folder / f"{runtime}-cold", 0, runtime),
    ]
    owners: list[str] = []
    try:
        say(f"starting two servers under {runtime}: warm (pool {args.pool_size}), cold")
        for server in servers:
            server.launch()
            owners.append(server.owner)
        for server in servers:
            server.ready()
        warm, cold = (Target(server, server.token()) for server in servers)
        return asyncio.run(first_output(args, runtime, warm, cold))
    finally:
        for server in servers:
            server.stop()
        removed = asyncio.run(sweep(owners))
        if removed:
            say(f"removed {removed} container(s) left behind")


def rows(results: dict[str, Any]) -> list[Row]:
    runc, runsc = results["runtimes"]["runc"], results["runtimes"]["runsc"]
    out = []
    for language in HELLO:
        name = NAMES.get(language, language)
        for mode, stat, target in (
            ("warm", "p50_ms", f"≤ {TARGET}x"),
            ("warm", "p95_ms", "—"),
            ("refilled", "p50_ms", f"≤ {TARGET}x"),
            ("cold", "p50_ms", "—"),
        ):
            ours = runsc[language][mode]["first_output"][stat]
            base = runc[language][mode]["first_output"][stat]
            ratio = divide(ours, base)
            out.append(
                Row(
                    f"{name} {LABELS[mode]} {stat.removesuffix('_ms')}: runsc vs runc",
                    f"{ours:.1f} ms",
                    f"runc {base:.1f} ms",
                    f"{times(ratio)} (runsc/runc)",
                    target,
                    ratio <= TARGET if target != "—" else None,
                )
            )
    return out


def markdown(results: dict[str, Any], table: list[Row]) -> str:
    machine, settings = results["machine"], results["settings"]
    lines = [
        f"# execstream bench: runc against gVisor (runsc), {machine['date']}",
        "",
        f"{machine['nproc']} x {machine['cpu_model']}, {machine['memory_bytes'] / 2**30:.1f} GiB, "
        f"kernel {machine['kernel']}, Docker {machine['docker_server_version']}, "
        f"{results['runsc_version']}, commit {machine['git_commit']}, load average at start "
        f"{' '.join(map(str, machine['load_average_at_start']))}, at end "
        f"{' '.join(map(str, machine['load_average_at_end']))}.",
        "",
        f"First output: {settings['runs']} sequential runs per language, mode and runtime; "
        f"back to back = on one socket, {settings['pause_s']} s pause between runs (no "
        "waiting for the pool to refill, as `python -m bench`); pool full = each run waits "
        f"until the pool holds its {settings['pool_size']} containers per launcher again; "
        f"warm = EXECSTREAM_POOL_SIZE={settings['pool_size']}, cold = EXECSTREAM_POOL_SIZE=0; "
        "EXECSTREAM_RUNTIME=runc or runsc.",
        "",
        "| what | runsc | runc | ratio | target | met |",
        "|---|---|---|---|---|---|",
    ]
    for row in table:
        met = "—" if row.met is None else ("yes" if row.met else "**no**")
        lines.append(
            f"| {row.what} | {row.ours} | {row.baseline} | {row.ratio} | {row.target} | {met} |"
        )
    failed = [
        f"- {runtime} {language} {mode}: {len(figure['failures'])} failed runs"
        for runtime, languages in results["runtimes"].items()
        for language, modes in languages.items()
        for mode, figure in modes.items()
        if figure["failures"]
    ]
    if failed:
        lines += ["", "Failures:", *failed]
    return "\n".join(lines) + "\n"


async def engine_facts() -> tuple[str, set[str]]:
    settings = Settings()
    engine = Engine(settings.image, settings.limits)
    try:
        info = await engine.docker.system.info()
        return str(info.get("ServerVersion", "unknown")), set(info.get("Runtimes") or {})
    finally:
        await engine.close()


def runsc_version() -> str:
    path = shutil.which("runsc")
    if path is None:
        return "runsc version unknown"
    out = subprocess.run([path, "--version"], capture_output=True, text=True).stdout
    return out.splitlines()[0] if out else "runsc version unknown"


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    version, available = asyncio.run(engine_facts())
    if "runsc" not in available:
        say("the Docker engine has no runsc runtime: nothing to compare (README.md, gVisor)")
        return 1
    raise_fd_limit()
    results: dict[str, Any] = {
        "machine": describe(version),
        "runsc_version": runsc_version(),
        "settings": {"runs": args.runs, "pause_s": args.pause, "pool_size": args.pool_size},
        "runtimes": {},
    }
    folder = Path(tempfile.mkdtemp(prefix="execstream-bench-runtimes-"))
    try:
        for runtime in RUNTIMES:
            results["runtimes"][runtime] = measure(args, runtime, folder)
    except KeyboardInterrupt:
        say(f"interrupted; server logs kept in {folder}")
        return 130
    shutil.rmtree(folder, ignore_errors=True)
    results["machine"]["load_average_at_end"] = load_average()
    table = rows(results)
    results["rows"] = [row.as_dict() for row in table]
    text = markdown(results, table)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "runtimes.json").write_text(json.dumps(results, indent=2) + "\n")
    (RESULTS / "runtimes.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
