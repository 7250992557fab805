"""How a run's end reads: its status and usage figures, from its exit and init's report.

A program's exit says little by itself: a SIGKILL may be the memory limit, a Stop, or the
engine; exit code 1 may be a JVM out of heap. ``Ending`` gathers what the run saw besides
the exit, and ``status`` decides once, for every backend and both stages.
"""

from __future__ import annotations

import contextlib
import json
import signal as signals
from dataclasses import dataclass, field

from sandbox.model import Exit, Status

CFS_PERIOD_SECONDS = 0.1  # the engine's CPU quota period (Docker's default with NanoCpus)


@dataclass
class Ending:
    """What a run saw of its program's end, besides the exit."""

    usage: dict[str, float] = field(default_factory=dict)
    """init's report (``parse_usage``); empty when none came."""
    reports: bool = False
    """The sandbox's init reports usage: its silence means something."""
    out_of_memory: bool = False
    """The runtime said on stderr that its memory ran out (a JVM's heap)."""
    signalled: bool = False
    """A signal was sent on the user's request."""
    stop_requested: bool = False
    """The user pressed Stop (the run was killed)."""
    end_seen: bool = False
    """init's end frame came on stdout: with its usage frame, the end is known in-band."""

    def reported_exit(self) -> Exit | None:
        """The program's exit as init reported it in-band (its usage frame, then its end
        frame: the last bytes of both streams), or None until both came. Out-of-memory kills
        are in the usage figures."""
        if not self.end_seen or "status" not in self.usage:
            return None
        return exit_from_code(int(self.usage["status"]), oom_killed=False)

    def stopped(self, exit_: Exit) -> bool:
        """Stopped on request: killed, or signalled and then failed or died of it (it may
        have been hit before its own handlers were up); one that handles it and exits 0 was
        not."""
        failed = exit_.signal is not None or exit_.exit_code != 0
        return self.stop_requested or (self.signalled and failed)

    def ended_from_outside(self, exit_: Exit) -> bool:
        """Killed with everything in it, init included (it reported nothing), by nobody who
        asked us. Under gVisor that is the host's OOM killer at the memory limit, and the
        engine may tell of it late or not at all (CI saw C++ and JavaScript memory hogs end
        as plain errors). Under runc init survives the program and counts the kills."""
        asked = self.signalled or self.stop_requested
        silent = self.reports and "cpu_time" not in self.usage
        return exit_.signal == "SIGKILL" and silent and not asked

    def status(self, stop: Status | None, exit_: Exit) -> Status:
        """``stop`` is the limit that stopped the run, if one did."""
        if stop is not None:
            return stop
        failed = exit_.signal is not None or exit_.exit_code != 0
        oom = (
            exit_.oom_killed
            or self.usage.get("oom_kills", 0) > 0
            or self.out_of_memory
            or self.ended_from_outside(exit_)
        )
        if oom and failed:
            return Status.MEMORY_LIMIT
        if self.stopped(exit_):
            return Status.KILLED
        return Status.SUCCESS if exit_.exit_code == 0 else Status.ERROR

    def cpu_time(self, cpus: float | None, elapsed: float) -> float | None:
        """init's CPU time, at most what the CPU share allowed in ``elapsed``: the host's
        quota gives ``cpus`` seconds a second, plus at most one period's worth at the start.
        gVisor counts time the host throttled it as the program's (docs/security.md); under
        runc the figure is already within the bound."""
        used = self.usage.get("cpu_time")
        if used is None or cpus is None:
            return used
        return round(min(used, cpus * (elapsed + CFS_PERIOD_SECONDS)), 4)

    def memory_peak(self) -> int | None:
        return None if "memory_peak" not in self.usage else int(self.usage["memory_peak"])


def parse_usage(payload: bytes | None) -> dict[str, float]:
    """init's figures: {"cpu_time": seconds, "memory_peak": bytes, "oom_kills": count,
    "status": the launcher's exit status, when init sent it}; empty when unreadable."""
    try:
        data = json.loads(payload or b"")
        usage = {name: float(data[name]) for name in ("cpu_time", "memory_peak")}
        usage["oom_kills"] = float(data.get("oom_kills", 0))
        if isinstance(data.get("status"), int):
            usage["status"] = float(data["status"])
        return usage
    except (ValueError, TypeError, KeyError, AttributeError):
        return {}


def exit_from_code(code: int, oom_killed: bool) -> Exit:
    """Our init, PID 1, exits with 128+N when the program died of signal N (and with 137,
    SIGKILL, when its watchdog ended the container); it reports the same status in-band."""
    if code > 128:
        with contextlib.suppress(ValueError):
            return Exit(None, signals.Signals(code - 128).name, oom_killed)
    return Exit(code, None, oom_killed)
