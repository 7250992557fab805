"""Live output under a sign-in flood: the largest gap between the output frames of a program
printing every 50 ms while 40 wrong sign-ins arrive at once (target: at most 100 ms).

Password hashing is slow on purpose; if it ran on the event loop, every live session's output
would stall behind it. Runnable alone, with a server of its own:
``python -m bench.login_flood [--rounds 5] [--logins 40]``; ``python -m bench`` runs it too.

The wrong sign-ins come from a separate process, started ahead and released by one line on
its stdin, so that sending them does not slow this process's reading of the output frames.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from bench.servers import Server
from bench.sockets import open_socket
from bench.stats import ms, summary

# Long enough for the slowest flood seen (hashes of ~0.4 s each on a loaded machine); the
# run is killed as soon as the flood has been answered.
TICKS = "import time\nfor i in range(500):\n    print(i, flush=True)\n    time.sleep(0.05)"
TARGET_MS = 100.0
LOGINS = 40
WARMUP_SECONDS = 1.0  # output flowing before the flood is released


async def one_round(url: str, ws_url: str, token: str, logins: int) -> dict[str, Any]:
    """One run of ``TICKS``; the flood released a second in. Gaps in seconds."""
    fire = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.login_flood",
        "--fire",
        url,
        str(logins),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert fire.stdin is not None and fire.stdout is not None
    await fire.stdout.readline()  # "ready": its connections are open
    arrivals: list[float] = []
    began: float | None = None  # when the flood was released
    ended: float | None = None  # when its last answer came
    answered: asyncio.Task[bytes] | None = None
    killed = False
    async with await open_socket(ws_url, token) as ws:
        await ws.send(json.dumps({"type": "run", "language": "python", "code": TICKS}))
        while True:
            message = json.loads(await asyncio.wait_for(ws.recv(), 35))
            now = time.perf_counter()
            if message["type"] == "exit":
                break
            if message["type"] != "output":
                continue
            arrivals.append(now)
            if began is None and now - arrivals[0] >= WARMUP_SECONDS:
                began = now
                fire.stdin.write(b"go\n")
                await fire.stdin.drain()
                answered = asyncio.ensure_future(fire.stdout.readline())
            if began is not None and ended is None and answered is not None and answered.done():
                ended = now
            # Then as long again without the flood: the machine's own noise, to compare with.
            if (
                not killed
                and began is not None
                and ended is not None
                and now - ended >= ended - began
            ):
                killed = True
                await ws.send(json.dumps({"type": "signal", "signal": "SIGKILL"}))
    await fire.wait()
    if began is None or ended is None or answered is None:
        raise RuntimeError("the program ended before the flood was answered")
    gaps = [(b, b - a) for a, b in itertools.pairwise(arrivals)]
    return {
        "gap_during": max((gap for at, gap in gaps if began < at <= ended), default=0.0),
        "gap_after": max((gap for at, gap in gaps if at > ended), default=0.0),
        "after_seconds": arrivals[-1] - ended,
        "flood_seconds": ended - began,
        "statuses": json.loads(answered.result()),
    }


async def measure(url: str, ws_url: str, token: str, rounds: int, logins: int) -> dict[str, Any]:
    results = [await one_round(url, ws_url, token, logins) for _ in range(rounds)]
    during = [r["gap_during"] for r in results]
    return {
        "logins": logins,
        "rounds": rounds,
        "largest_gap_during_flood": summary(during),
        "largest_gap_after_flood": summary([r["gap_after"] for r in results]),
        "after_flood_seconds": summary([r["after_seconds"] for r in results]),
        "flood_answered_in": summary([r["flood_seconds"] for r in results]),
        "statuses": [r["statuses"] for r in results],
        "target_ms": TARGET_MS,
        "met": ms(max(during)) <= TARGET_MS,
    }


async def fire(url: str, logins: int) -> None:
    """The flood's side: open ``logins`` connections, wait for "go", sign in wrongly at once."""
    limits = httpx.Limits(max_connections=logins, max_keepalive_connections=logins)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:
        # Unknown names cost the server the same hash as wrong passwords (it checks a dummy
        # hash), and as many names are not slowed by the per-username limit.
        await asyncio.gather(*(client.get("/healthz") for _ in range(logins)))
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        forms = [
            {"username": f"x{uuid.uuid4().hex[:10]}", "password": "wrong"} for _ in range(logins)
        ]
        answers = await asyncio.gather(
            *(client.post("/api/v1/auth/token", data=form) for form in forms)
        )
    statuses: dict[str, int] = {}
    for answer in answers:
        statuses[str(answer.status_code)] = statuses.get(str(answer.status_code), 0) + 1
    print(json.dumps(statuses), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.login_flood", description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--logins", type=int, default=LOGINS)
    parser.add_argument("--fire", nargs=2, metavar=("URL", "LOGINS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.fire:
        asyncio.run(fire(args.fire[0], int(args.fire[1])))
        return 0
    folder = Path(tempfile.mkdtemp(prefix="execstream-bench-flood-"))
    server = Server("warm", folder, pool_size=2)
    try:
        server.start()
        token = server.token()
        results = asyncio.run(
            measure(server.url, server.ws_url, token, max(args.rounds, 1), args.logins)
        )
    finally:
        server.stop()
    shutil.rmtree(folder, ignore_errors=True)
    print(json.dumps({k: v for k, v in results.items()}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
