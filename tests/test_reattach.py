"""Reattach end to end: a run outlives its lost socket for the grace, and its owner attaches.

Real uvicorn, real engine, raw ``websockets`` clients and the Python client.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from client import ExecClient
from client.errors import ServerError
from server.protocol import Attached, ExitMessage, OutputMessage
from tests.conftest import containers_running, managed_containers, wait_gone
from tests.server import ServerProcess
from tests.test_ws import frames_until_exit, next_frame, open_socket, run, stdout_of

pytestmark = pytest.mark.docker

GRACE = 3.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    process = ServerProcess(
        tmp_path_factory.mktemp("reattach"), EXECSTREAM_REATTACH_SECONDS=str(GRACE)
    )
    yield process.start()
    process.stop()


@pytest.fixture
def user(server: ServerProcess) -> tuple[str, str]:
    return server.new_user()


async def output_until(ws: ClientConnection, text: str) -> list[dict[str, Any]]:
    """Frames up to the one whose stdout so far ends with ``text``."""
    frames: list[dict[str, Any]] = []
    while not stdout_of(frames).endswith(text):
        frames.append(await next_frame(ws, timeout=20))
    return frames


async def start_and_drop(server: ServerProcess, token: str, code: str, first: str) -> str:
    """Start ``code``, read until ``first`` is out, close the socket; the run's id."""
    ws = await open_socket(server, token)
    await run(ws, code)
    started = await next_frame(ws, timeout=30)
    assert started["type"] == "started"
    await output_until(ws, first)
    await ws.close()
    return str(started["run_id"])


async def attach(ws: ClientConnection, run_id: str) -> dict[str, Any]:
    await ws.send(json.dumps({"type": "attach", "run_id": run_id}))
    return await next_frame(ws)


INTERACTIVE = (
    "import time\n"
    "print('before', flush=True)\n"
    "time.sleep(1)\n"
    "print('meanwhile', flush=True)\n"
    "name = input('Name? ')\n"
    "print('Hello', name)\n"
)


async def test_attach_replays_what_was_sent_and_what_came_while_detached_then_goes_live(
    server: ServerProcess, user
) -> None:
    run_id = await start_and_drop(server, user[1], INTERACTIVE, "before\n")
    await asyncio.sleep(1.5)  # "meanwhile" and the prompt come while nobody listens
    async with await open_socket(server, user[1]) as ws:
        attached = await attach(ws, run_id)
        assert attached["type"] == "attached" and attached["run_id"] == run_id
        assert attached["language"] == "python" and attached["stdin_window"] > 0
        assert (attached["stdin_sent"], attached["stdin_acked"]) == (0, 0)
        assert attached["replay_truncated"] is False
        replay = await output_until(ws, "Name? ")
        assert stdout_of(replay) == "before\nmeanwhile\nName? "
        await ws.send(json.dumps({"type": "stdin", "data": "Ada\n"}))
        frames = await frames_until_exit(ws)
    assert stdout_of(frames) == "Hello Ada\n"
    assert frames[-1]["status"] == "success" and frames[-1]["run_id"] == run_id


async def test_nobody_attaches_the_run_is_killed_after_the_grace(
    server: ServerProcess, user
) -> None:
    code = "import os\nprint('up', flush=True)\nos.execvp('sleep', ['sleep', '61.7'])"
    ws = await open_socket(server, user[1])
    await run(ws, code)
    started = await next_frame(ws, timeout=30)
    await output_until(ws, "up\n")
    async with asyncio.timeout(30):
        while not (mine := await containers_running("sleep 61.7", server.owner)):
            await asyncio.sleep(0.05)
    await ws.close()
    await asyncio.sleep(GRACE / 2)
    assert mine[0] in await managed_containers(), "killed before its grace was over"
    assert await wait_gone(mine[0], seconds=GRACE + 10), "container outlived the grace"
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {user[1]}"}) as http:
        # The started frame names the record only when its row was written first.
        history = (await http.get(f"{server.url}/api/v1/code/history")).json()
    record = next(r for r in history if r["code"] == code)
    assert started["execution_id"] in (None, record["id"])
    assert record["status"] == "killed" and record["output"] == "up\n"
    async with await open_socket(server, user[1]) as again:
        assert (await attach(again, started["run_id"]))["code"] == "run_not_found"


