"""The client against fake servers that play scripted frames: no Docker, no real server."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import sys
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from pathlib import Path
from typing import Any, Literal

import pytest
from pydantic import BaseModel
from websockets.asyncio.server import ServerConnection, serve
from websockets.http11 import Request, Response

from client import (
    ApiError,
    ClientError,
    ConnectFailed,
    ConnectionLost,
    ExecClient,
    ServerError,
    Unauthorized,
    login,
    register,
    terminal,
    ws_url,
)
from sandbox import Status
from server.protocol import (
    ErrorMessage,
    ExitMessage,
    LimitMessage,
    OutputMessage,
    Started,
    StdinAck,
)

ROOT = Path(__file__).resolve().parent.parent
LANGUAGES = [
    {"id": "python", "name": "Python", "version": "3.11", "extension": ".py", "example": ""},
    {"id": "javascript", "name": "JS", "version": "18", "extension": ".js", "example": ""},
    {"id": "typescript", "name": "TS", "version": "0.17", "extension": ".ts", "example": ""},
]


# A fake execstream -----------------------------------------------------------------------


class Peer:
    """The server's end of one socket, as a script sees it."""

    def __init__(self, websocket: ServerConnection, frames: list[dict[str, Any]]) -> None:
        self.websocket = websocket
        self.frames = frames

    async def expect(self, kind: str) -> dict[str, Any]:
        return await self.expect_one_of(kind)

    async def expect_one_of(self, *kinds: str) -> dict[str, Any]:
        frame = json.loads(await self.websocket.recv())
        self.frames.append(frame)
        assert frame["type"] in kinds, frame
        return dict(frame)

    async def send(self, *messages: BaseModel) -> None:
        for message in messages:
            await self.websocket.send(message.model_dump_json())


Script = Callable[[Peer], Awaitable[None]]


class FakeServer:
    """Plays ``script`` on every socket, serves the language list, records what arrives."""

    def __init__(self, script: Script, *, refuse: int | None = None) -> None:
        self.script = script
        self.refuse = refuse
        self.frames: list[dict[str, Any]] = []
        self.requests: list[Request] = []

    async def __aenter__(self) -> FakeServer:
        self._server = await serve(self._play, "127.0.0.1", 0, process_request=self._process)
        port = next(iter(self._server.sockets)).getsockname()[1]
        self.base = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._server.close()
        await self._server.wait_closed()

    def _process(self, connection: ServerConnection, request: Request) -> Response | None:
        self.requests.append(request)
        if request.path == "/api/v1/code/languages":
            return connection.respond(HTTPStatus.OK, json.dumps(LANGUAGES))
        if self.refuse is not None:
            return connection.respond(self.refuse, "refused\n")
        return None

    async def _play(self, websocket: ServerConnection) -> None:
        await self.script(Peer(websocket, self.frames))


def started(run_id: str = "r1", window: int = 256 * 1024) -> Started:
    return Started(run_id=run_id, language="python", version="3.11.2", stdin_window=window)


def out(data: str, stream: Literal["stdout", "stderr"] = "stdout") -> OutputMessage:
    return OutputMessage(stream=stream, data=data)


def exited(status: str = "success", exit_code: int | None = 0, **fields: Any) -> ExitMessage:
    values: dict[str, Any] = {
        "run_id": "r1",
        "status": status,
        "exit_code": exit_code,
        "signal": None,
        "execution_time": 0.25,
        "output_truncated": False,
        "execution_id": 42,
    }
    return ExitMessage.model_validate(values | fields)


async def hello(peer: Peer) -> None:
    """Any number of runs, each: started, some stdout and stderr, success."""
    while True:
        await peer.expect("run")
        await peer.send(started(), out("Hello, "), out("oops\n", "stderr"), out("World\n"))
        await peer.send(exited())


async def read_all_input(peer: Peer, window: int) -> str:
    """Play a program that reads its input slowly, checking the client keeps to ``window``."""
    taken, received = 0, ""
    while True:
        frame = await peer.expect_one_of("stdin", "eof")
        if frame["type"] == "eof":
            return received
        received += frame["data"]
        in_flight = len(received.encode()) - taken
        assert in_flight <= window, f"{in_flight} bytes in flight, window {window}"
        await asyncio.sleep(0.001)
        taken = len(received.encode())
        await peer.send(StdinAck(bytes=taken))


# The socket ------------------------------------------------------------------------------


