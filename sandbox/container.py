"""What a run's container is: its labels, its runtime, the flags that lock it down, and
what an idle one costs."""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Mapping
from typing import Any, Literal

from sandbox.errors import RuntimeMissing
from sandbox.languages import Language
from sandbox.model import Limits

log = logging.getLogger(__name__)

LABEL = "execstream.managed"
OWNER_LABEL = "execstream.owner"
"""The id of the server instance that made a container (it outlives a restart's pid)."""
LEGACY_LABEL = "execstream.server"
"""``host:pid``, never read: servers of the previous version remove any managed container
whose label does not name a live process of their host, so during an upgrade on a shared
engine this keeps them off our containers. Drop it once no such server is left."""
FOLDER = "/tmp"
LAUNCHERS = "/opt/execstream"
INIT = f"{LAUNCHERS}/init"
USER = "10001:10001"
READY = b"\x06"
"""The byte our init writes to stdout once signals sent to it are no longer lost."""
LINGER_SECONDS = 60.0
"""Seconds a run container's init waits, its program ended and reported, for the server to
remove it (init.c): the server removes it sooner, at its own pace (sandbox/remover.py); this
only bounds what a server that died in between leaves running."""
WATCHDOG_GRACE = 2.0
"""Seconds the init of a container gives a program past its wall time before it kills
everything: the server stops it at its wall time; init is for when the server cannot."""

Runtime = Literal["runc", "runsc"]
RuntimeChoice = Literal["auto", "runc", "runsc"]
"""runc: the host kernel's namespaces; runsc: gVisor, a kernel of its own in between."""

RUNSC_TASKS = 64
"""Host tasks gVisor's own kernel (Sentry and Gofer threads) needs beside the program: the
host's pids limit counts them too (about 50 when idle, measured with Debian's runsc 2022),
so under runsc the limit is the program's share plus these, or Node.js alone would not fit."""

MB = 1024 * 1024
IDLE_BYTES: dict[tuple[Runtime, str], int] = {
    ("runc", "python"): 5 * MB,
    ("runc", "javascript"): 16 * MB,
    ("runsc", "python"): 20 * MB,
    ("runsc", "javascript"): 30 * MB,
    # launch_exec.py (Bash, Lua and the run of a compiled program; named by its first
    # language) and the compile containers (launch_compile.py, with Go's cache on its
    # tmpfs): runc 5.4 and 7.7 MiB, runsc 19.6 and 30.2 MiB, measured the same way.
    ("runc", "bash"): 6 * MB,
    ("runsc", "bash"): 20 * MB,
    ("runc", "compiler"): 8 * MB,
    ("runsc", "compiler"): 31 * MB,
    ("runc", "ruby"): 10 * MB,
    ("runsc", "ruby"): 24 * MB,
    ("runc", "php"): 6 * MB,
    ("runsc", "php"): 24 * MB,
}
"""Memory of one idle warm container, by runtime and launcher (named by its first language):
the container's cgroup memory usage as the engine's stats report it, measured with
``python -m bench.idle_memory`` (runc 4.6 and 15.0 MiB, runsc 18.5 and 27.2 MiB on the
Debian 12 engine of bench/results; Ruby, the exec launcher and PHP: runc 9.2, 4.5 and
5.5 MiB, runsc 22.6, 18.5 and 22.0 MiB), rounded up. Under runsc the cgroup holds gVisor's own
kernel (Sentry, Gofer) too, which is most of the difference."""

PRELOAD_BYTES: dict[Runtime, int] = {"runc": 24 * MB, "runsc": 32 * MB}
"""What importing numpy and matplotlib.pyplot in the warm Python launcher adds to an idle
container (EXECSTREAM_PYTHON_PRELOAD): median idle cgroup usage with and without, measured
with ``python -m bench.plots`` (runc 16.9 -> 39.6 MiB, runsc 26.9 -> 58.4 MiB), rounded up.
It buys the first image of a small plot in 0.24 s instead of 2.0 s (runc; runsc 0.31 vs 2.8)."""


def new_owner_id(prefix: str | None = None) -> str:
    """A fresh instance id: ``prefix`` (the host by default), then random hex."""
    return f"{prefix or socket.gethostname()}-{uuid.uuid4().hex[:12]}"


