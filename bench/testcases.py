"""``python -m bench.testcases``: a 10-test run against 10 separate runs of the same program.

One server (warm pool of 2, runc, EXECSTREAM_TEST_CONCURRENCY as configured, 2 by default),
one user. "Separate" is what a client without test cases does: 10 REST executes one after
the other, comparing outputs itself. "Tests" is one REST execute with 10 tests. Each is
timed end to end, ``--rounds`` times; medians are reported.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.servers import Server

RESULTS = Path(__file__).parent / "results"
CODE = "n = int(input())\nprint(n * n)\n"
TESTS = [{"name": f"t{i}", "stdin": f"{i}\n", "expected_stdout": f"{i * i}\n"} for i in range(10)]


def separate(client: httpx.Client) -> float:
    start = time.monotonic()
    for test in TESTS:
        body = {"code": CODE, "language": "python", "stdin": test["stdin"]}
        answer = client.post("/api/v1/code/execute", json=body).json()
        assert answer["output"] == test["expected_stdout"], answer
    return time.monotonic() - start


def together(client: httpx.Client) -> float:
    start = time.monotonic()
    body = {"code": CODE, "language": "python", "tests": TESTS}
    answer = client.post("/api/v1/code/execute", json=body).json()
    assert answer["tests_passed"] == 10, answer
    return time.monotonic() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.testcases", description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        server = Server("tests", Path(folder), pool_size=2)
        server.start()
        try:
            headers = {"Authorization": f"Bearer {server.token()}"}
            with httpx.Client(base_url=server.url, headers=headers, timeout=120) as client:
                rows: dict[str, list[Any]] = {"separate": [], "tests": []}
                for _ in range(max(args.rounds, 1)):
                    time.sleep(3)  # the pool refills
                    rows["separate"].append(separate(client))
                    time.sleep(3)
                    rows["tests"].append(together(client))
        finally:
            server.stop()
    result = {name: round(statistics.median(times), 2) for name, times in rows.items()}
    result["rounds"] = max(args.rounds, 1)
    lines = [
        "# Test cases: one 10-test run against 10 separate runs (bench/testcases.py)",
        "",
        "| what | median total (s) |",
        "|---|---|",
        f"| 10 separate REST executes, one after the other | {result['separate']} |",
        f"| one execute with 10 tests (concurrency 2) | {result['tests']} |",
    ]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "testcases.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "testcases.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