async def test_stream_yields_typed_events_in_order() -> None:
    async with FakeServer(hello) as server, ExecClient(server.base, "tok") as client:
        events = [event async for event in client.stream("python", "print('hi')")]

    assert [type(event) for event in events] == [
        Started,
        OutputMessage,
        OutputMessage,
        OutputMessage,
        ExitMessage,
    ]
    assert [event.data for event in events if isinstance(event, OutputMessage)] == [
        "Hello, ",
        "oops\n",
        "World\n",
    ]
    assert server.frames == [
        {"type": "run", "language": "python", "code": "print('hi')", "save_history": True}
    ]


async def test_run_collects_the_whole_result() -> None:
    async def hello_with_input(peer: Peer) -> None:
        await peer.expect("run")
        await peer.send(started(), out("Hello, "), out("oops\n", "stderr"))
        assert await read_all_input(peer, 256 * 1024) == "3\n"
        await peer.send(out("World\n"), exited())
        await hello(peer)

    async with FakeServer(hello_with_input) as server, ExecClient(server.base, "tok") as client:
        result = await client.run(
            "python", "x", stdin="3\n", timeout=5, project_id=7, save_history=False
        )
        again = await client.run("python", "y")  # the socket takes another run

    assert result.stdout == "Hello, World\n"
    assert result.stderr == "oops\n"
    assert result.status is Status.SUCCESS
    assert (result.exit_code, result.signal, result.execution_id) == (0, None, 42)
    assert result.run_id == "r1"
    assert result.execution_time == 0.25
    assert result.output_truncated is False
    assert result.started is not None and result.started.version == "3.11.2"
    assert result.limit is None
    assert len(result.events) == 5
    assert again.stdout == "Hello, World\n"
    assert server.frames[:3] == [
        {
            "type": "run",
            "language": "python",
            "code": "x",
            "timeout": 5,
            "project_id": 7,
            "save_history": False,
        },
        {"type": "stdin", "data": "3\n"},  # sent as the program reads, whatever its size
        {"type": "eof"},
    ]


async def test_input_keeps_within_the_window_the_server_announces() -> None:
    text = "é" * 5000 + "\x01" * 3000 + "z"  # 13,001 bytes of UTF-8
    window = 1000

    async def slow_reader(peer: Peer) -> None:
        await peer.expect("run")
        await peer.send(started(window=window))
        received = await read_all_input(peer, window)
        await peer.send(out(f"{len(received.encode())}\n"), exited())

    async with FakeServer(slow_reader) as server, ExecClient(server.base, "tok") as client:
        result = await client.run("python", "x", stdin=text)

    assert result.stdout == "13001\n"
    frames = [frame for frame in server.frames if frame["type"] == "stdin"]
    assert "".join(frame["data"] for frame in frames) == text
    assert len(frames) > 13  # the window, not the frame limit, bounded each one


async def test_a_signal_never_waits_for_the_window() -> None:
    async def not_reading(peer: Peer) -> None:
        await peer.expect("run")
        await peer.send(started(window=100))
        received = ""
        while len(received) < 100:  # the window is full then, and no ack comes
            received += (await peer.expect("stdin"))["data"]
        await peer.send(out("full\n"))
        await peer.expect("signal")
        await peer.send(exited("killed", None, signal="SIGINT"))

    async with FakeServer(not_reading) as server, ExecClient(server.base, "tok") as client:
        events = []
        async for event in client.stream("python", "x", stdin="y" * 10_000):
            events.append(event)
            if isinstance(event, OutputMessage):  # sent while the input waits for room
                await client.send_signal("SIGINT")

    assert isinstance(events[-1], ExitMessage) and events[-1].signal == "SIGINT"
    assert [frame["type"] for frame in server.frames][-2:] == ["stdin", "signal"]
    assert sum(len(frame.get("data", "")) for frame in server.frames[1:]) == 100


async def test_run_keeps_the_limit_message() -> None:
    async def flood(peer: Peer) -> None:
        await peer.expect("run")
        limit = LimitMessage(limit="output", message="output passed 10240 bytes")
        await peer.send(started(), out("y\n" * 10), limit)
        await peer.send(exited("output_limit", None, signal="SIGKILL", output_truncated=True))

    async with FakeServer(flood) as server, ExecClient(server.base, "tok") as client:
        result = await client.run("python", "while True: print('y')")

    assert result.limit is not None and result.limit.message == "output passed 10240 bytes"
    assert result.status is Status.OUTPUT_LIMIT
    assert result.output_truncated


