"""The sandbox against the real Docker engine: languages, stdin, streaming, limits, isolation."""

from __future__ import annotations

import asyncio
import textwrap
import time

import aiodocker
import pytest

from sandbox import (
    LANGUAGES,
    CodeTooLarge,
    InvalidTimeout,
    RunRequest,
    Status,
    StdinBacklog,
    UnknownLanguage,
)
from sandbox.docker import RUNSC_TASKS, DockerBackend
from tests.conftest import managed_containers, wait_gone
from tests.helpers import collect, read_until

pytestmark = pytest.mark.docker


def code(text: str) -> str:
    return textwrap.dedent(text).lstrip()


async def run_to_end(backend: DockerBackend, language: str, source: str, **kwargs):
    return await collect(await backend.start(RunRequest(language, source, **kwargs)))


# Languages ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("language", "source"),
    [
        ("python", 'print("Hello, World!")'),
        ("javascript", 'console.log("Hello, World!")'),
        ("typescript", 'const who: string = "World";\nconsole.log(`Hello, ${who}!`);'),
    ],
)
async def test_hello_world(backend: DockerBackend, language: str, source: str) -> None:
    done = await run_to_end(backend, language, source)
    assert done.stdout == b"Hello, World!\n"
    assert done.stderr == b""
    assert done.result.status is Status.SUCCESS
    assert done.result.exit_code == 0
    assert done.result.signal is None
    assert 0 < done.result.execution_time < 10


async def test_versions_come_from_the_image(backend: DockerBackend) -> None:
    assert backend.versions["python"].startswith("3.11.")
    assert backend.versions["javascript"].startswith("18.")
    done = await run_to_end(backend, "python", "import platform; print(platform.python_version())")
    assert done.stdout.decode().strip() == backend.versions["python"]


async def test_typescript_type_errors_do_not_block_but_syntax_errors_fail(
    backend: DockerBackend,
) -> None:
    done = await run_to_end(backend, "typescript", "const x: number = ;\n")
    assert done.result.status is Status.ERROR
    assert b"main.ts" in done.stderr


async def test_stderr_and_exit_code(backend: DockerBackend) -> None:
    done = await run_to_end(
        backend, "python", "import sys\nprint('out')\nprint('err', file=sys.stderr)\nsys.exit(3)"
    )
    assert done.stdout == b"out\n"
    assert done.stderr == b"err\n"
    assert done.result.status is Status.ERROR
    assert done.result.exit_code == 3


async def test_python_program_sees_a_plain_script_world(backend: DockerBackend) -> None:
    done = await run_to_end(
        backend,
        "python",
        code("""
            import os, sys
            print(sys.argv, __name__, __file__, os.getcwd(), sys.path[0])
            def fail():
                raise ValueError("boom")
            fail()
        """),
    )
    assert done.stdout == b"['/tmp/main.py'] __main__ /tmp/main.py /tmp /tmp\n"
    assert done.result.exit_code == 1
    traceback = done.stderr.decode()
    assert traceback.startswith('Traceback (most recent call last):\n  File "/tmp/main.py"')
    assert "launch.py" not in traceback
    assert traceback.rstrip().endswith("ValueError: boom")


async def test_node_argv_is_that_of_a_plain_script(backend: DockerBackend) -> None:
    done = await run_to_end(backend, "javascript", "console.log(JSON.stringify(process.argv))")
    assert done.stdout == b'["/usr/bin/node","/tmp/main.js"]\n'


# Stdin -------------------------------------------------------------------------------------


async def test_stdin_given_up_front(backend: DockerBackend) -> None:
    done = await run_to_end(
        backend, "python", "a = int(input()); b = int(input()); print(a + b)", stdin=b"3\n4\n"
    )
    assert done.stdout == b"7\n"
    assert done.result.status is Status.SUCCESS


async def test_stdin_up_front_ends_with_eof(backend: DockerBackend) -> None:
    done = await run_to_end(
        backend,
        "javascript",
        code("""
            let data = "";
            process.stdin.on("data", (d) => (data += d));
            process.stdin.on("end", () => console.log("got", JSON.stringify(data)));
        """),
        stdin=b"line one\nline two",
    )
    assert done.stdout == b'got "line one\\nline two"\n'


async def test_interactive_stdin(backend: DockerBackend) -> None:
    run = await backend.start(
        RunRequest("python", 'name = input("Name? ")\nprint(f"Hello, {name}!")')
    )
    events = aiter(run)
    first = await anext(events)
    assert first.data == b"Name? "
    assert not run.done  # it is waiting for us
    await run.write_stdin(b"Ada\n")
    rest = b"".join([out.data async for out in events])
    assert rest == b"Hello, Ada!\n"
    assert (await run.result()).status is Status.SUCCESS


