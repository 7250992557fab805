"""``python -m bench.exits``: what containers ending cost the others in a class burst.

On the raw engine (no server), ``--size`` containers are started ahead, as a warm pool has
them, then all given their program at once; measured is each one's header → first stdout
byte. Two programs, side by side: ``print("hello")``, which ends at once (its container
exits while the others start), and the same followed by a three-second sleep (no container
ends within the burst). The difference is what the engine and the kernel spend on the
exits of the first programs while the last ones start. Prints medians, p95 and max.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from bench.engine import Engine
from bench.stats import summary
from server.config import Settings

PROGRAMS = {
    "ends at once": 'print("hello")',
    "sleeps 3 s after": 'print("hello")\nimport time\ntime.sleep(3)',
}


async def measure(size: int, rounds: int) -> dict[str, dict[str, Any]]:
    settings = Settings()
    engine = Engine(settings.image, settings.limits)
    figures: dict[str, list[float]] = {name: [] for name in PROGRAMS}
    try:
        for _ in range(rounds):
            for name, code in PROGRAMS.items():
                figures[name] += await engine.together_first_byte("python", code, size)
                await asyncio.sleep(5)  # the engine settles: removals done
    finally:
        await engine.close()
    return {name: summary(times) for name, times in figures.items()}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.exits", description=__doc__)
    parser.add_argument("--size", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    results = asyncio.run(measure(args.size, args.rounds))
    print(f"{args.size} warm containers on the raw engine, {args.rounds} rounds, first byte:")
    print("| program | p50 | p95 | max |\n|---|---|---|---|")
    for name, figure in results.items():
        print(
            f"| {name} | {figure['p50_ms']:.0f} ms | {figure['p95_ms']:.0f} ms "
            f"| {figure['max_ms']:.0f} ms |"
        )


if __name__ == "__main__":
    main()
