"""``python -m bench``: start two servers (warm pool, pool off), measure, report, clean up."""

from __future__ import annotations

import argparse
import asyncio
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from types import FrameType

from bench import balancer, burst, engines, languages
from bench.engine import Engine
from bench.measure import Options, Target, measure, say
from bench.report import write
from bench.servers import Server, raise_fd_limit
from server.config import Settings

RESULTS = Path(__file__).parent / "results"


def parse(argv: list[str] | None) -> Options:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    defaults = Options()
    parser.add_argument(
        "--runs", type=int, default=defaults.runs, help="runs per first-output series"
    )
    parser.add_argument("--pause", type=float, default=defaults.pause, help="seconds between runs")
    parser.add_argument("--pool-size", type=int, default=defaults.pool_size)
    parser.add_argument("--clients", type=int, default=defaults.clients)
    parser.add_argument("--seconds", type=float, default=defaults.seconds, help="throughput time")
    parser.add_argument("--sessions", type=int, default=defaults.sessions)
    parser.add_argument("--flood-runs", type=int, default=defaults.flood_runs)
    parser.add_argument(
        "--login-rounds",
        type=int,
        default=defaults.login_rounds,
        help="rounds of the sign-in flood (alone: python -m bench.login_flood)",
    )
    parser.add_argument(
        "--breakdown-runs",
        type=int,
        default=defaults.breakdown_runs,
        help="runs for the warm breakdown (in-process backend, raw started containers)",
    )
    parser.add_argument(
        "--runtime",
        choices=["runc", "runsc"],
        default=defaults.runtime,
        help="container runtime (python -m bench.runtimes compares the two)",
    )
    parser.add_argument(
        "--core",
        action="store_true",
        help="the table's measurements only: no burst, balancer, languages or engines "
        "(each has its own module and results file)",
    )
    args = parser.parse_args(argv)
    return Options(
        runs=max(args.runs, 1),
        pause=args.pause,
        pool_size=max(args.pool_size, 1),
        clients=max(args.clients, 1),
        seconds=args.seconds,
        sessions=args.sessions,
        flood_runs=max(args.flood_runs, 1),
        login_rounds=max(args.login_rounds, 1),
        breakdown_runs=max(args.breakdown_runs, 1),
        runtime=args.runtime,
        core=args.core,
    )


def interrupted(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


async def run(options: Options, warm: Target, cold: Target) -> dict[str, object]:
    settings = Settings()
    engine = Engine(settings.image, settings.limits, options.runtime)
    try:
        return await measure(options, engine, warm, cold)
    finally:
        await engine.close()


async def sweep(owners: list[str]) -> int:
    settings = Settings()
    engine = Engine(settings.image, settings.limits)
    try:
        return await engine.sweep(owners)
    finally:
        await engine.close()


def extras(options: Options, results: dict[str, object]) -> None:
    """The measurements with a module and results file of their own, added to the report."""
    say("a class burst (python -m bench.burst), under the default runtime and runc")
    results["burst"] = asyncio.run(
        burst.measure(["runsc", "runc"], list(burst.SIZES), burst.SINGLE_RUNS)
    )
    say("through nginx (python -m bench.balancer), two replicas against one directly")
    results["balancer"] = balancer.run(balancer.Options(runtime=options.runtime))
    say("every language's warm first output beside the raw engine (python -m bench.languages)")
    results["languages"] = languages.measure(
        options.runtime, list(languages.LANGUAGES), languages.RUNS
    )
    say("one Docker engine against two (python -m bench.engines)")
    results["engines"] = asyncio.run(engines.measure(engines.CLIENTS, engines.SECONDS))


def main(argv: list[str] | None = None) -> int:
    options = parse(argv)
    signal.signal(signal.SIGTERM, interrupted)
    raise_fd_limit()  # before the servers start: they inherit it
    folder = Path(tempfile.mkdtemp(prefix="execstream-bench-"))
    servers = [
        Server("warm", folder / "warm", options.pool_size, options.runtime),
        Server("cold", folder / "cold", 0, options.runtime),
    ]
    owners: list[str] = []
    ok = False
    try:
        say(f"starting two servers: warm (pool size {options.pool_size}) and cold (pool off)")
        for server in servers:
            server.launch()
        for server in servers:
            server.ready()
        warm, cold = (Target(server, server.token()) for server in servers)
        results = asyncio.run(run(options, warm, cold))
        for server in servers:  # the class burst starts servers of its own
            server.stop()
        if not options.core:
            extras(options, results)
        ok = True
    except KeyboardInterrupt:
        say("interrupted")
        return 130
    finally:
        for server in servers:
            server.stop()
            owners.extend(server.instances())
        removed = asyncio.run(sweep(owners))
        if removed:
            say(f"removed {removed} container(s) left behind")
        if ok:
            shutil.rmtree(folder, ignore_errors=True)
        else:
            say(f"server logs kept in {folder}")
    print(write(results, RESULTS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