async def test_eof_while_output_keeps_streaming(backend: DockerBackend) -> None:
    run = await backend.start(
        RunRequest(
            "python",
            code("""
                import sys, time
                data = sys.stdin.read()
                print("read", len(data), "bytes", flush=True)
                time.sleep(0.3)
                print("still here")
            """),
        )
    )
    await run.write_stdin(b"abc\n")
    await run.close_stdin()
    done = await collect(run)
    assert done.stdout == b"read 4 bytes\nstill here\n"
    assert done.result.status is Status.SUCCESS


async def test_launcher_reads_no_stdin_ahead(backend: DockerBackend) -> None:
    """Input sent right behind the code, in the same write, all reaches the program."""
    run = await backend.start(
        RunRequest("python", "import sys\nprint(repr(sys.stdin.buffer.read()))", stdin=b"x" * 5000)
    )
    done = await collect(run)
    assert done.stdout == repr(b"x" * 5000).encode() + b"\n"


# Streaming ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("language", "source"),
    [
        ("python", "import time\nprint('one')\ntime.sleep(1.5)\nprint('two')"),
        ("javascript", "console.log('one'); setTimeout(() => console.log('two'), 1500);"),
    ],
)
async def test_output_streams_while_the_program_runs(
    backend: DockerBackend, language: str, source: str
) -> None:
    run = await backend.start(RunRequest(language, source))
    arrivals = [(time.monotonic(), out.data, run.done) async for out in run]
    assert b"".join(data for _, data, _ in arrivals) == b"one\ntwo\n"
    first = arrivals[0]
    second = next(a for a in arrivals if b"two" in a[1])
    assert first[2] is False, "the first line arrived only after the program ended"
    assert second[0] - first[0] > 1.0, "both lines arrived together"


# Limits ------------------------------------------------------------------------------------


async def test_timeout(backend: DockerBackend) -> None:
    started = time.monotonic()
    done = await run_to_end(backend, "python", "while True:\n    pass", timeout=1.0)
    assert done.result.status is Status.TIMEOUT
    assert 1.0 <= done.result.execution_time < 3.0
    assert time.monotonic() - started < 10


async def test_timeout_cannot_exceed_the_limit(backend: DockerBackend) -> None:
    with pytest.raises(InvalidTimeout):
        await backend.start(RunRequest("python", "print(1)", timeout=31))


async def test_memory_hog_ends_as_memory_limit(backend: DockerBackend) -> None:
    done = await run_to_end(
        backend,
        "python",
        "chunks = []\nwhile True:\n    chunks.append(b'x' * (8 * 1024 * 1024))",
        timeout=20,
    )
    assert done.result.status is Status.MEMORY_LIMIT
    assert done.result.signal == "SIGKILL"


async def test_output_flood_yields_exactly_the_cap(backend: DockerBackend) -> None:
    done = await run_to_end(backend, "python", "while True:\n    print('y' * 100)")
    assert len(done.stdout) + len(done.stderr) == 10_240
    assert done.result.status is Status.OUTPUT_LIMIT
    assert done.result.output_truncated is True


async def test_output_exactly_at_the_cap_is_not_truncated(backend: DockerBackend) -> None:
    done = await run_to_end(backend, "python", "import sys\nsys.stdout.write('z' * 10240)")
    assert len(done.stdout) == 10_240
    assert done.result.status is Status.SUCCESS
    assert done.result.output_truncated is False


async def test_fork_bomb_is_contained(backend: DockerBackend) -> None:
    bomb = await backend.start(
        RunRequest(
            "python",
            code("""
                import os
                while True:
                    try:
                        os.fork()
                    except OSError:
                        pass
            """),
            timeout=5,
        )
    )
    # While the bomb goes off, other runs still work and the host still starts processes.
    await asyncio.sleep(1.0)
    started = time.monotonic()
    hello = await run_to_end(backend, "python", "print('still fine')")
    assert hello.stdout == b"still fine\n"
    proc = await asyncio.create_subprocess_exec("true")
    assert await proc.wait() == 0
    assert time.monotonic() - started < 15
    # How it ends differs: runc lets the bomb spin against the limit until its timeout, gVisor
    # ends the whole sandbox at once (tests/test_runtime.py pins each down).
    result = (await collect(bomb)).result
    assert result.status in (Status.TIMEOUT, Status.ERROR, Status.MEMORY_LIMIT)


# Isolation ---------------------------------------------------------------------------------


