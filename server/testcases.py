"""Checking a program's output against a test case: comparing, and a short diff when not equal.

Pure functions, no I/O: the test-case runner (server/testrun.py) calls them for each test.
"""

from __future__ import annotations

import difflib
import math
from typing import Literal

Compare = Literal["exact", "trim", "tokens", "float"]

DIFF_LINES = 40
"""Lines of unified diff kept at most: enough to see where it went wrong."""
DIFF_LINE_CHARS = 200
"""A line of the diff is cut past this, so a huge token cannot make a huge diff."""


def passes(actual: str, expected: str, compare: Compare, tolerance: float = 1e-6) -> bool:
    """Whether ``actual`` matches ``expected`` under the comparison ``compare``."""
    if compare == "exact":
        return actual == expected
    if compare == "trim":
        return _trim(actual) == _trim(expected)
    if compare == "tokens":
        return actual.split() == expected.split()
    return _floats_equal(actual.split(), expected.split(), tolerance)


def _trim(text: str) -> list[str]:
    """Lines without trailing whitespace, without trailing empty lines."""
    lines = [line.rstrip() for line in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def _floats_equal(actual: list[str], expected: list[str], tolerance: float) -> bool:
    if len(actual) != len(expected):
        return False
    return all(_token_equal(a, e, tolerance) for a, e in zip(actual, expected, strict=True))


def _token_equal(actual: str, expected: str, tolerance: float) -> bool:
    """Equal text, or both numbers within ``tolerance`` (absolute, or relative to the
    expected value for large numbers). NaN matches NaN; infinities match their own sign."""
    if actual == expected:
        return True
    a, e = _number(actual), _number(expected)
    if a is None or e is None:
        return False
    if math.isnan(a) or math.isnan(e):
        return math.isnan(a) and math.isnan(e)
    if math.isinf(a) or math.isinf(e):
        return a == e
    return abs(a - e) <= tolerance * max(1.0, abs(e))


def _number(token: str) -> float | None:
    # float() takes "1_000" and leading/trailing spaces; tokens have no spaces, and we take
    # only what a program would print as a number.
    if len(token) > 64 or "_" in token:
        return None
    try:
        return float(token)
    except ValueError:
        return None


def diff(actual: str, expected: str) -> str:
    """A short unified diff from the expected output to the program's."""
    lines = difflib.unified_diff(
        [_cut(line) for line in expected.splitlines()],
        [_cut(line) for line in actual.splitlines()],
        fromfile="expected",
        tofile="output",
        lineterm="",
        n=1,
    )
    kept = []
    for count, line in enumerate(lines):
        if count == DIFF_LINES:
            kept.append("... (diff cut)")
            break
        kept.append(line)
    return "\n".join(kept)


def _cut(line: str) -> str:
    return line if len(line) <= DIFF_LINE_CHARS else line[:DIFF_LINE_CHARS] + "..."
