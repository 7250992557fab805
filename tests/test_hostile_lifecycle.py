"""Crashes and neighbours, end to end: real servers killed with SIGKILL, restarted on their
data, and sharing one engine; runs stored from their start; the audit of runs at a limit."""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import time
from pathlib import Path
from typing import Any

import aiodocker
import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect

from sandbox.container import LABEL, OWNER_LABEL, labels
from server.config import Settings
from tests.server import ServerProcess

pytestmark = pytest.mark.docker

# Short leases so a dead server is noticed in seconds, not half a minute.
FAST = {
    "EXECSTREAM_LEASE_SECONDS": "3",
    "EXECSTREAM_HEARTBEAT_SECONDS": "0.5",
    "EXECSTREAM_SWEEP_SECONDS": "1",
    "EXECSTREAM_POOL_SIZE": "1",
}
SWEPT_WITHIN = 30.0  # seconds: a lease, a few sweeps, and a loaded machine
TICKING = (
    "import time\nfor i in range(100000):\n    print(f'line {i}', flush=True)\n    time.sleep(0.1)"
)


async def owned(owner: str) -> set[str]:
    """Every container (running or not) labelled with ``owner``."""
    async with aiodocker.Docker() as docker:
        found = await docker.containers.list(
            all=True, filters={"label": [f"{LABEL}=true", f"{OWNER_LABEL}={owner}"]}
        )
    return {c.id for c in found}


async def plant(owner: str) -> str:
    """A long-lived container labelled as ``owner``'s: only a sweep removes it.

    (Its legacy ``host:pid`` label names this live test process, so servers of the previous
    version, which other work on a shared engine may still run, leave it alone.)
    """
    async with aiodocker.Docker() as docker:
        container = await docker.containers.create(
            config={"Image": Settings().image, "Cmd": ["sleep", "600"], "Labels": labels(owner)}
        )
        await container.start()
    return container.id


async def until(check: Any, seconds: float = SWEPT_WITHIN) -> None:
    deadline = time.monotonic() + seconds
    while not await check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.2)


async def start_run(server: ServerProcess, token: str, code: str) -> tuple[ClientConnection, int]:
    ws = await connect(f"{server.ws_url}?token={token}")
    await ws.send(json.dumps({"type": "run", "language": "python", "code": code}))
    started = json.loads(await ws.recv())
    assert started["type"] == "started"

    # Stored from the start: the started frame names the record when its row was written
    # first; either way the history shows it as running while the program runs.
    async def running() -> list[int]:
        records = await asyncio.to_thread(history, server, token)
        return [r["id"] for r in records if r["status"] == "running"]

    await until(lambda: running(), seconds=5)
    ids = await running()
    assert len(ids) == 1 and started["execution_id"] in (None, ids[0])
    return ws, ids[0]


async def read_until(ws: ClientConnection, text: str) -> str:
    seen = ""
    async with asyncio.timeout(30):
        while text not in seen:
            frame = json.loads(await ws.recv())
            assert frame["type"] == "output", frame
            seen += frame["data"]
    return seen


