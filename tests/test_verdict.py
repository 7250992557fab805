"""How a run's end reads, rule by rule (end to end in test_usage.py, test_sandbox.py)."""

from __future__ import annotations

import pytest

from sandbox.model import Exit, Status
from sandbox.verdict import Ending, parse_usage

OK = Exit(0, None)
FAILED = Exit(1, None)
KILLED = Exit(None, "SIGKILL")
REPORT = {"cpu_time": 0.2, "memory_peak": 1e6, "oom_kills": 0.0}


def test_a_limit_that_stopped_the_run_is_its_status() -> None:
    assert Ending().status(Status.TIMEOUT, OK) is Status.TIMEOUT


@pytest.mark.parametrize(
    ("ending", "exit_", "status"),
    [
        (Ending(usage=REPORT), OK, Status.SUCCESS),
        (Ending(usage=REPORT), FAILED, Status.ERROR),
        # A child killed for memory decides only a run that failed.
        (Ending(usage=REPORT | {"oom_kills": 1.0}), FAILED, Status.MEMORY_LIMIT),
        (Ending(usage=REPORT | {"oom_kills": 1.0}), OK, Status.SUCCESS),
        (Ending(), Exit(None, "SIGKILL", oom_killed=True), Status.MEMORY_LIMIT),
        (Ending(out_of_memory=True), FAILED, Status.MEMORY_LIMIT),  # a JVM's heap
        # Killed whole, init included, by nobody we know of: gVisor's OOM kill.
        (Ending(reports=True), KILLED, Status.MEMORY_LIMIT),
        (Ending(reports=False), KILLED, Status.ERROR),
        (Ending(reports=True, usage=REPORT), KILLED, Status.ERROR),
        # Stop, and signals on request.
        (Ending(reports=True, stop_requested=True), KILLED, Status.KILLED),
        (Ending(signalled=True), Exit(None, "SIGINT"), Status.KILLED),
        (Ending(signalled=True), FAILED, Status.KILLED),
        (Ending(signalled=True), OK, Status.SUCCESS),  # handled it, and went on
    ],
)
def test_status(ending: Ending, exit_: Exit, status: Status) -> None:
    assert ending.status(None, exit_) is status


def test_cpu_time_is_bounded_by_the_share_in_the_run_s_time() -> None:
    ending = Ending(usage=REPORT | {"cpu_time": 0.9})
    assert ending.cpu_time(0.5, 1.0) == pytest.approx(0.55)  # 0.5 x (1.0 + a 0.1 s period)
    assert ending.cpu_time(2.0, 1.0) == 0.9
    assert ending.cpu_time(None, 1.0) == 0.9
    assert Ending().cpu_time(0.5, 1.0) is None


@pytest.mark.parametrize("payload", [None, b"", b"{", b"[]", b'{"cpu_time": 1}', b'{"x": 1}'])
def test_an_unreadable_report_gives_no_figures(payload: bytes | None) -> None:
    assert parse_usage(payload) == {}


def test_a_report_reads_as_numbers() -> None:
    usage = parse_usage(b'{"cpu_time": 0.25, "memory_peak": 1048576}')
    assert usage == {"cpu_time": 0.25, "memory_peak": 1048576.0, "oom_kills": 0.0}
    assert Ending(usage=usage).memory_peak() == 1048576


def test_the_exit_is_known_in_band_once_both_frames_came() -> None:
    usage = parse_usage(b'{"cpu_time": 0.1, "memory_peak": 4096, "oom_kills": 0, "status": 3}')
    assert usage["status"] == 3
    assert Ending(usage=usage).reported_exit() is None  # stdout may still be arriving
    assert Ending(end_seen=True).reported_exit() is None  # no status: an older init
    assert Ending(usage=usage, end_seen=True).reported_exit() == Exit(3, None)
    died = usage | {"status": 128 + 9}
    assert Ending(usage=died, end_seen=True).reported_exit() == Exit(None, "SIGKILL")


def test_a_status_that_is_not_a_whole_number_is_left_out() -> None:
    usage = parse_usage(b'{"cpu_time": 0.1, "memory_peak": 4096, "status": "0"}')
    assert "status" not in usage
