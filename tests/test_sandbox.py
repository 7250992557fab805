"""The sandbox against the real Docker engine: languages, stdin, streaming, limits, isolation."""

from __future__ import annotations

import asyncio
import dataclasses
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
from sandbox.container import RUNSC_TASKS, labels, new_owner_id
from sandbox.docker import DockerBackend, DockerProcess
from sandbox.languages import sandboxes
from server.config import Settings
from tests.conftest import SUITE, managed_containers, wait_gone
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
    # It goes after a pause (sandbox/remover.py): a class's other runs start first.
    assert await wait_gone(container_id, 20)


async def test_a_run_ends_with_its_program_and_leaves_nothing_running(
    backend: DockerBackend,
) -> None:
    # A child in a session of its own, holding stdout open: the run still ends when the
    # program does (init ends the rest, then reports), before its container goes.
    source = code("""
        import subprocess, sys
        subprocess.Popen(["sleep", "300"], start_new_session=True, stdout=sys.stdout)
        print("parent done")
    """)
    run = await backend.start(RunRequest("python", source))
    container = backend.docker.containers.container(run._process.id)  # type: ignore[attr-defined]
    done = await collect(run)
    assert (done.result.status, done.stdout) == (Status.SUCCESS, b"parent done\n")
    assert done.result.execution_time < 5
    # The container waits to be removed, its init alone in it.
    assert (await container.show())["State"]["Running"]
    if backend.runtime == "runsc":
        return  # `docker top` maps gVisor's own pids to the host's: it cannot tell
    listing = await container.top()
    commands = [" ".join(row) for row in listing["Processes"] or []]
    assert len(commands) == 1 and "/opt/execstream/init " in commands[0], commands


async def test_a_program_cannot_end_its_run_with_an_end_frame_of_its_own(
    backend: DockerBackend,
) -> None:
    forged = "\\x1eexecstream:" + "ab" * 16 + ":end:0\\n"
    source = code(f"""
        import sys, time
        sys.stdout.write("{forged}")
        sys.stdout.flush()
        time.sleep(0.5)
        print("still running")
    """)
    done = await run_to_end(backend, "python", source)
    assert done.result.status is Status.SUCCESS
    assert done.stdout == b"\x1eexecstream:" + b"ab" * 16 + b":end:0\nstill running\n"


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
    launchers = sandboxes()  # one language per kind of warm container
    async with asyncio.timeout(30):
        while True:
            idle = [backend.pool.idle(lang) for lang in launchers]
            # Full, and nothing but the idle containers: no earlier run's container is left.
            full = all(backend.pool.idle(lang) >= backend.pool.target(lang) for lang in launchers)
            if full and (await backend.owners())[backend.owner] == sum(idle):
                return
            await asyncio.sleep(0.05)


async def test_oversize_code_is_refused_before_any_container(backend: DockerBackend) -> None:
    await pool_settled(backend)
    before = set(await managed_containers({backend.owner}))
    with pytest.raises(CodeTooLarge) as refused:
        await backend.start(RunRequest("python", "#" * 51_201))
    assert "51201" in str(refused.value) and "51200" in str(refused.value)
    assert set(await managed_containers({backend.owner})) <= before


async def test_code_at_the_limit_is_accepted(backend: DockerBackend) -> None:
    source = "print('ok')\n" + "#" * (51_200 - len("print('ok')\n"))
    done = await run_to_end(backend, "python", source)
    assert done.stdout == b"ok\n"


async def test_unknown_language_names_the_supported_ones(backend: DockerBackend) -> None:
    with pytest.raises(UnknownLanguage) as refused:
        await backend.start(RunRequest("cobol", "DISPLAY 'HI'."))
    assert "python" in str(refused.value) and "typescript" in str(refused.value)


# Characters at the output cap --------------------------------------------------------------


