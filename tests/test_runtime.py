"""The container runtime: choosing runc or gVisor (runsc), and where the two really differ.

tests/test_sandbox.py holds what both runtimes do alike (it runs under each); this file pins
down what differs, as measured, so a change in either shows up.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import platform
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiodocker
import httpx
import pytest
from aiohttp import web
from pydantic import ValidationError

from sandbox import RunRequest, Status
from sandbox.container import choose_runtime
from sandbox.docker import DockerBackend
from sandbox.errors import RuntimeMissing
from server.config import Settings
from tests.conftest import engine_runtimes, wait_gone
from tests.helpers import collect, read_until
from tests.server import ServerProcess

RUNC_ONLY = {"runc": {"path": "runc"}}
WITH_RUNSC = {**RUNC_ONLY, "runsc": {"path": "/usr/bin/runsc"}}


# Choosing ----------------------------------------------------------------------------------


def test_auto_prefers_runsc_when_the_engine_has_it(caplog: pytest.LogCaptureFixture) -> None:
    assert choose_runtime("auto", WITH_RUNSC) == "runsc"
    assert not caplog.records


def test_auto_falls_back_to_runc_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert choose_runtime("auto", RUNC_ONLY) == "runc"
    [record] = caplog.records
    assert "no runsc runtime" in record.getMessage()


def test_explicit_choices() -> None:
    assert choose_runtime("runc", WITH_RUNSC) == "runc"
    assert choose_runtime("runsc", WITH_RUNSC) == "runsc"
    with pytest.raises(RuntimeMissing, match=r"EXECSTREAM_RUNTIME=runsc.*lists: runc"):
        choose_runtime("runsc", RUNC_ONLY)


def test_setting_defaults_to_auto_and_refuses_other_values(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("EXECSTREAM_RUNTIME", raising=False)
    assert Settings().runtime == "auto"
    monkeypatch.setenv("EXECSTREAM_RUNTIME", "kata")
    with pytest.raises(ValidationError, match="runtime"):
        Settings()


# Start-up against an engine without runsc --------------------------------------------------


@pytest.fixture
async def engine_without_runsc(tmp_path: Path) -> AsyncIterator[str]:
    """A stand-in Docker engine on a Unix socket that lists only runc and has no images: all
    a server meets before it refuses to start."""

    async def version(request: web.Request) -> web.Response:
        return web.json_response({"Version": "20.10.24", "ApiVersion": "1.41"})

    async def info(request: web.Request) -> web.Response:
        return web.json_response({"Runtimes": RUNC_ONLY, "DefaultRuntime": "runc"})

    async def no_image(request: web.Request) -> web.Response:
        return web.json_response({"message": "No such image"}, status=404)

    app = web.Application()
    app.router.add_get("/version", version)  # unversioned: how aiodocker finds the API
    app.router.add_get(r"/{api:v[0-9.]+}/version", version)
    app.router.add_get(r"/{api:v[0-9.]+}/info", info)
    app.router.add_get(r"/{api:v[0-9.]+}/images/{name:.+}/json", no_image)
    runner = web.AppRunner(app)
    await runner.setup()
    path = str(tmp_path / "docker.sock")
    await web.UnixSite(runner, path).start()
    yield f"unix://{path}"
    await runner.cleanup()


async def serve_until_exit(docker_url: str, runtime: str) -> tuple[int, str]:
    env = {**os.environ, "EXECSTREAM_DOCKER_URL": docker_url, "EXECSTREAM_RUNTIME": runtime}
    env["EXECSTREAM_LOG_LEVEL"] = "warning"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "server.cli",
        "serve",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode is not None
    return process.returncode, output.decode()


async def test_explicit_runsc_on_an_engine_without_it_stops_start_up_in_one_line(
    engine_without_runsc: str,
) -> None:
    code, output = await serve_until_exit(engine_without_runsc, "runsc")
    assert code != 0
    assert "Traceback" not in output
    [line] = output.splitlines()
    assert "cannot start: EXECSTREAM_RUNTIME=runsc but the Docker engine has no runsc" in line


async def test_auto_on_an_engine_without_runsc_warns_once_and_goes_on(
    engine_without_runsc: str,
) -> None:
    # It gets past the runtime and stops only at the (stand-in engine's) missing image.
    code, output = await serve_until_exit(engine_without_runsc, "auto")
    assert code != 0
    assert "Traceback" not in output
    assert output.count("no runsc runtime: programs run under runc") == 1
    assert "cannot start: executor image" in output


# Which runtime runs programs, end to end ---------------------------------------------------


@pytest.mark.docker
@pytest.mark.parametrize("runtime", ["auto", "runc", "runsc"])
async def test_the_server_says_which_runtime_runs_programs(tmp_path: Path, runtime: str) -> None:
    has_runsc = "runsc" in await engine_runtimes()
    if runtime == "runsc" and not has_runsc:
        pytest.skip("the Docker engine has no runsc runtime (scripts/ensure-docker.sh adds it)")
    expected = "runsc" if runtime != "runc" and has_runsc else "runc"
    server = ServerProcess(tmp_path, EXECSTREAM_RUNTIME=runtime, EXECSTREAM_POOL_SIZE="0")
    server.start()
    try:
        _, token = server.new_user()
        async with httpx.AsyncClient(base_url=server.url) as http:
            auth = {"Authorization": f"Bearer {token}"}
            languages = (await http.get("/api/v1/code/languages", headers=auth)).json()
            health = (await http.get("/readyz")).json()
            release = "import platform; print(platform.release())"
            body = {"language": "python", "code": release, "save_history": False}
            run = (await http.post("/api/v1/code/execute", json=body, headers=auth)).json()
    finally:
        server.stop()
    assert isinstance(languages, list)
    assert {lang["runtime"] for lang in languages} == {expected}
    assert health["engine"]["runtime"] == expected
    # The program really is behind that wall: gVisor shows a kernel of its own.
    gvisor_kernel = "4.4.0"
    assert run["status"] == "success"
    if expected == "runsc":
        assert run["output"].strip() == gvisor_kernel
    else:
        assert run["output"].strip() == platform.release()


# Where runc and gVisor differ --------------------------------------------------------------

FORK_LOOP = """
import errno, os, time
print('forking', flush=True)
n = 0
try:
    while True:
        if os.fork() == 0:
            time.sleep(30)
            os._exit(0)
        n += 1