def labels(owner: str, **extra: str) -> dict[str, str]:
    legacy = f"{socket.gethostname()}:{os.getpid()}"
    return {LABEL: "true", OWNER_LABEL: owner, LEGACY_LABEL: legacy, **extra}


def choose_runtime(wanted: RuntimeChoice, available: Mapping[str, Any]) -> Runtime:
    """The runtime to use, given those the engine lists: ``auto`` prefers gVisor."""
    if wanted == "runc":
        return "runc"
    if "runsc" in available:
        return "runsc"
    if wanted == "runsc":
        raise RuntimeMissing(
            "EXECSTREAM_RUNTIME=runsc but the Docker engine has no runsc runtime "
            f"(it lists: {', '.join(sorted(available)) or 'none'}); "
            "register gVisor with the engine (README.md, Running under gVisor) or choose auto"
        )
    log.warning(
        "the Docker engine has no runsc runtime: programs run under runc, with the host "
        "kernel as their only wall (README.md, Running under gVisor)"
    )
    return "runc"


def container_config(
    image: str,
    language: Language,
    limits: Limits,
    owner: str,
    runtime: Runtime,
    idle_seconds: float,
    report_key: str = "",
    linger: float = 0,
) -> dict[str, Any]:
    """Everything that isolates one run. Each flag here is part of the security model.

    A ``preloaded`` language's launcher imports its slow libraries while it waits
    (launch.py); ``report_key`` keys init's usage frame (init.c), which only init may know;
    with ``linger`` too, init reports the program's end in-band and waits to be removed.
    """
    env = ["HOME=/tmp", "LANG=C.UTF-8", "PYTHONDONTWRITEBYTECODE=1"]
    if report_key:
        env.append(f"EXECSTREAM_REPORT_KEY={report_key}")
    if report_key and linger:
        env.append(f"EXECSTREAM_LINGER_SECONDS={linger:g}")
    if language.preloaded:
        env.append("EXECSTREAM_PRELOAD=1")
    return {
        "Image": image,
        # Our init (sandbox/image/init.c) ends the container after ``idle_seconds`` without a
        # program, or at the program's wall time (at most ours) plus a grace.
        "Entrypoint": [
            INIT,
            f"{idle_seconds:g}",
            f"{limits.wall_time:g}",
            f"{WATCHDOG_GRACE:g}",
            "--",
        ],
        "Cmd": [arg.format(launchers=LAUNCHERS, dir=FOLDER) for arg in language.launcher],
        "User": USER,
        "WorkingDir": FOLDER,
        "Env": env,
        "AttachStdin": True,
        "AttachStdout": True,
        "AttachStderr": True,
        "OpenStdin": True,
        "StdinOnce": True,  # our end-of-file closes the program's stdin
        "Tty": False,
        "NetworkDisabled": True,
        "Labels": labels(
            owner, **{"execstream.language": language.id, "execstream.lane": language.lane}
        ),
        "HostConfig": {
            "Runtime": runtime,
            "NetworkMode": "none",
            "ReadonlyRootfs": True,
            "Tmpfs": {FOLDER: f"rw,nosuid,nodev,noexec,size={limits.tmp_bytes},mode=1777"},
            "CapDrop": ["ALL"],
            "SecurityOpt": ["no-new-privileges"],
            "Memory": limits.memory_bytes,
            "MemorySwap": limits.memory_bytes,  # equal to Memory: no swap on top
            "NanoCpus": int(limits.cpus * 1e9),
            "PidsLimit": limits.pids + (RUNSC_TASKS if runtime == "runsc" else 0),
            "Ulimits": [
                {"Name": "nofile", "Soft": limits.open_files, "Hard": limits.open_files},
                {"Name": "fsize", "Soft": limits.file_bytes, "Hard": limits.file_bytes},
                {"Name": "core", "Soft": 0, "Hard": 0},
            ],
            "IpcMode": "private",
            "ShmSize": 1024 * 1024,
            "LogConfig": {"Type": "none"},  # output goes to the client, never to the disk
        },
    }