async def test_network_is_unreachable(backend: DockerBackend) -> None:
    done = await run_to_end(
        backend,
        "python",
        code("""
            import os, socket
            print(sorted(os.listdir("/sys/class/net")))
            try:
                socket.create_connection(("1.1.1.1", 53), timeout=3)
                print("connected")
            except OSError as exc:
                print("blocked:", exc.errno)
        """),
    )
    lines = done.stdout.decode().splitlines()
    assert lines[0] == "['lo']"
    assert lines[1].startswith("blocked:")


async def test_filesystem_is_read_only_but_tmp(backend: DockerBackend) -> None:
    done = await run_to_end(
        backend,
        "python",
        code("""
            paths = "/etc/evil", "/opt/execstream/evil", "/home/evil", "/var/tmp/evil", "/tmp/ok"
            for path in paths:
                try:
                    open(path, "w").write("x")
                    print(path, "written")
                except OSError as exc:
                    print(path, exc.strerror)
        """),
    )
    # gVisor checks permissions before the read-only mount; /var/tmp (mode 1777 in the
    # image) shows that the mount itself refuses writes under both.
    denied = "Read-only file system" if backend.runtime == "runc" else "Permission denied"
    assert done.stdout.decode().splitlines() == [
        f"/etc/evil {denied}",
        f"/opt/execstream/evil {denied}",
        f"/home/evil {denied}",
        "/var/tmp/evil Read-only file system",
        "/tmp/ok written",
    ]


async def test_the_only_writable_places_are_small_noexec_tmpfs(backend: DockerBackend) -> None:
    done = await run_to_end(
        backend,
        "python",
        code("""
            import os
            for line in open("/proc/mounts"):
                _, point, kind, options, *_ = line.split()
                # Docker masks /proc/keys and such with /dev/null: files, not places to write.
                writable = "rw" in options.split(",") and os.access(point, os.W_OK)
                if writable and os.path.isdir(point):
                    stat = os.statvfs(point)
                    print(point, kind, "noexec" in options, stat.f_blocks * stat.f_frsize)
        """),
    )
    writable = {line.split()[0]: line.split()[1:] for line in done.stdout.decode().splitlines()}
    assert writable["/tmp"] == ["tmpfs", "True", str(16 * 1024 * 1024)]
    # POSIX semaphores (multiprocessing) need /dev/shm: kept, but at 1 MB.
    assert writable["/dev/shm"] == ["tmpfs", "True", str(1024 * 1024)]
    assert set(writable) <= {"/tmp", "/dev/shm", "/dev/mqueue"}


async def test_runs_as_non_root_without_capabilities(backend: DockerBackend) -> None:
    done = await run_to_end(
        backend,
        "python",
        code("""
            import ctypes, os
            lines = open("/proc/self/status").read().splitlines()
            status = dict(line.split(":\\t", 1) for line in lines if ":\\t" in line)
            # prctl rather than /proc: gVisor's /proc/self/status has no NoNewPrivs line.
            no_new_privs = ctypes.CDLL(None).prctl(39, 0, 0, 0, 0)  # PR_GET_NO_NEW_PRIVS
            print(os.getuid(), os.getgid(), status["CapEff"], status["CapPrm"], no_new_privs)
        """),
    )
    assert done.stdout.decode().split() == [
        "10001",
        "10001",
        "0000000000000000",
        "0000000000000000",
        "1",
    ]


async def test_container_carries_every_isolation_flag(backend: DockerBackend) -> None:
    run = await backend.start(RunRequest("python", "import time\ntime.sleep(5)"))
    try:
        info = await backend.docker.containers.container(run._process.id).show()  # type: ignore[attr-defined]
    finally:
        await run.close()
    host = info["HostConfig"]
    assert info["Config"]["Labels"]["execstream.managed"] == "true"
    assert info["Config"]["User"] == "10001:10001"
    assert host["Runtime"] == backend.runtime
    assert host["NetworkMode"] == "none"
    assert host["ReadonlyRootfs"] is True
    assert host["CapDrop"] == ["ALL"]
    assert host["SecurityOpt"] == ["no-new-privileges"]
    assert host["Memory"] == 128 * 1024 * 1024
    assert host["MemorySwap"] == host["Memory"]
    assert host["NanoCpus"] == 500_000_000
    # Under gVisor the host's count includes its own kernel's threads (RUNSC_TASKS).
    assert host["PidsLimit"] == 64 + (RUNSC_TASKS if backend.runtime == "runsc" else 0)
    assert host["ShmSize"] == 1024 * 1024
    assert "/tmp" in host["Tmpfs"]
    assert {u["Name"] for u in host["Ulimits"]} >= {"nofile", "fsize"}


