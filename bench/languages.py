"""``python -m bench.languages``: warm first output of every language, beside the raw engine.

For each language of the registry, its hello-world example (what the editor offers):

- ``warm``: a real server (warm pool on) over a real WebSocket, from the ``run`` frame to the
  first output frame, with the pool full before each run (its launcher already waiting);
- ``raw``: the raw engine doing what ``docker run IMAGE sh -c '...'`` would, through
  aiodocker, in the same image with the server's container config: create, attach, start a
  container whose command writes the program to its file and starts the interpreter on it
  (after its compiler, if any), to its first byte of stdout. A compiled language builds and
  runs in that one container, with the compile limits and ``/tmp`` mounted ``exec`` (the
  server builds in a compile container and runs the result from memory in another).

Reported per language: medians (p50) and p95 of both, and their ratio, against the issue's
targets for warm first output p50: 15 ms for an interpreted language, C 100 ms, C++ 350 ms,
Go and Rust 400 ms, Java 700 ms. Writes
``bench/results/languages.json`` and ``languages.md`` and prints the table.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import math
import shlex
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench import sockets
from bench.compiled import TARGETS_MS
from bench.engine import Engine
from bench.machine import describe, load_average
from bench.measure import Target, pool_full, say
from bench.servers import Server, raise_fd_limit
from bench.stats import summary
from sandbox import LANGUAGES, Language
from sandbox.backend import filler
from sandbox.container import FOLDER, LAUNCHERS, Runtime
from sandbox.languages import OUT
from server.config import Settings

RESULTS = Path(__file__).parent / "results"
TARGET_MS = 15.0
"""Warm first output p50 of an interpreted language's hello world."""
RUNS = 20
POOL_SIZE = 2


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.languages", description=__doc__)
    parser.add_argument("--runs", type=int, default=RUNS, help="runs per language and side")
    parser.add_argument("--runtime", choices=["runc", "runsc"], default="runc")
    parser.add_argument(
        "--languages", nargs="+", choices=sorted(LANGUAGES), default=list(LANGUAGES)
    )
    return parser.parse_args(argv)


def from_scratch(language: Language, code: str) -> Language:
    """The language as ``docker run IMAGE sh -c 'write the file; compile; run'`` starts it:
    the container's command writes the program and starts its interpreter (after its
    compiler, if any) at once, nothing started ahead. A compiled language builds into
    ``OUT`` and runs from there, in the one container."""
    fill = filler(language, code, FOLDER, LAUNCHERS, ())
    build = OUT.format(dir=FOLDER)
    if language.compile_stage is not None:
        steps = [["mkdir", "-p", build], fill(language.compile_stage)]
        steps.append(filler(language, code, build, LAUNCHERS, ())(language.run))
    else:
        steps = [fill(language.compile), fill(language.run)]
    commands = [shlex.join(argv) for argv in steps if argv]
    commands[-1] = f"exec {commands[-1]}"
    path = shlex.quote(language.file(FOLDER, code))
    script = " && ".join([f"printf %s {shlex.quote(code)} > {path}", *commands])
    # container_config fills {dir} and {launchers} in the command: keep the program's braces.
    escaped = script.replace("{", "{{").replace("}", "}}")
    return dataclasses.replace(language, launcher=("sh", "-c", escaped))


async def warm_series(engine: Engine, warm: Target, language: Language, runs: int) -> Any:
    code = language.examples.hello
    # One run first, not counted: the server's first run of a language loads code.
    await sockets.series(warm.url, warm.token, language.id, code, 1, 0, "success")
    timings: list[float] = []
    failures: list[str] = []
    for _ in range(runs):
        await pool_full(engine, warm, POOL_SIZE)
        one = await sockets.series(warm.url, warm.token, language.id, code, 1, 0, "success")
        timings += [t.first_output for t in one.timings if t.first_output is not None]
        failures += one.failures
    return {"first_output": summary(timings), "failures": failures}


async def raw_series(engine: Engine, language: Language, runs: int) -> Any:
    scratch = from_scratch(language, language.examples.hello)
    timings: list[float] = []
    failures: list[str] = []
    for _ in range(runs):
        try:
            phases = await engine.first_output(scratch, language.examples.hello)
        except Exception as exc:
            failures.append(f"{type(exc).__name__}: {exc}"[:200])
            continue
        timings.append(phases.total)
    return {"first_output": summary(timings), "failures": failures}


async def measure_with(
    engine: Engine, builder: Engine, warm: Target, languages: list[str], runs: int
) -> dict[str, Any]:
    """``builder`` is the raw engine of the compiled languages: one container with the
    compile limits and an ``exec`` folder, where the server uses two."""
    figures: dict[str, Any] = {}
    for language_id in languages:
        language = LANGUAGES[language_id]
        say(f"{language_id}: warm through the server, {runs} runs")
        figures[language_id] = {"warm": await warm_series(engine, warm, language, runs)}
        say(f"{language_id}: the raw engine from scratch, {runs} runs")
        raw = builder if language.compile_stage else engine
        figures[language_id]["raw"] = await raw_series(raw, language, runs)
        figures[language_id]["target_ms"] = target_ms(language)
    return figures