async def test_the_cap_never_cuts_a_character(backend: DockerBackend) -> None:
    # Two streams of multi-byte characters at odd offsets, written in pieces that split them.
    source = code("""
        import os
        out = ("a" + "é€😀" * 4000).encode()
        err = ("bb" + "😀€é" * 4000).encode()
        for i in range(len(out) // 7):
            os.write(1, out[7 * i : 7 * i + 7])
            os.write(2, err[5 * i : 5 * i + 5])
    """)
    done = await run_to_end(backend, "python", source)
    assert done.result.status is Status.OUTPUT_LIMIT
    assert done.result.output_truncated is True
    # Each stream is whole UTF-8 (strict decoding fails on a cut character), within the cap,
    # and loses at most one character's bytes per stream.
    stdout, stderr = done.stdout.decode(), done.stderr.decode()
    assert 10_240 - 2 * 3 <= len(done.stdout) + len(done.stderr) <= 10_240
    assert ("a" + "é€😀" * 4000).startswith(stdout)
    assert ("bb" + "😀€é" * 4000).startswith(stderr)
    # And no chunk starts or ends inside a character: each decodes alone.
    for _, chunk in done.chunks:
        chunk.decode()


async def test_output_that_ends_inside_a_character_still_arrives(backend: DockerBackend) -> None:
    done = await run_to_end(
        backend, "python", "import os\nos.write(1, 'é'.encode()[:1])\nos.write(2, b'\\xff')"
    )
    assert (done.stdout, done.stderr) == (b"\xc3", b"\xff")
    assert done.result.status is Status.SUCCESS


# The watchdog inside the container ---------------------------------------------------------


WATCHDOG_GRACE = 2.0
SLACK = 4.0  # for the engine to report an exit on a loaded machine; never part of a limit


async def unsupervised(
    backend: DockerBackend, source: str, wall_time: float, language: str = "python"
) -> tuple[DockerProcess, asyncio.Task[bytes]]:
    """Start a program the way a server does, then leave it alone: no timer, no kill."""
    lang = LANGUAGES[language]
    process = await backend.prepare(lang)
    await process.begin(backend.header(lang, source, wall_time, process))

    async def output() -> bytes:
        seen = b""
        while (out := await process.read()) is not None:
            seen += out.data
        return seen

    return process, asyncio.create_task(output())


ESCAPES = {
    "busy loop": "while True: pass",
    "kills its parent and PID 1": code("""
        import os, signal
        for sig in (signal.SIGKILL, signal.SIGSTOP):
            os.kill(os.getppid(), sig)
            os.kill(1, sig)
        print("pid 1 still there:", os.path.exists("/proc/1"), flush=True)
        while True: pass
    """),
    "sends PID 1 the start signal and others again": code("""
        import os, signal
        for sig in (signal.SIGUSR1, signal.SIGUSR2, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
            os.kill(1, sig)
        print("signalled", flush=True)
        while True: pass
    """),
    "writes a huge wall time to the deadline pipe": code("""
        import os
        for attempt in (lambda: os.write(3, b"1e9"), lambda: open("/proc/1/fd/3", "w")):
            try:
                attempt()
                print("wrote", flush=True)
            except OSError as exc:
                print("refused", type(exc).__name__, flush=True)
        print("env", os.environ.get("EXECSTREAM_START_FD"), flush=True)
        while True: pass
    """),
    "attaches to PID 1 with ptrace": code("""
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        print("ptrace", libc.ptrace(16, 1, 0, 0), ctypes.get_errno(), flush=True)  # ATTACH
        while True: pass
    """),
    "leaves a detached child behind": code("""
        import os, signal, time
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
                    signal.signal(sig, signal.SIG_IGN)
                while True: pass
            os._exit(0)
        print("forked", flush=True)
        while True: time.sleep(1)
    """),
}


# Node.js may reuse fd 3 once the launcher closed it: whatever the write does, it cannot reach
# init, which closed its end after reading the wall time.
NODE_ESCAPE = code("""
    const fs = require("fs");
    for (const attempt of [() => fs.writeSync(3, "1e9"), () => fs.openSync("/proc/1/fd/3", "w")]) {
      try { attempt(); console.log("wrote"); } catch (err) { console.log("refused", err.code); }
    }
    console.log("env", process.env.EXECSTREAM_START_FD);
    for (;;) {}
""")


