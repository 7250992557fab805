"""The WebSocket protocol end to end: real uvicorn, real engine, raw ``websockets`` client."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from tests.conftest import containers_running, wait_gone
from tests.server import ServerProcess

pytestmark = pytest.mark.docker


async def open_socket(server: ServerProcess, token: str) -> ClientConnection:
    return await connect(server.ws_url, additional_headers={"Authorization": f"Bearer {token}"})


async def frames_until_exit(ws: ClientConnection, timeout: float = 40) -> list[dict[str, Any]]:
    frames = []
    async with asyncio.timeout(timeout):
        while True:
            frame = json.loads(await ws.recv())
            frames.append(frame)
            if frame["type"] == "exit":
                return frames


async def next_frame(ws: ClientConnection, timeout: float = 10) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        return json.loads(await ws.recv())  # type: ignore[no-any-return]


def stdout_of(frames: list[dict[str, Any]], stream: str = "stdout") -> str:
    return "".join(f["data"] for f in frames if f["type"] == "output" and f["stream"] == stream)


async def run(ws: ClientConnection, code: str, language: str = "python", **fields: Any) -> None:
    await ws.send(json.dumps({"type": "run", "language": language, "code": code, **fields}))


# Frames ------------------------------------------------------------------------------------


async def test_a_run_sends_started_output_and_exit(server: ServerProcess, user) -> None:
    async with await open_socket(server, user[1]) as ws:
        await run(ws, "import sys\nprint('hi')\nprint('oops', file=sys.stderr)")
        frames = await frames_until_exit(ws)
    started, *middle, exit_ = frames
    assert started["type"] == "started"
    assert started["language"] == "python"
    assert started["version"].startswith("3.11.")
    assert started["run_id"] == exit_["run_id"]
    assert stdout_of(frames) == "hi\n"
    assert stdout_of(frames, "stderr") == "oops\n"
    assert {f["type"] for f in middle} == {"output"}
    assert exit_["status"] == "success"
    assert exit_["exit_code"] == 0
    assert exit_["signal"] is None
    assert exit_["output_truncated"] is False
    assert isinstance(exit_["execution_id"], int)
    assert 0 < exit_["execution_time"] < 10


async def test_output_limit_sends_limit_then_exit(server: ServerProcess, user) -> None:
    async with await open_socket(server, user[1]) as ws:
        await run(ws, "while True:\n    print('x' * 99)")
        frames = await frames_until_exit(ws)
    assert len(stdout_of(frames).encode()) == 10_240
    limit = [f for f in frames if f["type"] == "limit"]
    assert len(limit) == 1 and limit[0]["limit"] == "output" and "10240" in limit[0]["message"]
    assert frames[-2]["type"] == "limit"
    assert frames[-1]["status"] == "output_limit"
    assert frames[-1]["output_truncated"] is True


async def test_interactive_input_round_trip(server: ServerProcess, user) -> None:
    async with await open_socket(server, user[1]) as ws:
        await run(ws, 'name = input("Name? ")\nprint(f"Hello, {name}!")')
        assert (await next_frame(ws))["type"] == "started"
        prompt = ""
        while prompt != "Name? ":
            prompt += (await next_frame(ws))["data"]
        await ws.send(json.dumps({"type": "stdin", "data": "Ada\n"}))
        frames = await frames_until_exit(ws)
    assert stdout_of(frames) == "Hello, Ada!\n"
    assert frames[-1]["status"] == "success"


async def test_eof_ends_input_while_output_goes_on(server: ServerProcess, user) -> None:
    async with await open_socket(server, user[1]) as ws:
        await run(ws, "import sys, time\nn = len(sys.stdin.read())\ntime.sleep(0.2)\nprint(n)")
        await ws.send(json.dumps({"type": "stdin", "data": "héllo"}))
        await ws.send(json.dumps({"type": "eof"}))
        frames = await frames_until_exit(ws)
    assert stdout_of(frames) == "5\n"


async def test_stdin_up_front(server: ServerProcess, user) -> None:
    async with await open_socket(server, user[1]) as ws:
        await run(
            ws, "import sys\nprint(sum(int(x) for x in sys.stdin.read().split()))", stdin="1 2 3"
        )
        frames = await frames_until_exit(ws)
    assert stdout_of(frames) == "6\n"


async def test_sigint_stops_a_loop_long_before_the_timeout(server: ServerProcess, user) -> None:
    async with await open_socket(server, user[1]) as ws:
        await run(ws, "print('go', flush=True)\nwhile True:\n    pass", timeout=30)
        assert (await next_frame(ws))["type"] == "started"
        await next_frame(ws)  # the program is running
        sent = time.monotonic()
        await ws.send(json.dumps({"type": "signal", "signal": "SIGINT"}))
        frames = await frames_until_exit(ws)
    assert time.monotonic() - sent < 5
    assert frames[-1]["status"] == "killed"
    assert frames[-1]["signal"] == "SIGINT"
    assert "KeyboardInterrupt" in stdout_of(frames, "stderr")


async def test_two_runs_on_one_socket(server: ServerProcess, user) -> None:
    async with await open_socket(server, user[1]) as ws:
        await run(ws, "print('first')")
        first = await frames_until_exit(ws)
        await run(ws, "console.log('second')", language="javascript")
        second = await frames_until_exit(ws)
    assert stdout_of(first) == "first\n"
    assert stdout_of(second) == "second\n"
    assert first[-1]["run_id"] != second[-1]["run_id"]


async def test_split_multibyte_character_arrives_whole(server: ServerProcess, user) -> None:
    code = (
        "import sys, time\n"
        "sys.stdout.buffer.write('caf'.encode() + 'é'.encode()[:1]); sys.stdout.flush()\n"
        "time.sleep(0.5)\n"
        "sys.stdout.buffer.write('é'.encode()[1:] + b' ok \\xff\\n'); sys.stdout.flush()\n"
    )
    async with await open_socket(server, user[1]) as ws:
        await run(ws, code)
        frames = await frames_until_exit(ws)
    chunks = [f["data"] for f in frames if f["type"] == "output"]
    assert "".join(chunks) == "café ok \ufffd\n"
    assert chunks[0] == "caf", "the first half of é must wait for the second"


# Errors ------------------------------------------------------------------------------------

MALFORMED = [
    ("not json", "invalid_json"),
    ("[1, 2]", "invalid_json"),
    ('{"no": "type"}', "unknown_type"),
    ('{"type": "launch"}', "unknown_type"),
    ('{"type": "run", "language": "python"}', "invalid_message"),
    ('{"type": "run", "language": "python", "code": 42}', "invalid_message"),
    ('{"type": "run", "language": "python", "code": "1", "timeout": "soon"}', "invalid_message"),
    ('{"type": "signal", "signal": "SIGHUP"}', "invalid_message"),
    ('{"type": "run", "language": "cobol", "code": "x"}', "unknown_language"),
    ('{"type": "run", "language": "python", "code": "1", "timeout": 31}', "invalid_timeout"),
    ('{"type": "stdin", "data": "x"}', "no_active_run"),
    ('{"type": "eof"}', "no_active_run"),
    ('{"type": "signal", "signal": "SIGINT"}', "no_active_run"),
]


async def test_each_malformed_frame_gets_its_error_and_the_socket_goes_on(
    server: ServerProcess, user
) -> None:
    async with await open_socket(server, user[1]) as ws:
        for text, code in MALFORMED:
            await ws.send(text)
            frame = await next_frame(ws)
            assert frame["type"] == "error", text
            assert frame["code"] == code, text
            assert frame["message"], text
        await ws.send(b"\x00binary")
        assert (await next_frame(ws))["code"] == "binary_frame"
        await ws.send(json.dumps({"type": "stdin", "data": "x" * 200_000}))
        assert (await next_frame(ws))["code"] == "frame_too_large"
        await run(ws, "print(1)", stdin="y" * 70_000)
        assert (await next_frame(ws))["code"] == "stdin_too_large"
        await run(ws, "#" * 51_201)
        too_large = await next_frame(ws)
        assert too_large["code"] == "code_too_large" and "51200" in too_large["message"]
        await run(ws, "print('still works')")
        assert stdout_of(await frames_until_exit(ws)) == "still works\n"


async def test_unknown_language_names_the_supported_ones(server: ServerProcess, user) -> None:
    async with await open_socket(server, user[1]) as ws:
        await run(ws, "x", language="cobol")
        message = (await next_frame(ws))["message"]
    assert all(name in message for name in ("python", "javascript", "typescript"))


async def test_errors_during_a_run_do_not_disturb_it(server: ServerProcess, user) -> None:
    async with await open_socket(server, user[1]) as ws:
        await run(ws, "import time\nprint(input())\ntime.sleep(0.3)\nprint('end')")
        assert (await next_frame(ws))["type"] == "started"
        await run(ws, "print('second')")
        assert (await next_frame(ws))["code"] == "run_active"
        await ws.send("{broken")
        assert (await next_frame(ws))["code"] == "invalid_json"
        await ws.send(json.dumps({"type": "stdin", "data": "typed\n"}))
        frames = await frames_until_exit(ws)
    assert stdout_of(frames) == "typed\nend\n"
    assert frames[-1]["status"] == "success"


async def test_stop_gets_through_while_input_piles_up(server: ServerProcess, user) -> None:
    async with await open_socket(server, user[1]) as ws:
        await run(ws, "import time\nprint('busy', flush=True)\ntime.sleep(30)")
        assert (await next_frame(ws))["type"] == "started"
        for _ in range(12):  # 1.2 MB that nobody reads: it piles up, then is refused
            await ws.send(json.dumps({"type": "stdin", "data": "x" * 100_000}))
        await ws.send(json.dumps({"type": "signal", "signal": "SIGINT"}))
        frames = await frames_until_exit(ws, timeout=10)
    errors = [f for f in frames if f["type"] == "error"]
    assert errors and {e["code"] for e in errors} == {"stdin_backlog"}
    assert frames[-1]["status"] == "killed"


# Authentication ----------------------------------------------------------------------------


@pytest.mark.parametrize("token", [None, "not-a-jwt", "eyJhbGciOiJIUzI1NiJ9.e30.c2lnbmF0dXJl"])
async def test_handshake_without_a_valid_token_is_refused(
    server: ServerProcess, token: str | None
) -> None:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with pytest.raises(InvalidStatus) as refused:
        await connect(server.ws_url, additional_headers=headers)
    assert refused.value.response.status_code == 403


async def test_token_in_the_query_string(server: ServerProcess, user) -> None:
    async with connect(f"{server.ws_url}?token={user[1]}") as ws:
        await run(ws, "print(1)")
        assert stdout_of(await frames_until_exit(ws)) == "1\n"


# Lifecycle ---------------------------------------------------------------------------------


async def test_disconnect_mid_run_removes_the_container(server: ServerProcess, user) -> None:
    ws = await open_socket(server, user[1])
    # The program turns into a process we can find from outside: "sleep 61.5".
    await run(ws, "import os\nprint('up', flush=True)\nos.execvp('sleep', ['sleep', '61.5'])")
    assert (await next_frame(ws))["type"] == "started"
    await next_frame(ws)
    async with asyncio.timeout(30):
        while not (mine := await containers_running("sleep 61.5", server.owner)):
            await asyncio.sleep(0.05)
    await ws.close()
    # Gone long before its wall time (30 s) could end it. How fast (p50 ≤ 1 s) is measured
    # by bench/disconnect.py: a busy shared engine takes up to 0.7 s for gVisor's kill alone.
    assert await wait_gone(mine[0], seconds=5.0), "container still there 5 s after"


async def test_twenty_sockets_at_once_each_get_their_own_output(server: ServerProcess) -> None:
    tokens = [server.new_user()[1] for _ in range(4)]  # five sockets each: a class at work

    async def one(n: int) -> tuple[int, list[dict[str, Any]]]:
        async with await open_socket(server, tokens[n % 4]) as ws:
            code = f"import time\nfor i in range(3):\n    print('{n}', i)\n    time.sleep(0.1)"
            await run(ws, code)
            return n, await frames_until_exit(ws, timeout=120)

    results = await asyncio.gather(*(one(n) for n in range(20)))
    for n, frames in results:
        assert stdout_of(frames) == f"{n} 0\n{n} 1\n{n} 2\n"
        assert frames[-1]["status"] == "success"
    assert len({frames[-1]["run_id"] for _, frames in results}) == 20


async def test_one_user_cannot_take_every_sandbox(server: ServerProcess, user) -> None:
    sockets = [await open_socket(server, user[1]) for _ in range(9)]
    try:
        for ws in sockets[:8]:
            await run(ws, "import time\ntime.sleep(20)")
        answers = [await next_frame(ws, timeout=60) for ws in sockets[:8]]
        assert [a["type"] for a in answers] == ["started"] * 8
        # The ninth waits for one of the user's own eight to end.
        await run(sockets[8], "print('ninth')")
        assert await next_frame(sockets[8]) == {"type": "queued", "position": 1}
        # Someone else is not affected.
        _, other = server.new_user()
        async with await open_socket(server, other) as ws:
            await run(ws, "print('my turn')")
            assert stdout_of(await frames_until_exit(ws)) == "my turn\n"
        await sockets[0].close()  # its run is killed: the ninth's turn
        frames = await frames_until_exit(sockets[8], timeout=60)
        assert frames[0]["type"] == "started" and stdout_of(frames) == "ninth\n"
    finally:
        for ws in sockets:
            await ws.close()