except OSError as exc:
    print(n, errno.errorcode[exc.errno], flush=True)
"""


@pytest.mark.docker
async def test_pids_limit(backend: DockerBackend) -> None:
    run = await backend.start(RunRequest("python", FORK_LOOP, timeout=20))
    container = run._process.id  # type: ignore[attr-defined]
    done = await collect(run)
    if backend.runtime == "runc":
        # The program meets the limit: fork fails with EAGAIN at about 62 processes (64 less
        # tini and the interpreter), and it goes on.
        children, error = done.stdout.decode().splitlines()[1].split()
        assert error == "EAGAIN" and 50 <= int(children) < 64
        assert done.result.status == Status.SUCCESS
    else:
        # gVisor (ptrace platform: each guest thread is a host thread) does not return
        # EAGAIN: the whole sandbox ends at once with exit code 2. Output written before
        # that still arrives; the run is over long before its timeout and leaves nothing.
        # Which way it ends varies from run to run: exit code 2, or the engine reporting the
        # sandbox as killed for memory.
        assert done.stdout == b"forking\n"
        assert done.result.status in (Status.ERROR, Status.MEMORY_LIMIT), done.result
        assert done.result.execution_time < 10
    assert await wait_gone(container, 20)


THREAD_LOOP = """
import threading, time
n = 0
try:
    while True:
        threading.Thread(target=time.sleep, args=(3,)).start()
        n += 1
except RuntimeError as exc:
    print(n, exc, flush=True)
"""


@pytest.mark.docker
async def test_thread_limit(backend: DockerBackend) -> None:
    done = await collect(await backend.start(RunRequest("python", THREAD_LOOP, timeout=20)))
    if backend.runtime == "runc":
        # Threads count against the same 64: Python says so and the program goes on.
        threads, message = done.stdout.decode().split(" ", 1)
        assert 50 <= int(threads) < 64 and message == "can't start new thread\n"
        assert done.result.status == Status.SUCCESS
    else:
        # Under gVisor the program never hears of a limit: the threads' memory runs out
        # (memory_limit), or the host tasks (the whole sandbox ends with exit code 2, as in
        # test_pids_limit), or the sandbox stalls and the wall time ends it; whichever, it
        # ends, and by the server's limits (docs/security.md).
        result = done.result
        assert b"can't start new thread" not in done.stdout
        assert result.status in (Status.MEMORY_LIMIT, Status.TIMEOUT) or (
            result.status == Status.ERROR and result.exit_code == 2
        ), result
        assert result.execution_time < 25


CPU_LOOP = """
import time
start = time.monotonic()
while time.monotonic() - start < 2:
    pass