def record(server: ServerProcess, token: str, execution_id: int) -> dict[str, Any]:
    response = httpx.get(
        f"{server.url}/api/v1/code/history/{execution_id}",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 200
    return dict(response.json())


def history(server: ServerProcess, token: str) -> list[dict[str, Any]]:
    response = httpx.get(
        f"{server.url}/api/v1/code/history", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 200
    return list(response.json())


async def test_a_server_killed_mid_run_is_swept_and_its_run_kept_as_interrupted(
    tmp_path: Path,
) -> None:
    server = ServerProcess(tmp_path, **FAST).start()
    dead = server.owner
    _, token = server.new_user()
    ws, execution_id = await start_run(server, token, TICKING)
    assert record(server, token, execution_id)["status"] == "running"
    seen = await read_until(ws, "line 20\n")
    # What had arrived a while before the kill must be stored (output is saved every second).
    await asyncio.sleep(2.5)
    planted = await plant(dead)
    left = await owned(dead)  # the run's container, the warm ones, the planted one
    assert len(left) >= 3
    server.stop(signal.SIGKILL)
    await ws.close()

    server.start()  # a new instance, same data folder
    try:
        assert server.owner != dead

        async def interrupted() -> bool:
            return record(server, token, execution_id)["status"] == "interrupted"

        await until(interrupted)
        stored = record(server, token, execution_id)
        assert stored["output"].startswith(seen)
        assert stored["output"].startswith("line 0\nline 1\n")
        assert stored["execution_time"] >= 2.0

        async def swept() -> bool:
            return not await owned(dead)

        await until(swept)
        assert planted in left
        # Listed newest first with the user's other runs, by the time it started.
        assert [r["id"] for r in history(server, token)] == [execution_id]
    finally:
        server.stop()


async def test_two_servers_on_one_database_leave_each_others_containers_alone(
    tmp_path: Path,
) -> None:
    shared = {
        **FAST,
        "EXECSTREAM_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}",
        "EXECSTREAM_JWT_SECRET": "a-secret-both-servers-share-0123456789",
    }
    a = ServerProcess(tmp_path / "a", **shared).start()
    b = ServerProcess(tmp_path / "b", **shared).start()
    try:
        a_owner, b_owner = a.owner, b.owner
        _, token = a.new_user()
        ws, execution_id = await start_run(a, token, TICKING)
        await read_until(ws, "line 0\n")
        a_live, b_live = await owned(a_owner), await owned(b_owner)
        assert a_live and b_live
        await asyncio.sleep(4)  # B sweeps every second: A is alive, so nothing of A's goes
        assert a_live <= await owned(a_owner)
        await read_until(ws, "line 45\n")  # the run on A went on all along

        a.stop(signal.SIGKILL)
        await ws.close()

        async def a_swept() -> bool:
            return not await owned(a_owner)

        await until(a_swept)
        assert b_live <= await owned(b_owner)

        async def interrupted() -> bool:  # B saw A die: the same sweep marks A's runs
            return record(b, token, execution_id)["status"] == "interrupted"

        await until(interrupted)
    finally:
        a.stop()
        b.stop()


async def test_servers_on_separate_databases_never_sweep_each_other(tmp_path: Path) -> None:
    a = ServerProcess(tmp_path / "a", **FAST).start()
    b = ServerProcess(tmp_path / "b", **FAST).start()
    try:
        a_owner = a.owner
        planted = await plant(a_owner)
        a.stop(signal.SIGKILL)
        # A's lease is in A's database only: to B, A's containers belong to someone it cannot
        # see, who may be alive. B leaves them alone through many sweeps.
        await asyncio.sleep(float(FAST["EXECSTREAM_LEASE_SECONDS"]) + 4)
        assert planted in await owned(a_owner)

        a.start()  # A's next instance sees the old lease expired in its own database

        async def swept() -> bool:
            return not await owned(a_owner)

        await until(swept)
        assert await owned(b.owner)
    finally:
        a.stop()
        b.stop()


async def test_a_clean_shutdown_ends_the_lease(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path, **FAST).start()
    owner = server.owner
    server.stop()
    with sqlite3.connect(server.database) as conn:
        (expires,) = conn.execute(
            "SELECT expires_at FROM instances WHERE id = ?", (owner,)
        ).fetchone()
        (now,) = conn.execute("SELECT strftime('%Y-%m-%d %H:%M:%f', 'now')").fetchone()
    assert expires <= now  # swept at once by whoever looks next, not in a lease's time
    assert not await owned(owner)


# Audit -------------------------------------------------------------------------------------

LIMIT_PROGRAMS = {
    "output": "print('x' * 20000)",
    "memory": "blocks = []\nwhile True:\n    blocks.append(bytearray(16 * 1024 * 1024))",
    "pids": (
        "import threading, time\n"
        "for _ in range(200):\n"
        "    threading.Thread(target=time.sleep, args=(5,), daemon=True).start()"
    ),
}


@pytest.mark.parametrize("limit", LIMIT_PROGRAMS)
def test_runs_ending_at_a_limit_are_audited(request: pytest.FixtureRequest, limit: str) -> None:
    server: ServerProcess = request.getfixturevalue("runc_server" if limit == "pids" else "server")
    _, token = server.new_user()
    body = {"language": "python", "code": LIMIT_PROGRAMS[limit]}
    done = httpx.post(
        f"{server.url}/api/v1/code/execute",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
        timeout=60,
    ).json()
    entries = [
        json.loads(line[line.index("{") :])
        for line in server.log.read_text().splitlines()
        if '"run_limit"' in line
    ]
    mine = [e for e in entries if e["limit"] == limit and e["language"] == "python"]
    assert mine, (done, entries)
    assert isinstance(mine[-1]["user"], int) and mine[-1]["run_id"]


def test_a_run_that_ends_normally_is_not_audited(
    server: ServerProcess, user: tuple[str, str]
) -> None:
    _, token = user
    before = server.log.read_text().count('"run_limit"')
    httpx.post(
        f"{server.url}/api/v1/code/execute",
        json={"language": "python", "code": "import sys\nprint('fine')\nsys.exit(3)"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=60,
    ).raise_for_status()
    assert server.log.read_text().count('"run_limit"') == before


def test_a_refused_run_leaves_no_record(server: ServerProcess, user: tuple[str, str]) -> None:
    _, token = user
    headers = {"Authorization": f"Bearer {token}"}
    for body in (
        {"language": "cobol", "code": "DISPLAY 'HI'."},
        {"language": "python", "code": "#" * 60_000},
    ):
        refused = httpx.post(f"{server.url}/api/v1/code/execute", json=body, headers=headers)
        assert refused.status_code in (400, 413)
    assert history(server, token) == []


def test_a_run_is_in_the_history_as_running_while_it_runs(
    server: ServerProcess, user: tuple[str, str]
) -> None:
    _, token = user

    async def scenario() -> tuple[dict[str, Any], int]:
        ws, execution_id = await start_run(server, token, "print('hi', flush=True)\ninput()")
        await read_until(ws, "hi\n")
        await asyncio.sleep(1.5)  # a checkpoint has saved the output
        during = await asyncio.to_thread(record, server, token, execution_id)
        await ws.send(json.dumps({"type": "stdin", "data": "bye\n"}))
        async with asyncio.timeout(30):
            while json.loads(await ws.recv())["type"] != "exit":
                pass
        await ws.close()
        return during, execution_id

    during, execution_id = asyncio.run(scenario())
    assert (during["status"], during["output"]) == ("running", "hi\n")
    after = record(server, token, execution_id)
    assert (after["status"], after["output"], after["stdin"]) == ("success", "hi\n", "bye\n")
    assert after["created_at"] == during["created_at"]


def test_the_server_purges_runs_past_the_per_user_cap_in_the_background(tmp_path: Path) -> None:
    server = ServerProcess(
        tmp_path,
        EXECSTREAM_HISTORY_PER_USER="2",
        EXECSTREAM_HISTORY_PURGE_SECONDS="0.5",
        EXECSTREAM_POOL_SIZE="1",
    ).start()
    try:
        _, token = server.new_user()
        ids = []
        for n in range(4):
            done = httpx.post(
                f"{server.url}/api/v1/code/execute",
                json={"language": "python", "code": f"print({n})"},
                headers={"Authorization": f"Bearer {token}"},
                timeout=60,
            )
            ids.append(done.json()["execution_id"])
        deadline = time.monotonic() + 30
        while len(kept := history(server, token)) > 2:
            assert time.monotonic() < deadline, kept
            time.sleep(0.2)
        assert [r["id"] for r in kept] == ids[:1:-1]  # the two newest, newest first
    finally:
        server.stop()
