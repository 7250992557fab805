"""``python -m bench.plots``: time to a plot's first image, warm, with and without preloading.

For each runtime and each value of the Python launcher's preload (EXECSTREAM_PYTHON_PRELOAD),
a Docker backend keeps one warm Python container; once it has settled we read its idle
memory (the engine's cgroup figure, as bench.idle_memory does), then run a small line plot
and time from asking for the run to its first image. Repeated ``--runs`` times: the p50 is
what a student waits for a plot; the idle memory is what preloading costs the warm pool.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from bench.idle_memory import usage
from sandbox import Image, RunRequest
from sandbox.container import LABEL, OWNER_LABEL, Runtime, new_owner_id
from sandbox.docker import DockerBackend
from server.config import Settings

MiB = 2**20
RESULTS = Path(__file__).parent / "results"
PLOT = "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3], [1, 4, 9])\nplt.show()\n"
SETTLE_SECONDS = 5.0


async def idle_memory(backend: DockerBackend) -> int:
    containers = await backend.docker.containers.list(
        filters={"label": [f"{LABEL}=true", f"{OWNER_LABEL}={backend.owner}"]}
    )
    return max([await usage(backend, c.id) for c in containers] or [0])


async def first_image(backend: DockerBackend) -> tuple[float, bool]:
    asked = time.monotonic()
    run = await backend.start(RunRequest("python", PLOT, stdin=b""))
    took = -1.0
    async for chunk in run:
        if isinstance(chunk, Image) and took < 0:
            took = time.monotonic() - asked
    await run.close()
    return took, run.warm


async def measure(runtime: Runtime, preload: bool, runs: int) -> dict[str, Any]:
    settings = Settings()
    backend = DockerBackend(
        settings.limits,
        settings.image,
        pool_size=1,
        owner=new_owner_id("bench-plots"),
        runtime=runtime,
        preload=preload,
    )
    await backend.open()
    times, memory, warm = [], [], 0
    try:
        for _ in range(runs):
            await asyncio.sleep(SETTLE_SECONDS)  # the pool refills and the launcher settles
            memory.append(await idle_memory(backend))
            took, was_warm = await first_image(backend)
            times.append(took)
            warm += was_warm
    finally:
        await backend.close()
    return {
        "runtime": runtime,
        "preload": preload,
        "runs": runs,
        "warm": warm,
        "first_image_p50": round(statistics.median(times), 3),
        "first_image_all": [round(t, 3) for t in times],
        "idle_memory_mib": round(statistics.median(memory) / MiB, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.plots", description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--runtimes", nargs="+", choices=["runc", "runsc"], default=["runc", "runsc"]
    )
    args = parser.parse_args(argv)
    rows = []
    for runtime in args.runtimes:
        for preload in (False, True):
            row = asyncio.run(measure(runtime, preload, max(args.runs, 1)))
            print(json.dumps(row), file=sys.stderr)
            rows.append(row)
    lines = [
        "# Plots: first image of a small line plot, warm (bench/plots.py)",
        "",
        "| runtime | preload | first image p50 (s) | all (s) | idle warm Python container (MiB) |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['runtime']} | {'yes' if r['preload'] else 'no'} | {r['first_image_p50']} | "
            f"{', '.join(map(str, r['first_image_all']))} | {r['idle_memory_mib']} |"
        )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "plots.json").write_text(json.dumps(rows, indent=2) + "\n")
    (RESULTS / "plots.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
