"""Running one program against test cases: once per test, each in a fresh sandbox.

Each test is an ordinary run (``RunService.start``: the queue, the user's run cap, the
normal limits), at most ``concurrency`` at a time; results come out in test order however
the runs finish. A test passes when its run succeeds and its stdout matches.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Any

from sandbox import Image, Status
from server.runs import Execution, RunService, RunSpec
from server.testcases import Compare, diff, passes

STDOUT_CHARS = 4096
"""A test's stdout as sent back (the run's own output cap applies first)."""


@dataclass(frozen=True)
class TestCase:
    name: str
    stdin: str
    expected_stdout: str
    compare: Compare = "trim"
    tolerance: float = 1e-6


@dataclass(frozen=True)
class TestResult:
    name: str
    passed: bool
    status: Status
    time: float
    stdout: str
    expected: str
    diff: str | None


async def run_tests(
    runs: RunService, user_id: int, spec: RunSpec, tests: list[TestCase], concurrency: int
) -> AsyncIterator[TestResult]:
    """Each test's result, in order. Closing the iterator early (or cancelling) stops the
    tests still running and gives their slots back."""
    gate = asyncio.Semaphore(concurrency)
    tasks = [asyncio.create_task(_one(runs, user_id, spec, test, gate)) for test in tests]
    try:
        for task in tasks:
            yield await task
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _one(
    runs: RunService, user_id: int, spec: RunSpec, test: TestCase, gate: asyncio.Semaphore
) -> TestResult:
    async with gate:
        # One stored record for the whole set, not one per test: the session stores it.
        execution = await runs.start(user_id, replace(spec, stdin=test.stdin, save_history=False))
        try:
            await _consume(execution)
        except BaseException:
            await asyncio.shield(_stop(runs, execution))
            raise
        result, _ = await asyncio.shield(runs.finish(execution))
    stdout = "".join(execution.stdout)
    passed = result.status is Status.SUCCESS and passes(
        stdout, test.expected_stdout, test.compare, test.tolerance
    )
    return TestResult(
        name=test.name,
        passed=passed,
        status=result.status,
        time=result.execution_time,
        stdout=stdout[:STDOUT_CHARS],
        expected=test.expected_stdout[:STDOUT_CHARS],
        diff=None if passed else diff(stdout, test.expected_stdout),
    )


async def _consume(execution: Execution) -> None:
    """Read the run's output to its end (the run keeps its text; plots are not kept)."""
    async for item in execution.output():
        if isinstance(item, Image):
            continue


async def _stop(runs: RunService, execution: Execution) -> None:
    with contextlib.suppress(Exception):
        await execution.run.kill()
        await runs.finish(execution)


def elapsed_since(start: float) -> float:
    return round(time.monotonic() - start, 4)


def summary(results: list[TestResult]) -> str:
    """The stored record's output for a test run: one line per test, as a checklist."""
    return "".join(f"{'PASS' if r.passed else 'FAIL'} {r.name} ({r.status})\n" for r in results)


async def store(
    runs: RunService, user_id: int, spec: RunSpec, results: list[TestResult], took: float
) -> int | None:
    """One history record for the whole set of tests."""
    if not spec.save_history:
        return None
    passed = sum(r.passed for r in results)
    record = await runs.db.save_execution(
        user_id=user_id,
        project_id=spec.project_id,
        language=spec.language,
        code=spec.code,
        files=spec.files_json(),
        status=(Status.SUCCESS if results and passed == len(results) else Status.ERROR).value,
        execution_time=took,
        output=summary(results),
        instance_id=runs.instance_id,
        tests=[result_json(r) for r in results],
        tests_passed=passed,
        tests_total=len(results),
    )
    return record.id


def result_json(result: TestResult) -> dict[str, Any]:
    """A test's result as its ``test`` frame and the stored record say it."""
    return dataclasses.asdict(result) | {"status": result.status.value}
