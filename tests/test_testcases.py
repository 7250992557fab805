"""Comparing a program's output with a test case's expected output, and the diff."""

import pytest

from server.testcases import DIFF_LINES, diff, passes


@pytest.mark.parametrize(
    ("actual", "expected", "compare", "result"),
    [
        ("1 2\n", "1 2\n", "exact", True),
        ("1 2\n", "1 2", "exact", False),
        ("1 2  \n\n\n", "1 2\n", "trim", True),
        ("1  2\n", "1 2\n", "trim", False),
        ("1\n  2\t3\n", "1 2 3", "tokens", True),
        ("1 2", "1 2 3", "tokens", False),
        ("0.3333333", "0.333333333", "float", True),
        ("0.34", "0.333", "float", False),
        ("nan inf -inf", "NaN inf -inf", "float", True),
        ("inf", "-inf", "float", False),
        ("nan", "1.0", "float", False),
        ("yes 1.0", "yes 1", "float", True),
        ("no 1.0", "yes 1", "float", False),
        ("1e20", "1.0000001e20", "float", True),
        ("1_000", "1000", "float", False),
    ],
)
def test_comparisons(actual: str, expected: str, compare: str, result: bool) -> None:
    assert passes(actual, expected, compare, 1e-6) is result  # type: ignore[arg-type]


def test_tolerance_is_the_test_cases_own() -> None:
    assert passes("0.14", "0.14159", "float", 0.01)
    assert not passes("0.14", "0.14159", "float", 0.001)


def test_huge_tokens_and_outputs_stay_cheap_and_the_diff_short() -> None:
    huge = "9" * 1_000_000
    assert not passes(huge, huge + "1", "float", 1e-6)
    text = diff("\n".join(str(i) for i in range(10_000)), huge)
    assert len(text.splitlines()) <= DIFF_LINES + 1
    assert len(text) < 20_000


def test_diff_names_the_lines_that_differ() -> None:
    text = diff("1\n2\n4\n", "1\n2\n3\n")
    assert "-3" in text and "+4" in text
    assert text.startswith("--- expected")