async def test_another_user_gets_the_answer_of_an_unknown_id(server: ServerProcess, user) -> None:
    code = "import time\nprint('mine', flush=True)\ntime.sleep(20)"
    _, other = server.new_user()  # first: signing up takes a while, the grace is short
    run_id = await start_and_drop(server, user[1], code, "mine\n")
    async with await open_socket(server, other) as ws:
        theirs = await attach(ws, run_id)
        unknown = await attach(ws, "0" * 32)
    assert theirs["type"] == unknown["type"] == "error"
    assert theirs["code"] == unknown["code"] == "run_not_found"
    assert theirs["message"].replace(run_id, "X") == unknown["message"].replace("0" * 32, "X")
    async with await open_socket(server, user[1]) as ws:  # the owner still can
        assert (await attach(ws, run_id))["type"] == "attached"
        await ws.send(json.dumps({"type": "signal", "signal": "SIGKILL"}))
        assert (await frames_until_exit(ws))[-1]["status"] == "killed"


async def test_a_run_that_ended_while_detached_replays_to_its_exit(
    server: ServerProcess, user
) -> None:
    code = "import time\nprint('a', flush=True)\ntime.sleep(0.5)\nprint('b')"
    run_id = await start_and_drop(server, user[1], code, "a\n")
    await asyncio.sleep(1.5)  # it has ended meanwhile
    async with await open_socket(server, user[1]) as ws:
        assert (await attach(ws, run_id))["type"] == "attached"
        frames = await frames_until_exit(ws)
        assert stdout_of(frames) == "a\nb\n" and frames[-1]["status"] == "success"
        # Heard once, it is forgotten; and the socket is free for a run of its own.
        assert (await attach(ws, run_id))["code"] == "run_not_found"
        await run(ws, "print('next')")
        assert stdout_of(await frames_until_exit(ws)) == "next\n"


async def test_a_second_socket_takes_the_run_over(server: ServerProcess, user) -> None:
    code = (
        "import sys\nprint('ready', flush=True)\n"
        "for line in sys.stdin:\n    print(line.upper(), end='', flush=True)"
    )
    first = await open_socket(server, user[1])
    await run(first, code)
    run_id = (await next_frame(first, timeout=30))["run_id"]
    await output_until(first, "ready\n")
    await first.send(json.dumps({"type": "stdin", "data": "one\n"}))
    await output_until(first, "ONE\n")
    async with ExecClient(server.url, user[1]) as client:
        events = client.attach(run_id)
        attached = await anext(events)
        assert isinstance(attached, Attached) and attached.stdin_acked == attached.stdin_sent == 4
        replay = ""
        while replay != "ready\nONE\n":
            event = await anext(events)
            assert isinstance(event, OutputMessage)
            replay += event.data
        # The first socket hears why, then is closed.
        taken = await next_frame(first)
        assert taken["code"] == "run_attached_elsewhere"
        with pytest.raises(ConnectionClosed) as closed:
            await next_frame(first)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4000
        await client.send_stdin("two\n")
        await client.send_eof()
        rest = [event async for event in events]
    assert "".join(e.data for e in rest if isinstance(e, OutputMessage)) == "TWO\n"
    assert isinstance(rest[-1], ExitMessage) and rest[-1].status == "success"


async def test_a_socket_with_a_run_cannot_attach(server: ServerProcess, user) -> None:
    async with ExecClient(server.url, user[1]) as client:
        with pytest.raises(ServerError) as refused:
            async for _ in client.attach("f" * 32):
                pass
        assert refused.value.code == "run_not_found"
    async with await open_socket(server, user[1]) as ws:
        await run(ws, "import time\nprint('x', flush=True)\ntime.sleep(10)")
        run_id = (await next_frame(ws, timeout=30))["run_id"]
        assert (await attach(ws, run_id))["code"] == "run_active"
        await ws.send(json.dumps({"type": "signal", "signal": "SIGKILL"}))
        await frames_until_exit(ws)


async def test_a_server_shutdown_ends_detached_runs(tmp_path) -> None:
    server = ServerProcess(tmp_path, EXECSTREAM_REATTACH_SECONDS="600").start()
    try:
        _, token = server.new_user()
        code = "import os\nprint('up', flush=True)\nos.execvp('sleep', ['sleep', '61.9'])"
        await start_and_drop(server, token, code, "up\n")
        async with asyncio.timeout(30):
            while not (mine := await containers_running("sleep 61.9", server.owner)):
                await asyncio.sleep(0.05)
    finally:
        server.stop()
    assert await wait_gone(mine[0], seconds=5)
    log = server.log.read_text()
    assert "Traceback" not in log
    with sqlite3.connect(server.database) as conn:
        statuses = [row[0] for row in conn.execute("SELECT status FROM code_executions")]
    assert statuses == ["killed"]