async def test_nothing_outlives_its_wall_time_without_a_server(backend: DockerBackend) -> None:
    wall_time = 1.0
    started = time.monotonic()
    runs = await asyncio.gather(
        *(unsupervised(backend, source, wall_time) for source in ESCAPES.values()),
        unsupervised(backend, NODE_ESCAPE, wall_time, "javascript"),
    )
    try:
        async with asyncio.timeout(wall_time + WATCHDOG_GRACE + SLACK):
            exits = await asyncio.gather(*(process.wait() for process, _ in runs))
        elapsed = time.monotonic() - started
        *outputs_in_order, node_output = await asyncio.gather(*(out for _, out in runs))
        outputs = dict(zip(ESCAPES, outputs_in_order, strict=True))
    finally:
        await asyncio.gather(*(process.remove() for process, _ in runs))
    assert elapsed >= wall_time + WATCHDOG_GRACE - 0.5  # the program had its full time
    assert all(exit_.signal == "SIGKILL" for exit_ in exits), exits
    # Each attempt ran, and failed.
    if backend.runtime == "runsc":
        # gVisor does not shield a namespace's init from its own processes: the kill ends the
        # whole sandbox, the program with it, as soon as it lands (docs/security.md); what
        # the program printed meanwhile may or may not get out.
        assert b"pid 1 still there: True\n".startswith(outputs["kills its parent and PID 1"])
    else:
        assert outputs["kills its parent and PID 1"] == b"pid 1 still there: True\n"
    assert outputs["sends PID 1 the start signal and others again"] == b"signalled\n"
    # Both refused (gVisor's /proc answers with another errno than Linux's EACCES).
    wrote = outputs["writes a huge wall time to the deadline pipe"].decode().splitlines()
    assert wrote[0] == "refused OSError" and wrote[1].startswith("refused ")
    assert wrote[2:] == ["env None"]
    assert outputs["attaches to PID 1 with ptrace"] == b"ptrace -1 1\n"  # EPERM
    assert outputs["leaves a detached child behind"] == b"forked\n"
    assert node_output.endswith(b"env undefined\n")


async def test_the_wall_time_a_launcher_reports_is_capped_by_the_server_limit(
    settings: Settings,
) -> None:
    limits = dataclasses.replace(settings.limits, wall_time=1.0)
    backend = DockerBackend(limits, settings.image, owner=new_owner_id(SUITE))
    await backend.open()
    try:
        started = time.monotonic()
        process, _ = await unsupervised(backend, "while True: pass", wall_time=1e9)
        async with asyncio.timeout(1.0 + WATCHDOG_GRACE + SLACK):
            exit_ = await process.wait()
        assert exit_.signal == "SIGKILL"
        assert time.monotonic() - started >= 1.0 + WATCHDOG_GRACE - 0.5
        await process.remove()
    finally:
        await backend.close()


async def test_an_idle_container_ends_after_its_idle_time(settings: Settings) -> None:
    backend = DockerBackend(
        settings.limits, settings.image, owner=new_owner_id(SUITE), idle_seconds=2
    )
    await backend.open()
    try:
        process = await backend.prepare(LANGUAGES["javascript"])
        async with asyncio.timeout(2 + SLACK):
            exit_ = await process.wait()
        assert exit_.signal == "SIGKILL"
        await process.remove()
    finally:
        await backend.close()


@pytest.mark.parametrize("language", ["python", "javascript"])
async def test_an_idle_container_ends_when_its_stdin_closes(
    backend: DockerBackend, language: str
) -> None:
    process = await backend.prepare(LANGUAGES[language])
    try:
        await process.close_stdin()  # what the engine does when the server is gone
        async with asyncio.timeout(SLACK):
            exit_ = await process.wait()
        assert exit_.exit_code == 1  # the launcher: "stdin closed before the program arrived"
    finally:
        await process.remove()


# The image ---------------------------------------------------------------------------------


async def test_the_image_has_no_setuid_or_setgid_file(backend: DockerBackend) -> None:
    # As root, so that no folder is hidden from find.
    config = {
        "Image": backend.image,
        "Entrypoint": ["find", "/", "-xdev", "-perm", "/6000", "-type", "f"],
        "User": "0",
        "Labels": labels(backend.owner),
        "AttachStdout": True,
        "AttachStderr": True,
    }
    container = await backend.docker.containers.run(config=config)
    try:
        assert (await container.wait())["StatusCode"] == 0
        assert await container.log(stdout=True, stderr=True) == []
    finally:
        await container.delete(force=True)