# Control -----------------------------------------------------------------------------------


@pytest.mark.parametrize("signal", ["SIGINT", "SIGTERM", "SIGKILL"])
async def test_signals_reach_the_program(backend: DockerBackend, signal: str) -> None:
    run = await backend.start(
        RunRequest(
            "python", "import time\nprint('ready', flush=True)\nwhile True:\n    time.sleep(0.05)"
        )
    )
    await read_until(run, b"ready\n")
    await run.signal(signal)
    done = await collect(run)
    assert done.result.status is Status.KILLED
    assert done.result.signal == signal
    assert done.result.exit_code is None
    if signal == "SIGINT":
        assert b"KeyboardInterrupt" in done.stderr


async def test_a_handled_signal_lets_the_program_finish(backend: DockerBackend) -> None:
    run = await backend.start(
        RunRequest(
            "javascript",
            "process.on('SIGINT', () => { console.log('bye'); process.exit(0); });\n"
            "console.log('ready'); setInterval(() => {}, 1000);",
        )
    )
    await read_until(run, b"ready\n")
    await run.signal("SIGINT")
    done = await collect(run)
    assert done.stdout == b"bye\n"
    assert done.result.status is Status.SUCCESS


async def test_a_program_not_reading_stdin_cannot_block_a_stop(backend: DockerBackend) -> None:
    run = await backend.start(
        RunRequest("python", "import time\nprint('up', flush=True)\ntime.sleep(30)")
    )
    await read_until(run, b"up\n")
    with pytest.raises(StdinBacklog):
        for _ in range(10):
            await run.write_stdin(b"x" * 100_000)  # nobody reads it: it piles up, then is refused
    started = time.monotonic()
    await run.signal("SIGINT")
    result = (await collect(run)).result
    assert result.status is Status.KILLED
    assert time.monotonic() - started < 5


async def test_a_signal_that_lands_before_the_program_runs_still_stops_it(
    backend: DockerBackend,
) -> None:
    run = await backend.start(RunRequest("python", "import time\ntime.sleep(30)"))
    await run.signal("SIGINT")  # at once: it may hit the interpreter before user code runs
    result = (await collect(run)).result
    assert result.status is Status.KILLED


async def test_kill(backend: DockerBackend) -> None:
    run = await backend.start(RunRequest("python", "import time\ntime.sleep(60)"))
    await asyncio.sleep(0.2)
    await run.kill()
    result = (await collect(run)).result
    assert result.status is Status.KILLED
    assert result.execution_time < 5


async def test_container_is_removed_after_each_run(backend: DockerBackend) -> None:
    run = await backend.start(RunRequest("python", "print(1)"))
    container_id = run._process.id  # type: ignore[attr-defined]
    assert container_id in await managed_containers()
    await collect(run)
    assert await wait_gone(container_id)


async def test_close_mid_run_removes_the_container(backend: DockerBackend) -> None:
    run = await backend.start(RunRequest("python", "import time\ntime.sleep(60)"))
    container_id = run._process.id  # type: ignore[attr-defined]
    await run.close()
    assert container_id not in await managed_containers()
    with pytest.raises(aiodocker.DockerError):
        await backend.docker.containers.container(container_id).show()


# Refusals ----------------------------------------------------------------------------------


async def pool_settled(backend: DockerBackend) -> None:
    """Wait until the warm pool is full and no run of an earlier test is still being removed."""
    async with asyncio.timeout(30):
        while backend.live or any(
            backend.pool.idle(lang) < backend.pool.size for lang in LANGUAGES.values()
        ):
            await asyncio.sleep(0.05)


async def test_oversize_code_is_refused_before_any_container(backend: DockerBackend) -> None:
    await pool_settled(backend)
    before = set(await managed_containers())
    with pytest.raises(CodeTooLarge) as refused:
        await backend.start(RunRequest("python", "#" * 51_201))
    assert "51201" in str(refused.value) and "51200" in str(refused.value)
    assert set(await managed_containers()) <= before


async def test_code_at_the_limit_is_accepted(backend: DockerBackend) -> None:
    source = "print('ok')\n" + "#" * (51_200 - len("print('ok')\n"))
    done = await run_to_end(backend, "python", source)
    assert done.stdout == b"ok\n"


async def test_unknown_language_names_the_supported_ones(backend: DockerBackend) -> None:
    with pytest.raises(UnknownLanguage) as refused:
        await backend.start(RunRequest("cobol", "DISPLAY 'HI'."))
    assert "python" in str(refused.value) and "typescript" in str(refused.value)
