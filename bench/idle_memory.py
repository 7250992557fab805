"""``python -m bench.idle_memory``: what one idle warm container holds, per runtime and launcher.

Starts a few containers exactly as the pool does (the Docker backend's own ``prepare``),
lets their launchers settle, and reads each one's cgroup memory usage from the engine's
stats API. ``sandbox/docker.py`` ``IDLE_BYTES`` holds these figures, rounded up: the pool's
memory budget (``EXECSTREAM_POOL_MEMORY_BYTES``) counts each idle container at them.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from sandbox import LANGUAGES
from sandbox.container import IDLE_BYTES, Runtime, new_owner_id
from sandbox.docker import DockerBackend
from server.config import Settings

MiB = 2**20
SETTLE_SECONDS = 3.0


def launchers() -> list[str]:
    """One language per launcher: the first registered with it, which names its pool lane."""
    first: dict[tuple[str, ...], str] = {}
    for lang in LANGUAGES.values():
        first.setdefault(lang.launcher, lang.id)
    return list(first.values())


async def usage(backend: DockerBackend, container_id: str) -> int:
    stats = await backend.docker._query_json(
        f"containers/{container_id}/stats", params={"stream": "false", "one-shot": "true"}
    )
    return int(stats.get("memory_stats", {}).get("usage", 0))


async def measure(runtime: Runtime, count: int) -> dict[str, list[int]]:
    settings = Settings()
    backend = DockerBackend(
        settings.limits, settings.image, owner=new_owner_id("idle-memory"), runtime=runtime
    )
    await backend.open()
    found: dict[str, list[int]] = {}
    try:
        for language_id in launchers():
            processes = [await backend.prepare(LANGUAGES[language_id]) for _ in range(count)]
            try:
                await asyncio.sleep(SETTLE_SECONDS)
                found[language_id] = [await usage(backend, p.id) for p in processes]
            finally:
                await asyncio.gather(*(p.remove() for p in processes))
    finally:
        await backend.close()
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.idle_memory", description=__doc__)
    parser.add_argument("--count", type=int, default=3, help="containers per launcher")
    parser.add_argument(
        "--runtimes", nargs="+", choices=["runc", "runsc"], default=["runc", "runsc"]
    )
    args = parser.parse_args(argv)
    rows: list[Any] = []
    for runtime in args.runtimes:
        for language_id, samples in asyncio.run(measure(runtime, args.count)).items():
            mean = sum(samples) / len(samples) / MiB
            used = IDLE_BYTES.get((runtime, language_id), 0) / MiB
            rows.append(f"| {runtime} | {language_id} | {mean:.1f} MiB | {used:.0f} MiB |")
    print("| runtime | launcher | measured idle (mean) | IDLE_BYTES |\n|---|---|---|---|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