def target_ms(language: Language) -> float | None:
    """The issue's target for ``language``'s warm first output p50; TypeScript has none."""
    if language.compile_stage is not None:
        return TARGETS_MS.get(language.id)
    return None if language.compiled else TARGET_MS


def measure(runtime: Runtime, languages: list[str], runs: int) -> dict[str, Any]:
    """Start a warm server of our own, measure, stop it and sweep what it left."""
    settings = Settings()
    folder = Path(tempfile.mkdtemp(prefix="execstream-bench-languages-"))
    server = Server("warm", folder / "warm", POOL_SIZE, runtime)

    async def run() -> dict[str, Any]:
        engine = Engine(settings.image, settings.limits, runtime)
        builder = Engine(settings.image, settings.compile_limits, runtime, exec_tmp=True)
        try:
            results: dict[str, Any] = {
                "machine": describe(await engine.version()),
                "settings": {"runs": runs, "pool_size": POOL_SIZE, "runtime": runtime},
            }
            target = Target(server, server.token())
            results["languages"] = await measure_with(engine, builder, target, languages, runs)
            return results
        finally:
            await engine.close()
            await builder.close()

    try:
        say(f"starting a server under {runtime} with a warm pool of {POOL_SIZE} per launcher")
        server.start()
        results = asyncio.run(run())
    finally:
        server.stop()
        asyncio.run(sweep(server.instances()))
        shutil.rmtree(folder, ignore_errors=True)
    results["machine"]["load_average_at_end"] = load_average()
    return results


async def sweep(owners: list[str]) -> None:
    settings = Settings()
    engine = Engine(settings.image, settings.limits)
    try:
        removed = await engine.sweep(owners)
    finally:
        await engine.close()
    if removed:
        say(f"removed {removed} container(s) left behind")


def markdown(results: dict[str, Any]) -> str:
    machine, settings = results["machine"], results["settings"]
    lines = [
        f"## Languages: warm first output against the raw engine, {machine['date']}",
        "",
        f"{machine['nproc']} x {machine['cpu_model']}, Docker "
        f"{machine['docker_server_version']}, {settings['runtime']}, commit "
        f"{machine['git_commit']}, load average at start "
        f"{' '.join(map(str, machine['load_average_at_start']))}, at end "
        f"{' '.join(map(str, machine['load_average_at_end']))}. Each language's hello "
        f"example, {settings['runs']} runs per side. Warm: a server (pool "
        f"{settings['pool_size']} per launcher, full before each run) over a WebSocket, run "
        "frame to first output frame. Raw: aiodocker create, attach, start, program, "
        "interpreter (and compiler) from scratch, to the first stdout byte; a compiled "
        "language builds and runs in one container with the compile limits and an exec /tmp.",
        "",
        "| language | warm p50 | warm p95 | raw p50 | raw p95 | raw/warm (p50) "
        "| target (warm p50), met |",
        "|---|---|---|---|---|---|---|",
    ]
    for language_id, figures in results["languages"].items():
        warm, raw = figures["warm"]["first_output"], figures["raw"]["first_output"]
        warm_p50, raw_p50 = warm.get("p50_ms", float("nan")), raw.get("p50_ms", float("nan"))
        target = figures["target_ms"]
        met = (
            "—"
            if target is None
            else f"≤ {target:g} ms: " + ("yes" if warm_p50 <= target else "**no**")
        )
        lines.append(
            f"| {LANGUAGES[language_id].name if language_id in LANGUAGES else language_id} "
            f"| {warm_p50:.1f} ms | {warm.get('p95_ms', float('nan')):.1f} ms "
            f"| {raw_p50:.1f} ms | {raw.get('p95_ms', float('nan')):.1f} ms "
            f"| {ratio(raw_p50, warm_p50)} | {met} |"
        )
    failed = [
        f"- {language_id} {side}: {len(figures[side]['failures'])} failed runs: "
        f"{figures[side]['failures'][:2]}"
        for language_id, figures in results["languages"].items()
        for side in ("warm", "raw")
        if figures[side]["failures"]
    ]
    if failed:
        lines += ["", "Failures:", *failed]
    return "\n".join(lines) + "\n"


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b and not math.isnan(a / b) else "—"


def write(results: dict[str, Any], folder: Path = RESULTS) -> str:
    text = markdown(results)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "languages.json").write_text(json.dumps(results, indent=2) + "\n")
    (folder / "languages.md").write_text(text)
    return text


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    raise_fd_limit()
    try:
        results = measure(args.runtime, args.languages, max(args.runs, 1))
    except KeyboardInterrupt:
        say("interrupted")
        return 130
    print(write(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