async def test_error_frame_raises_server_error_and_the_socket_goes_on() -> None:
    async def refuse_then_run(peer: Peer) -> None:
        await peer.expect("run")
        await peer.send(ErrorMessage(code="unknown_language", message="try python"))
        await hello(peer)

    async with FakeServer(refuse_then_run) as server, ExecClient(server.base, "tok") as client:
        with pytest.raises(ServerError) as caught:
            await client.run("cobol", "DISPLAY 'HI'.")
        result = await client.run("python", "print()")

    assert (caught.value.code, caught.value.message) == ("unknown_language", "try python")
    assert result.status is Status.SUCCESS


async def test_stale_no_active_run_errors_are_skipped() -> None:
    async def late_answer(peer: Peer) -> None:
        await peer.expect("run")
        stale = ErrorMessage(code="no_active_run", message="no run is active")
        await peer.send(stale, started(), stale, out("ok\n"), exited())

    async with FakeServer(late_answer) as server, ExecClient(server.base, "tok") as client:
        result = await client.run("python", "print('ok')")

    assert result.stdout == "ok\n"


async def test_stdin_eof_and_signal_frames() -> None:
    async def echo(peer: Peer) -> None:
        await peer.expect("run")
        await peer.send(started(), out("Name? "))
        typed = await peer.expect("stdin")
        await peer.send(out(f"Hello, {typed['data']}"))
        await peer.expect("eof")
        await peer.expect("signal")
        await peer.send(exited("killed", None, signal="SIGINT"))

    async with FakeServer(echo) as server, ExecClient(server.base, "tok") as client:
        seen = []
        async for event in client.stream("python", "input()"):
            seen.append(event)
            if isinstance(event, Started):
                # From another task, as a terminal or a test would.
                await asyncio.create_task(client.send_stdin("Ada\n"))
            elif isinstance(event, OutputMessage) and event.data.startswith("Hello"):
                await client.send_eof()
                await client.send_signal("SIGINT")

    assert server.frames[1:] == [
        {"type": "stdin", "data": "Ada\n"},
        {"type": "eof"},
        {"type": "signal", "signal": "SIGINT"},
    ]
    assert isinstance(seen[-1], ExitMessage) and seen[-1].signal == "SIGINT"


async def test_long_stdin_is_split_into_frames_the_server_accepts() -> None:
    text = "\x01é" * 20_000  # 6 bytes of JSON each, then 2 bytes of UTF-8

    async def swallow(peer: Peer) -> None:
        await peer.expect("run")
        await peer.send(started())
        received = ""
        while len(received) < len(text):
            received += (await peer.expect("stdin"))["data"]
        await peer.send(exited())

    async with FakeServer(swallow) as server, ExecClient(server.base, "tok") as client:
        async for event in client.stream("python", "x"):
            if isinstance(event, Started):
                await client.send_stdin(text)

    assert "".join(frame["data"] for frame in server.frames[1:]) == text
    assert max(len(json.dumps(frame).encode()) for frame in server.frames) < 128 * 1024


async def test_raw_frames() -> None:
    async def answer(peer: Peer) -> None:
        await peer.expect("nonsense")
        await peer.send(ErrorMessage(code="unknown_type", message="no"))

    async with FakeServer(answer) as server, ExecClient(server.base, "tok") as client:
        await client.send_json({"type": "nonsense"})
        assert await client.receive() == ErrorMessage(code="unknown_type", message="no")


async def test_a_stream_left_early_keeps_its_run() -> None:
    async def slow(peer: Peer) -> None:
        await peer.expect("run")
        await peer.send(started())
        await peer.websocket.wait_closed()

    async with FakeServer(slow) as server, ExecClient(server.base, "tok") as client:
        async for _ in client.stream("python", "input()"):
            break
        with pytest.raises(ClientError) as caught:
            await anext(aiter(client.stream("python", "x")))

    assert caught.value.code == "run_active"


# Connecting and losing the connection ----------------------------------------------------


async def test_token_goes_in_the_authorization_header() -> None:
    async with FakeServer(hello) as server:
        async with ExecClient(server.base, "s3cret") as client:
            await client.run("python", "x")
        async with ExecClient(server.base, "s3cret", token_in_query=True) as client:
            await client.run("python", "x")

    header, query = server.requests
    assert header.path == "/api/v1/code/ws"
    assert header.headers["Authorization"] == "Bearer s3cret"
    assert query.path == "/api/v1/code/ws?token=s3cret"
    assert "Authorization" not in query.headers


async def test_refused_handshake_raises_unauthorized() -> None:
    async with FakeServer(hello, refuse=403) as server:
        with pytest.raises(Unauthorized) as caught:
            await ExecClient(server.base, "expired").connect()

    assert (caught.value.status, caught.value.code) == (403, "unauthorized")


