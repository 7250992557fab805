"""What admission costs: a run slot taken and freed, in this process, with no sandbox.

Compares the replica's own queue alone (SQLite: one server, no shared slots) with the queue
plus a shared slot on PostgreSQL (replicas), one admission at a time and 16 at once. Starts a
throw-away PostgreSQL of its own (tests/postgres.py). Alone:
``python -m bench.admission [--runs 500]``; prints its figures as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from typing import Any

from server.queue import RunQueue
from server.slots import SharedSlots
from storage import Database
from tests.postgres import PostgresServer


def summary(seconds: list[float]) -> dict[str, float]:
    ms = sorted(s * 1000 for s in seconds)
    return {
        "median_ms": round(statistics.median(ms), 3),
        "p95_ms": round(ms[int(len(ms) * 0.95) - 1], 3),
    }


async def admit_and_free(queue: RunQueue, slots: SharedSlots | None, user: int) -> float:
    began = time.perf_counter()
    await queue.acquire(user)
    slot = await slots.take(user) if slots is not None else None
    elapsed = time.perf_counter() - began
    queue.release(user)
    if slots is not None and slot is not None:
        await slots.free(slot)
    return elapsed


async def series(slots: SharedSlots | None, runs: int, parallel: int) -> dict[str, float]:
    queue = RunQueue(64, 8, 256, 32)
    times: list[float] = []
    for _ in range(runs // parallel):
        times += await asyncio.gather(
            *(admit_and_free(queue, slots, user) for user in range(parallel))
        )
    return summary(times)


async def measure(runs: int) -> dict[str, Any]:
    postgres = PostgresServer().start()
    db = Database(postgres.new_database())
    try:
        await db.open()
        await db.register_instance("bench", "host", 0, ttl=3600)
        shared = SharedSlots(db, "bench", max_runs=64, max_per_user=8, poll_seconds=0.25)
        return {
            "runs": runs,
            "queue_only": {n: await series(None, runs, n) for n in (1, 16)},
            "queue_and_postgresql_slot": {n: await series(shared, runs, n) for n in (1, 16)},
        }
    finally:
        await db.close()
        postgres.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=480)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(measure(args.runs)), indent=2))


if __name__ == "__main__":
    main()
