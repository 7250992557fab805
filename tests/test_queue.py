"""The fair, bounded queue end to end: a real server with one run slot, real sockets, REST."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection

from client import ExecClient, Queued
from server.protocol import Started
from tests.server import ServerProcess
from tests.test_ws import frames_until_exit, next_frame, open_socket, run, stdout_of

pytestmark = pytest.mark.docker

HOLD = "print('holding', flush=True)\nimport time\ntime.sleep(60)"
QUEUE_MAX = 6


@pytest.fixture(scope="module")
def one_slot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server that runs one program at a time, with room for six to wait."""
    process = ServerProcess(
        tmp_path_factory.mktemp("one-slot"),
        EXECSTREAM_MAX_RUNS="1",
        EXECSTREAM_QUEUE_MAX=str(QUEUE_MAX),
    )
    yield process.start()
    process.stop()
    log = process.log.read_text()
    assert "Traceback" not in log, f"the server's log holds a traceback:\n{log[-5000:]}"


@asynccontextmanager
async def holding(server: ServerProcess) -> AsyncIterator[ClientConnection]:
    """Another user's long run holds the only slot; closing the socket frees it."""
    _, token = server.new_user()
    ws = await open_socket(server, token)
    try:
        await run(ws, HOLD)
        assert (await next_frame(ws, timeout=60))["type"] == "started"
        assert (await next_frame(ws, timeout=30))["type"] == "output"  # it runs
        yield ws
    finally:
        await ws.close()


async def queued(server: ServerProcess, code: str = "print('ran')", **fields: Any):
    """A new user's socket with a run sent; its first frame is returned with it."""
    _, token = server.new_user()
    ws = await open_socket(server, token)
    await run(ws, code, **fields)
    return ws, await next_frame(ws)


async def test_positions_arrive_in_order_and_a_disconnect_leaves_the_queue(
    one_slot: ServerProcess,
) -> None:
    async with holding(one_slot) as holder:
        (a, first_a), (b, first_b), (c, first_c) = [await queued(one_slot) for _ in range(3)]
        assert [first_a, first_b, first_c] == [{"type": "queued", "position": n} for n in (1, 2, 3)]
        await a.close()  # leaves the queue: everyone behind moves up
        assert await next_frame(b) == {"type": "queued", "position": 1}
        assert await next_frame(c) == {"type": "queued", "position": 2}
        await holder.send(json.dumps({"type": "signal", "signal": "SIGKILL"}))
        b_frames = await frames_until_exit(b, timeout=60)
        c_frames = await frames_until_exit(c, timeout=60)
    assert b_frames[0]["type"] == "started" and stdout_of(b_frames) == "ran\n"
    assert [f["type"] for f in c_frames[:2]] == ["queued", "started"]
    assert c_frames[0]["position"] == 1 and stdout_of(c_frames) == "ran\n"
    for ws in (b, c):
        await ws.close()


async def test_a_stop_while_queued_leaves_the_queue_and_nothing_runs(
    one_slot: ServerProcess,
) -> None:
    async with holding(one_slot):
        a, first_a = await queued(one_slot, "print('should not run')")
        b, first_b = await queued(one_slot)
        assert (first_a["position"], first_b["position"]) == (1, 2)
        await a.send(json.dumps({"type": "signal", "signal": "SIGINT"}))
        cancelled = await next_frame(a)
        assert cancelled["type"] == "error" and cancelled["code"] == "run_cancelled"
        assert await next_frame(b) == {"type": "queued", "position": 1}
        # The socket is still good: a second run queues again.
        await run(a, "print('again')")
        assert await next_frame(a) == {"type": "queued", "position": 2}
    frames = await frames_until_exit(a, timeout=60)
    assert stdout_of(frames) == "again\n" and "should not run" not in json.dumps(frames)
    for ws in (a, b):
        await ws.close()


async def test_past_the_queue_bound_runs_are_refused_with_server_busy(
    one_slot: ServerProcess,
) -> None:
    async with holding(one_slot):
        waiting = [await queued(one_slot) for _ in range(QUEUE_MAX)]
        assert [first["position"] for _, first in waiting] == list(range(1, QUEUE_MAX + 1))
        ws, refused = await queued(one_slot)
        assert refused["type"] == "error" and refused["code"] == "server_busy"
        await ws.close()
        _, token = one_slot.new_user()
        async with httpx.AsyncClient(base_url=one_slot.url, timeout=30) as http:
            response = await http.post(
                "/api/v1/code/execute",
                json={"language": "python", "code": "print(1)"},
                headers={"Authorization": f"Bearer {token}"},
            )
        assert response.status_code == 503
        assert response.json()["code"] == "server_busy"
        assert int(response.headers["Retry-After"]) > 0
        for ws, _ in waiting:
            await ws.close()


