"""Usage figures end to end: cpu_time and memory_peak measured by the container's init."""

from __future__ import annotations

import pytest

from tests.conftest import engine_runtimes
from tests.server import ServerProcess
from tests.test_ws import frames_until_exit, open_socket, run, stdout_of

pytestmark = pytest.mark.docker

MB = 1024 * 1024


async def exit_of(server: ServerProcess, token: str, code: str, **fields) -> dict:
    async with await open_socket(server, token) as ws:
        await run(ws, code, **fields)
        frames = await frames_until_exit(ws, timeout=60)
    return frames[-1] | {"stderr": stdout_of(frames, "stderr"), "stdout": stdout_of(frames)}


async def test_touching_50_mb_reports_50_to_60_mb(server: ServerProcess, user) -> None:
    code = (
        "data = bytearray(50 * 1024 * 1024)\nfor i in range(0, len(data), 4096):\n    data[i] = 1\n"
    )
    exit_ = await exit_of(server, user[1], code)
    assert exit_["status"] == "success", exit_
    assert 50 * MB <= exit_["memory_peak"] <= 60 * MB, exit_["memory_peak"] / MB
    assert exit_["stderr"] == ""  # the figures never show up as the program's stderr


BUSY_SECOND = (
    "import time\nused = time.process_time()\nend = time.monotonic() + 1\n"
    "while time.monotonic() < end:\n    pass\nprint(time.process_time() - used)\n"
)
"""Busy for a second of wall time; prints the CPU time it got, as the process itself sees it."""


async def test_a_busy_second_at_half_a_cpu_is_about_half_a_cpu_second(
    runc_server: ServerProcess,
) -> None:
    exit_ = await exit_of(runc_server, runc_server.new_user()[1], BUSY_SECOND)
    assert exit_["status"] == "success"
    # What the program got (about 0.5 s; less when the machine is busy), within a few
    # percent, and never more than its share allows.
    own = float(exit_["stdout"])
    assert own - 0.01 <= exit_["cpu_time"] <= own * 1.05 + 0.03, exit_
    assert exit_["cpu_time"] <= 0.65, exit_


async def test_under_gvisor_a_busy_second_is_also_about_half_a_cpu_second(
    server: ServerProcess, user
) -> None:
    """gVisor counts time the host throttled the program as the program's own (0.7 s and
    more for this loop): the figure is bounded by what the CPU share allowed in the run's
    time, so it reads about half a second here too. A busy machine stretches the run's time
    (the sandbox starts slower), and the bound with it: half of the run's own time."""
    if "runsc" not in await engine_runtimes():
        pytest.skip("the engine has no runsc: the shared server runs under runc")
    exit_ = await exit_of(server, user[1], BUSY_SECOND)
    assert exit_["status"] == "success"
    # 0.5 CPU, plus one quota period; both figures are rounded to 0.1 ms.
    allowed = 0.5 * (exit_["execution_time"] + 0.1) + 0.001
    assert 0.3 <= exit_["cpu_time"] <= min(allowed, 0.95), exit_


async def test_a_small_program_reports_small_figures(server: ServerProcess, user) -> None:
    exit_ = await exit_of(server, user[1], "print('hi')")
    assert 0 <= exit_["cpu_time"] < 0.2
    assert 0 <= exit_["memory_peak"] < 10 * MB


async def test_a_program_cannot_forge_its_figures(server: ServerProcess, user) -> None:
    # Whatever it prints, in whatever format, the figures are init's.
    fake = "\\x1eexecstream:" + "0" * 32 + ":usage:37\\n" + '{"cpu_time": 0.0, "memory_peak": 1}'
    code = (
        f"import sys\nprint('{fake}', file=sys.stderr)\nprint('{fake}')\n"
        "data = bytearray(30 * 1024 * 1024)\nfor i in range(0, len(data), 4096):\n    data[i] = 1\n"
    )
    exit_ = await exit_of(server, user[1], code)
    assert exit_["memory_peak"] >= 30 * MB
    assert "execstream:" in exit_["stderr"]


C_TOUCH_50_MB = """#include <stdlib.h>
#include <stdio.h>
int main(void) {
    size_t size = 50u << 20;
    char *data = malloc(size);
    for (size_t i = 0; i < size; i += 4096) data[i] = 1;
    printf("%d\\n", data[4096]);
    return 0;
}
"""


async def test_a_compiled_program_reports_its_run_stages_figures(
    server: ServerProcess, user
) -> None:
    exit_ = await exit_of(server, user[1], C_TOUCH_50_MB, language="c", stdin="")
    assert exit_["status"] == "success", exit_
    assert exit_["stdout"] == "1\n"
    assert exit_["compile_time"] > 0
    # The program's own memory, not the compiler's: the run container's init reported it.
    assert 50 * MB <= exit_["memory_peak"] <= 60 * MB, exit_["memory_peak"] / MB
    assert 0 <= exit_["cpu_time"] < 1
    assert exit_["stderr"] == ""


async def test_a_compile_error_shows_no_usage_frame(server: ServerProcess, user) -> None:
    exit_ = await exit_of(server, user[1], "int main(void) { return 0 }\n", language="c")
    assert exit_["status"] == "compile_error"
    assert "error: expected" in exit_["stderr"]
    # The compile container's init reports too: that frame is taken out, not shown.
    assert "\x1e" not in exit_["stderr"] and "execstream:" not in exit_["stderr"]
    assert exit_["cpu_time"] is None and exit_["memory_peak"] is None


CHILD_OUT_OF_MEMORY = """import subprocess, sys
child = subprocess.run([sys.executable, "-c", "data = b'x' * (400 * 1024 * 1024)"])
print(child.returncode)
sys.exit({code})
"""


@pytest.mark.parametrize(("code", "status"), [(1, "memory_limit"), (0, "success")])
async def test_a_child_killed_for_memory_decides_only_a_failed_run(
    runc_server: ServerProcess, code: int, status: str
) -> None:
    """Under runc init counts the cgroup's out-of-memory kills itself: the engine may hear
    of one only after the container's exit. A program that fails after one ran out of
    memory; one that copes with it and exits 0 succeeded. (Under gVisor the host's OOM
    killer ends the whole sandbox: the memory hog tests cover that.)"""
    token = runc_server.new_user()[1]
    exit_ = await exit_of(runc_server, token, CHILD_OUT_OF_MEMORY.format(code=code))
    assert exit_["stdout"] == "-9\n", exit_
    assert exit_["status"] == status, exit_
