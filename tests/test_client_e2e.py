"""The Python client and the terminal command against a real server."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from client import ExecClient, ServerError, Unauthorized, login, register
from server.protocol import OutputMessage, Started
from tests.server import ServerProcess

pytestmark = pytest.mark.docker


async def test_register_login_and_run(server: ServerProcess) -> None:
    await register(server.url, "client_user", "client-password")
    token = await login(server.url, "client_user", "client-password")
    async with ExecClient(server.url, token) as c:
        result = await c.run("python", "n = int(input())\nprint(n * 2)", stdin="21\n")
    assert result.stdout == "42\n"
    assert result.status == "success"
    assert result.exit_code == 0
    assert isinstance(result.execution_id, int)


async def test_stream_interactive_input_and_stop(server: ServerProcess, user) -> None:
    async with ExecClient(server.url, user[1]) as c:
        seen = ""
        events = []
        async for event in c.stream("python", "n = input('N? ')\nprint('got', n)"):
            events.append(event)
            if isinstance(event, OutputMessage):
                seen += event.data
                if seen == "N? ":
                    await c.send_stdin("7\n")
        assert isinstance(events[0], Started)
        assert seen == "N? got 7\n"

        async def stop_when_running() -> None:
            await asyncio.sleep(0.5)
            await c.send_signal("SIGINT")

        stopper = asyncio.create_task(stop_when_running())
        stopped = await c.run("javascript", "while (true) {}", timeout=20)
        await stopper
    assert stopped.status == "killed"
    assert stopped.signal == "SIGINT"
    assert stopped.execution_time < 10


async def test_errors_are_typed_and_the_client_goes_on(server: ServerProcess, user) -> None:
    async with ExecClient(server.url, user[1]) as c:
        with pytest.raises(ServerError) as refused:
            await c.run("cobol", "x")
        assert refused.value.code == "unknown_language"
        assert (await c.run("python", "print('ok')")).stdout == "ok\n"
    with pytest.raises(Unauthorized):
        async with ExecClient(server.url, "bad-token"):
            pass


def terminal(server: ServerProcess, token: str, *args: str, **kwargs) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "server.cli", "run", *args, "--server", server.url],
        env={**os.environ, "EXECSTREAM_TOKEN": token},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        **kwargs,
    )


def test_terminal_command_pipes_stdin_and_returns_the_exit_code(
    server: ServerProcess, user, tmp_path: Path
) -> None:
    program = tmp_path / "add.py"
    program.write_text("import sys\na, b = map(int, input().split())\nprint(a + b)\nsys.exit(3)\n")
    process = terminal(server, user[1], str(program))
    out, err = process.communicate(b"20 22\n", timeout=60)
    assert out == b"42\n", err
    assert process.returncode == 3


def test_terminal_command_guesses_the_language(server: ServerProcess, user, tmp_path: Path) -> None:
    program = tmp_path / "hello.ts"
    program.write_text("const who: string = 'ts';\nconsole.log(`hi ${who}`);\n")
    process = terminal(server, user[1], str(program))
    out, _ = process.communicate(b"", timeout=60)
    assert out == b"hi ts\n"
    assert process.returncode == 0


def test_ctrl_c_in_the_terminal_reaches_the_program(
    server: ServerProcess, user, tmp_path: Path
) -> None:
    program = tmp_path / "loop.py"
    program.write_text("print('looping', flush=True)\nwhile True:\n    pass\n")
    process = terminal(server, user[1], str(program))
    assert process.stdout is not None
    assert process.stdout.readline() == b"looping\n"
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=30)
    assert b"KeyboardInterrupt" in err
    assert process.returncode == 128 + signal.SIGINT
