"""Input of any size arrives whole (flow control), and a socket never outlives its token.

End to end: a real server process, real containers, the real ``execstream run`` command.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import jwt
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from client import ExecClient
from server.auth import ALGORITHM, SECRET_FILE
from server.protocol import ExitMessage, OutputMessage, Started
from tests.server import ServerProcess
from tests.test_ws import frames_until_exit, next_frame, open_socket, run, stdout_of

pytestmark = pytest.mark.docker

MB = 1024 * 1024
COUNT = "import sys\nprint(len(sys.stdin.buffer.read()))\n"


def test_twenty_megabytes_piped_through_execstream_run(
    server: ServerProcess, user, tmp_path: Path
) -> None:
    program = tmp_path / "count.py"
    program.write_text(COUNT)
    line = b"0123456789abcdef" * 4 + b"\n"  # 65 bytes, then cut to exactly 20 MiB
    data = (line * (20 * MB // len(line) + 1))[: 20 * MB]
    (tmp_path / "input.txt").write_bytes(data)
    began = time.monotonic()
    with open(tmp_path / "input.txt", "rb") as stdin:
        done = subprocess.run(
            [sys.executable, "-m", "server.cli", "run", str(program), "--server", server.url],
            env={**os.environ, "EXECSTREAM_TOKEN": user[1]},
            stdin=stdin,
            capture_output=True,
            timeout=120,
        )
    seconds = time.monotonic() - began
    assert (done.stdout, done.returncode) == (b"20971520\n", 0), done.stderr
    assert done.stderr == b""
    print(f"\n20 MiB through execstream run: {seconds:.2f} s, {20 / seconds:.1f} MiB/s")


def test_ctrl_c_gets_through_while_piped_input_waits(
    server: ServerProcess, user, tmp_path: Path
) -> None:
    program = tmp_path / "sleepy.py"
    program.write_text(
        "import sys, time\nsys.stdin.read(10)\nprint('reading', flush=True)\ntime.sleep(60)\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "server.cli", "run", str(program), "--server", server.url],
        env={**os.environ, "EXECSTREAM_TOKEN": user[1]},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdin is not None and process.stdout is not None

    def pipe_in() -> None:  # 20 MiB that the program will never read
        with contextlib.suppress(BrokenPipeError):
            for _ in range(20):
                process.stdin.write(b"y" * MB)  # type: ignore[union-attr]
            process.stdin.close()  # type: ignore[union-attr]

    threading.Thread(target=pipe_in, daemon=True).start()
    assert process.stdout.readline() == b"reading\n"
    time.sleep(0.5)  # the window is full by now
    interrupted_at = time.monotonic()
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=30)
    waited = time.monotonic() - interrupted_at
    assert b"KeyboardInterrupt" in err
    assert process.returncode == 128 + signal.SIGINT
    assert waited < 5, f"Ctrl-C took {waited:.1f} s to stop the program"


async def test_the_client_streams_megabytes_to_a_slow_reader(server: ServerProcess, user) -> None:
    slow = (
        "import sys, time\n"
        "total = 0\n"
        "while chunk := sys.stdin.buffer.read1(4096):\n"
        "    total += len(chunk)\n"
        "    if total % (256 * 1024) < 4096:\n"
        "        time.sleep(0.05)\n"
        "print(total)\n"
    )
    text = "é" * (2 * MB) + "x" * MB  # 5 MiB of UTF-8, twenty windows and more
    async with ExecClient(server.url, user[1]) as c:
        result = await c.run("python", slow, stdin=text)
    assert result.stdout == f"{5 * MB}\n", result.stderr
    assert result.status == "success"


async def test_a_stop_gets_through_while_input_is_pending(server: ServerProcess, user) -> None:
    sleepy = "import sys, time\nsys.stdin.read(10)\nprint('reading', flush=True)\ntime.sleep(60)\n"
    async with ExecClient(server.url, user[1]) as c:
        events = []
        stopped_at = 0.0
        async for event in c.stream("python", sleepy, stdin="z" * (8 * MB), timeout=30):
            events.append(event)
            if isinstance(event, OutputMessage) and not stopped_at:
                await asyncio.sleep(0.5)  # the window is full by now, megabytes wait
                stopped_at = time.monotonic()
                await c.send_signal("SIGINT")
        waited = time.monotonic() - stopped_at
    exit = events[-1]
    assert isinstance(exit, ExitMessage)
    assert (exit.status, exit.signal) == ("killed", "SIGINT")
    assert waited < 5, f"the Stop took {waited:.1f} s to take effect"
    assert isinstance(events[0], Started) and events[0].stdin_window == 256 * 1024


async def test_acks_count_what_the_program_took(server: ServerProcess, user) -> None:
    async with await open_socket(server, user[1]) as ws:
        await run(ws, COUNT)
        started = await next_frame(ws)
        assert started["type"] == "started" and started["stdin_window"] == 256 * 1024
        for data in ("héllo\n", "wörld\n", "!"):
            await ws.send(json.dumps({"type": "stdin", "data": data}))
        acks = []
        while not acks or acks[-1] < 15:
            frame = await next_frame(ws)
            assert frame["type"] == "stdin_ack", frame
            acks.append(frame["bytes"])
        await ws.send(json.dumps({"type": "eof"}))
        frames = await frames_until_exit(ws)
    assert acks == sorted(acks) and acks[-1] == 15  # running totals of UTF-8 bytes
    assert stdout_of(frames) == "15\n"
    assert [f["type"] for f in frames][-1] == "exit"


async def test_a_client_ignoring_the_window_is_refused_and_goes_on(
    server: ServerProcess, user
) -> None:
    async with await open_socket(server, user[1]) as ws:
        await run(ws, "import time\nprint('busy', flush=True)\ntime.sleep(30)")
        assert (await next_frame(ws))["type"] == "started"
        for _ in range(12):  # 1.2 MB at once, never waiting for an ack
            await ws.send(json.dumps({"type": "stdin", "data": "x" * 100_000}))
        await ws.send(json.dumps({"type": "signal", "signal": "SIGINT"}))
        frames = await frames_until_exit(ws, timeout=10)
        assert frames[-1]["status"] == "killed"
        errors = [f for f in frames if f["type"] == "error"]
        assert errors and {e["code"] for e in errors} == {"stdin_backlog"}
        await run(ws, "print(input())", stdin="still here")
        again = await frames_until_exit(ws)
    assert stdout_of(again) == "still here\n"
    assert again[-1]["status"] == "success"


async def test_half_a_surrogate_pair_is_refused_by_name(server: ServerProcess, user) -> None:
    async with await open_socket(server, user[1]) as ws:
        await run(ws, "print(input())")
        assert (await next_frame(ws))["type"] == "started"
        await ws.send('{"type": "stdin", "data": "\\ud800\\n"}')
        error = await next_frame(ws)
        assert (error["type"], error["code"]) == ("error", "invalid_message")
        assert "data" in error["message"] and "surrogate" in error["message"]
        await ws.send(json.dumps({"type": "stdin", "data": "fine\n"}))
        frames = await frames_until_exit(ws)
    assert stdout_of(frames) == "fine\n"


def test_rest_stdin_within_its_limit_arrives_whole(server: ServerProcess, user) -> None:
    data = ("ü" * 1000 + "\n") * 32  # 64,032 bytes: just under the 64 KB limit
    response = httpx.post(
        f"{server.url}/api/v1/code/execute",
        headers={"Authorization": f"Bearer {user[1]}"},
        json={"language": "python", "code": COUNT, "stdin": data},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    assert response.json()["output"] == f"{len(data.encode())}\n"


# The token, checked again at every run -----------------------------------------------------


def short_token(server: ServerProcess, token: str, seconds: float) -> str:
    """The user's token again, expiring in ``seconds``: signed with the server's own secret."""
    secret = (server.data_dir / SECRET_FILE).read_text().strip()
    claims = jwt.decode(token, secret, algorithms=[ALGORITHM])
    now = datetime.now(UTC)
    claims |= {"iat": now, "exp": now + timedelta(seconds=seconds)}
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


async def expect_refused_run(ws, reason: str) -> None:
    await run(ws, "print('must not run')")
    frame = await next_frame(ws)
    assert (frame["type"], frame["code"]) == ("error", "unauthorized"), frame
    with pytest.raises(ConnectionClosed) as closed:
        await next_frame(ws)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1008
    assert reason in closed.value.rcvd.reason


async def test_an_expired_token_cannot_run_on_an_open_socket(server: ServerProcess, user) -> None:
    token = short_token(server, user[1], seconds=3)
    async with await open_socket(server, token) as ws:
        await run(ws, "print('in time')")
        assert stdout_of(await frames_until_exit(ws)) == "in time\n"
        await asyncio.sleep(4)
        await expect_refused_run(ws, "expired")


async def test_a_deleted_user_cannot_run_on_an_open_socket(server: ServerProcess) -> None:
    username, token = server.new_user()
    async with connect(server.ws_url + f"?token={token}") as ws:
        await run(ws, "print('before')")
        assert stdout_of(await frames_until_exit(ws)) == "before\n"
        with sqlite3.connect(server.data_dir / "execstream.db") as db:
            db.execute("DELETE FROM users WHERE username = ?", (username,))
        await expect_refused_run(ws, "does not exist")


def test_limits_are_public_and_as_configured(server: ServerProcess) -> None:
    response = httpx.get(f"{server.url}/api/v1/limits")  # no token
    assert response.status_code == 200
    assert response.json() == {
        "output_bytes": 10240,
        "code_bytes": 51200,
        "stdin_bytes": 65536,
        "stdin_window": 262144,
        "max_wall_time": 30.0,
        "max_frame_bytes": 131072,
    }