async def test_nothing_listening_raises_connect_failed() -> None:
    with pytest.raises(ConnectFailed) as caught:
        await ExecClient(f"http://127.0.0.1:{free_port()}", "tok").connect()

    assert caught.value.code == "connect_failed"


async def test_connection_lost_mid_run() -> None:
    async def hang_up(peer: Peer) -> None:
        await peer.expect("run")
        await peer.send(started(), out("partial"))
        await peer.websocket.close(1011, "crashed")

    async with FakeServer(hang_up) as server, ExecClient(server.base, "tok") as client:
        events = []
        with pytest.raises(ConnectionLost) as caught:
            async for event in client.stream("python", "x"):
                events.append(event)
        with pytest.raises(ConnectionLost):
            await client.send_stdin("too late\n")

    assert [type(event) for event in events] == [Started, OutputMessage]
    assert caught.value.close_code == 1011


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://127.0.0.1:8000", "ws://127.0.0.1:8000/api/v1/code/ws"),
        ("https://example.org/exec/", "wss://example.org/exec/api/v1/code/ws"),
        ("ws://h:1/api/v1/code/ws", "ws://h:1/api/v1/code/ws"),
    ],
)
def test_ws_url(url: str, expected: str) -> None:
    assert ws_url(url) == expected


def test_ws_url_refuses_other_schemes() -> None:
    with pytest.raises(ClientError):
        ws_url("ftp://example.org")


# REST ------------------------------------------------------------------------------------


class FakeHttp:
    """Answers every request with the next scripted ``(status, body)``; records the requests."""

    def __init__(self, *answers: tuple[int, Any]) -> None:
        self.answers = list(answers)
        self.requests: list[tuple[str, dict[str, str], bytes]] = []

    async def __aenter__(self) -> FakeHttp:
        self._server = await asyncio.start_server(self._answer, "127.0.0.1", 0)
        self.base = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._server.close()
        await self._server.wait_closed()

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode().split("\r\n")
        headers = dict(line.lower().split(": ", 1) for line in head[1:] if line)
        body = await reader.readexactly(int(headers.get("content-length", 0)))
        self.requests.append((head[0], headers, body))
        status, payload = self.answers.pop(0)
        data = json.dumps(payload).encode()
        writer.write(
            f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode()
            + data
        )
        await writer.drain()
        writer.close()


async def test_login_posts_the_form_and_returns_the_token() -> None:
    token = {"access_token": "jwt", "token_type": "bearer", "expires_in": 86400}
    async with FakeHttp((200, token)) as http:
        assert await login(http.base, "ada", "p@ss word") == "jwt"

    line, headers, body = http.requests[0]
    assert line.startswith("POST /api/v1/auth/token ")
    assert headers["content-type"] == "application/x-www-form-urlencoded"
    assert body == b"username=ada&password=p%40ss+word"


async def test_register_and_its_errors() -> None:
    user = {"id": 1, "username": "ada", "created_at": "2025-01-01T00:00:00"}
    taken = {"detail": "username taken", "code": "username_taken"}
    async with FakeHttp((201, user), (409, taken)) as http:
        assert await register(http.base, "ada", "longenough") == user
        with pytest.raises(ApiError) as caught:
            await register(http.base, "ada", "longenough")

    assert json.loads(http.requests[0][2]) == {"username": "ada", "password": "longenough"}
    assert (caught.value.status, caught.value.code) == (409, "username_taken")


async def test_wrong_password_raises_unauthorized() -> None:
    wrong = {"detail": "incorrect username or password", "code": "invalid_credentials"}
    async with FakeHttp((401, wrong)) as http:
        with pytest.raises(Unauthorized) as caught:
            await login(http.base, "ada", "nope")

    assert caught.value.message == "incorrect username or password"


# The terminal command --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("file", "language"),
    [
        ("hello.py", "python"),
        ("dir.v2/Main.PY", "python"),
        ("app.js", "javascript"),
        ("app.mjs", "javascript"),
        ("app.cjs", "javascript"),
        ("app.ts", "typescript"),
        ("notes.rb", None),
        ("Makefile", None),
    ],
)
def test_guess_language(file: str, language: str | None) -> None:
    assert terminal.guess_language(file, LANGUAGES) == language


@pytest.mark.parametrize(
    ("exit", "code"),
    [
        (exited(), 0),
        (exited("error", 3), 3),
        (exited("killed", None, signal="SIGINT"), 130),
        (exited("memory_limit", None, signal="SIGKILL"), 137),
        (exited("timeout", None, signal="SIGKILL"), 124),
        (exited("internal_error", None), 1),
    ],
)
def test_exit_status(exit: ExitMessage, code: int) -> None:
    assert terminal.exit_status(exit) == code


