"""Warm first output of the compiled languages: hello world, compile stage then run.

Measured in this process on ``DockerBackend`` (no HTTP): from ``backend.start`` to the first
output of the run stage, with a warm compile container and a warm run container waiting
(the pool refills between runs). ``python -m bench.compiled [--cpus 2] [--runs 10]``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import time

from bench.stats import percentile
from sandbox import LANGUAGES, Output, RunRequest, Status
from sandbox.docker import DockerBackend
from sandbox.languages import compiler
from server.config import Settings

COMPILED = ("c", "cpp", "java", "go", "rust")
TARGETS_MS = {"c": 100, "cpp": 350, "java": 700, "go": 400, "rust": 400}


async def first_output(backend: DockerBackend, language: str) -> tuple[float, float]:
    """Seconds to the program's first output, and the compile time it reported."""
    began = time.perf_counter()
    run = await backend.start(RunRequest(language, LANGUAGES[language].examples.hello, b""))
    first = None
    async for out in run:
        if first is None and isinstance(out, Output) and out.stream == "stdout":
            first = time.perf_counter() - began
    result = await run.result()
    await run.close()
    if result.status is not Status.SUCCESS or first is None:
        raise RuntimeError(f"{language}: {result}")
    return first, result.compile_time or 0.0


async def ready(backend: DockerBackend, language: str) -> None:
    """Wait until a warm compile and a warm run container are there."""
    lang = LANGUAGES[language]
    for _ in range(600):
        if backend.warm.idle(lang) and backend.warm.idle(compiler(lang)):
            await asyncio.sleep(0.5)  # for the launchers to be waiting
            return
        await asyncio.sleep(0.1)


async def main(cpus: float | None, runs: int, languages: list[str]) -> None:
    settings = Settings()
    limits = settings.compile_limits
    if cpus is not None:
        limits = dataclasses.replace(limits, cpus=cpus)
    backend = DockerBackend(
        settings.limits, settings.image, pool_size=1, runtime="runc", compile_limits=limits
    )
    await backend.open()
    report = {}
    try:
        for language in languages:
            firsts, compiles = [], []
            for _ in range(runs):
                await ready(backend, language)
                first, compile_time = await first_output(backend, language)
                firsts.append(first)
                compiles.append(compile_time)
            p50 = percentile(firsts, 50) * 1000
            report[language] = {
                "first_output_p50_ms": round(p50),
                "compile_p50_ms": round(percentile(compiles, 50) * 1000),
                "target_ms": TARGETS_MS[language],
                "met": p50 <= TARGETS_MS[language],
            }
            print(language, report[language], flush=True)
    finally:
        await backend.close()
    print(json.dumps({"compile_cpus": backend.compile_limits.cpus, "runs": runs, **report}))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cpus", type=float, default=None)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("languages", nargs="*", default=list(COMPILED))
    args = parser.parse_args()
    asyncio.run(main(args.cpus, args.runs, args.languages))