print(round(time.process_time(), 2))
"""


@pytest.mark.docker
async def test_cpu_time_a_program_sees(backend: DockerBackend) -> None:
    done = await collect(await backend.start(RunRequest("python", CPU_LOOP)))
    cpu = float(done.stdout)
    assert done.result.status == Status.SUCCESS
    if backend.runtime == "runc":
        # 2 s at EXECSTREAM_CPUS=0.5: the kernel's own count, at most the share.
        assert cpu <= 1.2
    else:
        # gVisor's count includes time the host throttled it: more than the share allows
        # (measured: 1.58 s and 1.69 s). The limit itself is the host's cgroup, as under runc.
        assert 1.2 < cpu <= 2.2


@pytest.mark.docker
async def test_limits_can_be_changed_after_start_only_under_runc(backend: DockerBackend) -> None:
    run = await backend.start(RunRequest("python", "print('up', flush=True)\ninput()"))
    try:
        await read_until(run, b"up\n")
        update = backend.docker._query_json(
            f"containers/{run._process.id}/update",  # type: ignore[attr-defined]
            method="POST",
            data={"Memory": 64 * 1024 * 1024, "MemorySwap": 64 * 1024 * 1024},
        )
        if backend.runtime == "runc":
            await update
        else:
            # So no stage of a run (a compile step, say) may count on `docker update`.
            with pytest.raises(aiodocker.DockerError):
                await update
    finally:
        with contextlib.suppress(Exception):
            await run.close()


# Set-up: registering runsc with an engine ---------------------------------------------------

REGISTER = Path(__file__).parent.parent / "scripts" / "register-runsc.py"
OURS = {"path": "/usr/bin/runsc", "runtimeArgs": ["--network=none"]}


def register(daemon_json: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, str(REGISTER), str(daemon_json), "/usr/bin/runsc"]
    return subprocess.run(command, capture_output=True, text=True)


def test_register_creates_daemon_json(tmp_path: Path) -> None:
    daemon_json = tmp_path / "daemon.json"
    assert register(daemon_json).returncode == 0
    assert json.loads(daemon_json.read_text()) == {"runtimes": {"runsc": OURS}}


def test_register_merges_into_an_existing_daemon_json(tmp_path: Path) -> None:
    daemon_json = tmp_path / "daemon.json"
    before = {"log-driver": "journald", "runtimes": {"kata": {"path": "/usr/bin/kata"}}}
    daemon_json.write_text(json.dumps(before))
    daemon_json.chmod(0o640)
    assert register(daemon_json).returncode == 0
    after = json.loads(daemon_json.read_text())
    assert after == {**before, "runtimes": {**before["runtimes"], "runsc": OURS}}
    assert daemon_json.stat().st_mode & 0o777 == 0o640
    # Twice is the same as once.
    assert register(daemon_json).returncode == 0
    assert json.loads(daemon_json.read_text()) == after


def test_register_keeps_a_runsc_someone_configured(tmp_path: Path) -> None:
    daemon_json = tmp_path / "daemon.json"
    theirs = {"runtimes": {"runsc": {"path": "/opt/runsc", "runtimeArgs": ["--platform=kvm"]}}}
    daemon_json.write_text(json.dumps(theirs))
    assert register(daemon_json).returncode == 0
    assert json.loads(daemon_json.read_text()) == theirs


def test_register_never_clobbers_a_file_it_cannot_read(tmp_path: Path) -> None:
    daemon_json = tmp_path / "daemon.json"
    daemon_json.write_text('{"debug": true,')  # broken by hand: the owner must fix it
    done = register(daemon_json)
    assert done.returncode == 1 and "not valid JSON" in done.stderr
    assert daemon_json.read_text() == '{"debug": true,'