async def test_a_rest_client_that_hangs_up_leaves_the_queue(one_slot: ServerProcess) -> None:
    async with holding(one_slot):
        _, token = one_slot.new_user()
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(base_url=one_slot.url, headers=headers, timeout=1) as http:
            with pytest.raises(httpx.ReadTimeout):  # it waits; we hang up after a second
                await http.post(
                    "/api/v1/code/execute", json={"language": "python", "code": "print(1)"}
                )
        ws, first = await queued(one_slot)
        # The next one to come is first in line (at once, or as soon as the server saw the
        # hang-up).
        while first["position"] != 1:
            first = await next_frame(ws)
            assert first["type"] == "queued"
        async with httpx.AsyncClient(base_url=one_slot.url, headers=headers) as http:
            assert (await http.get("/api/v1/code/history")).json() == []  # it never ran
        await ws.close()


async def test_waiting_does_not_count_against_the_wall_time(one_slot: ServerProcess) -> None:
    async with holding(one_slot):
        ws, first = await queued(one_slot, "import time\ntime.sleep(1)\nprint('done')", timeout=2)
        assert first["type"] == "queued"
        await asyncio.sleep(3)  # longer than the run's whole wall time
    frames = await frames_until_exit(ws, timeout=60)
    assert frames[-1]["status"] == "success" and stdout_of(frames) == "done\n"
    assert frames[-1]["execution_time"] < 2
    await ws.close()


async def test_turns_go_round_between_users(one_slot: ServerProcess) -> None:
    """User A queues six runs, user B one later: B runs right after A's first, before the
    other five."""
    started: dict[str, float] = {}

    async def one(client: ExecClient, name: str) -> None:
        # a0 holds the slot long enough for every other run to be waiting when it ends.
        code = f"import time\ntime.sleep({2 if name == 'a0' else 0.3})\nprint('{name}')"
        async for event in client.stream("python", code):
            if isinstance(event, Started):
                started[name] = time.monotonic()

    _, a_token = one_slot.new_user()
    _, b_token = one_slot.new_user()
    a_clients = [ExecClient(one_slot.url, a_token) for _ in range(6)]
    b_client = ExecClient(one_slot.url, b_token)
    for client in [*a_clients, b_client]:
        await client.connect()
    try:
        # One at a time, so the six arrive in order: each waits for its `queued` frame.
        tasks = [asyncio.create_task(one(a_clients[0], "a0"))]
        for n, client in enumerate(a_clients[1:3], 1):
            tasks.append(asyncio.create_task(one(client, f"a{n}")))
            await asyncio.sleep(0.05)
        # The rest of A's runs and then B's go in while a0 still runs.
        for n, client in enumerate(a_clients[3:], 3):
            tasks.append(asyncio.create_task(one(client, f"a{n}")))
        await asyncio.sleep(0.05)
        tasks.append(asyncio.create_task(one(b_client, "b")))
        async with asyncio.timeout(120):
            await asyncio.gather(*tasks)
    finally:
        for client in [*a_clients, b_client]:
            await client.close()
    order = sorted(started, key=started.__getitem__)
    assert order.index("b") == 1, order  # a newcomer overtakes A's five waiting runs


async def test_the_python_client_sees_its_position(one_slot: ServerProcess) -> None:
    _, token = one_slot.new_user()
    async with ExecClient(one_slot.url, token) as client:
        async with holding(one_slot):
            events = client.stream("python", "print('mine')")
            first = await anext(events)
            assert isinstance(first, Queued) and first.position == 1
        rest = [event async for event in events]  # the holder is gone: our turn
    assert isinstance(rest[0], Started)
    assert rest[-1].type == "exit" and rest[-1].status == "success"


async def test_twenty_parallel_rest_executes_from_one_user_all_succeed(
    server: ServerProcess, user: tuple[str, str]
) -> None:
    """Piston's multi_request: 20 requests at once, the per-user cap is 8; none refused."""

    async def one(http: httpx.AsyncClient, n: int) -> httpx.Response:
        return await http.post(
            "/api/v1/code/execute",
            json={"language": "python", "code": f"import time\ntime.sleep(0.5)\nprint({n})"},
        )

    headers = {"Authorization": f"Bearer {user[1]}"}
    async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=180) as http:
        responses = await asyncio.gather(*(one(http, n) for n in range(20)))
    assert [r.status_code for r in responses] == [200] * 20, [r.text for r in responses]
    assert [r.json()["output"] for r in responses] == [f"{n}\n" for n in range(20)]
    assert {r.json()["status"] for r in responses} == {"success"}