def arguments(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    terminal.add_arguments(parser)
    return parser.parse_args(argv)


async def test_run_file_reports_errors_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("EXECSTREAM_TOKEN", raising=False)
    program = tmp_path / "prog.rb"
    program.write_text("puts 1\n")

    async def unknown(peer: Peer) -> None:
        await peer.expect("run")
        await peer.send(ErrorMessage(code="unknown_language", message="unknown language 'ruby'"))

    async with FakeServer(unknown) as server:
        given = ("--server", server.base, "--token", "t")
        assert await terminal.run_file(arguments(str(program), *given)) == 1
        assert "cannot tell the language of" in capsys.readouterr().err
        assert await terminal.run_file(arguments(str(program), *given, "-l", "ruby")) == 1
        assert capsys.readouterr().err == "execstream: unknown language 'ruby'\n"
        assert await terminal.run_file(arguments(str(program), "--server", server.base)) == 1
        assert "no token" in capsys.readouterr().err

    nowhere = ("--server", f"http://127.0.0.1:{free_port()}", "--token", "t")
    assert await terminal.run_file(arguments(str(program), *nowhere, "-l", "python")) == 1
    assert capsys.readouterr().err.startswith("execstream: cannot connect to ws://127.0.0.1:")
    assert await terminal.run_file(arguments(str(program), *nowhere)) == 1
    assert capsys.readouterr().err.startswith("execstream: cannot reach http://127.0.0.1:")
    assert await terminal.run_file(arguments(str(tmp_path / "missing.py"), "--token", "t")) == 1
    assert "cannot read" in capsys.readouterr().err


SNIPPET = """\
import argparse, asyncio, sys
from client import terminal
parser = argparse.ArgumentParser()
terminal.add_arguments(parser)
sys.exit(asyncio.run(terminal.run_file(parser.parse_args())))
"""


async def start_terminal(server: FakeServer, file: Path) -> asyncio.subprocess.Process:
    env = {**os.environ, "EXECSTREAM_TOKEN": "tok", "PYTHONPATH": str(ROOT)}
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        SNIPPET,
        str(file),
        "--server",
        server.base,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=ROOT,
        env=env,
    )


async def test_terminal_pipes_stdin_and_streams_output(tmp_path: Path) -> None:
    async def greet(peer: Peer) -> None:
        await peer.expect("run")
        await peer.send(started(), out("Name? "))
        typed = await peer.expect("stdin")
        await peer.expect("eof")
        await peer.send(out(f"Hello, {typed['data']}"), out("bye\n", "stderr"))
        await peer.send(exited("error", 3))

    program = tmp_path / "greet.py"
    program.write_text("print('Hello,', input('Name? '))\n")
    async with FakeServer(greet) as server:
        process = await start_terminal(server, program)
        stdout, stderr = await asyncio.wait_for(process.communicate(b"Ada\n"), 30)

    assert (stdout, stderr) == (b"Name? Hello, Ada\n", b"bye\n")
    assert process.returncode == 3
    assert server.requests[0].headers["Authorization"] == "Bearer tok"  # the language list
    assert server.frames == [
        {"type": "run", "language": "python", "code": program.read_text(), "save_history": True},
        {"type": "stdin", "data": "Ada\n"},
        {"type": "eof"},
    ]


async def test_terminal_ctrl_c_sends_sigint_then_sigkill(tmp_path: Path) -> None:
    signalled = asyncio.Event()

    async def stubborn(peer: Peer) -> None:
        await peer.expect("run")
        await peer.send(started(), out("ready\n"))
        await peer.expect("signal")
        signalled.set()
        await peer.expect("signal")
        await peer.send(exited("killed", None, signal="SIGKILL"))

    program = tmp_path / "loop.py"
    program.write_text("while True:\n    pass\n")
    async with FakeServer(stubborn) as server:
        process = await start_terminal(server, program)
        assert process.stdout is not None
        assert await asyncio.wait_for(process.stdout.readline(), 30) == b"ready\n"
        process.send_signal(signal.SIGINT)
        await asyncio.wait_for(signalled.wait(), 30)
        process.send_signal(signal.SIGINT)
        _, stderr = await asyncio.wait_for(process.communicate(), 30)

    assert process.returncode == 128 + signal.SIGKILL, stderr
    assert [frame.get("signal") for frame in server.frames[1:]] == ["SIGINT", "SIGKILL"]


def free_port() -> int:
    """A port nothing listens on (for as long as nobody takes it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
