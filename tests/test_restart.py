"""Servers of their own: restart on the same database, shutdown with runs in flight."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

import aiodocker
import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from sandbox.container import LABEL, OWNER_LABEL
from tests.server import ServerProcess

pytestmark = pytest.mark.docker


def test_history_and_tokens_survive_a_restart(tmp_path: Path) -> None:
    first = ServerProcess(tmp_path).start()
    try:
        _, token = first.new_user()
        headers = {"Authorization": f"Bearer {token}"}
        body = {"code": "print('kept')", "language": "python"}
        run_id = httpx.post(
            f"{first.url}/api/v1/code/execute", json=body, headers=headers, timeout=60
        ).json()["execution_id"]
    finally:
        first.stop()
    second = ServerProcess(tmp_path).start()
    try:
        record = httpx.get(f"{second.url}/api/v1/code/history/{run_id}", headers=headers)
        assert record.status_code == 200
        assert record.json()["output"] == "kept\n"
    finally:
        second.stop()
    assert (tmp_path / "execstream.db").exists()


def test_registration_can_be_switched_off(tmp_path: Path) -> None:
    closed = ServerProcess(tmp_path, EXECSTREAM_ALLOW_REGISTRATION="false").start()
    try:
        response = httpx.post(
            f"{closed.url}/api/v1/auth/register", json={"username": "eve", "password": "12345678"}
        )
    finally:
        closed.stop()
    assert response.status_code == 403
    assert response.json()["code"] == "registration_closed"


async def test_shutdown_kills_runs_tells_clients_and_leaves_no_container(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path).start()
    assert server.process is not None
    owner = server.owner
    _, token = server.new_user()
    sockets = [await connect(f"{server.ws_url}?token={token}") for _ in range(3)]
    for ws in sockets:
        await ws.send(
            json.dumps(
                {
                    "type": "run",
                    "language": "python",
                    "code": "import time\nprint('up', flush=True)\ntime.sleep(60)",
                }
            )
        )
        assert json.loads(await ws.recv())["type"] == "started"
        assert json.loads(await ws.recv())["type"] == "output"  # it runs
    server.process.send_signal(signal.SIGTERM)
    for ws in sockets:
        async with asyncio.timeout(15):
            while (exit_ := json.loads(await ws.recv()))["type"] == "output":
                pass
            assert exit_["type"] == "exit"
            assert exit_["status"] == "killed"
            with pytest.raises(ConnectionClosed) as closed:
                await ws.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
    # Uvicorn re-raises the SIGTERM once it has shut down cleanly.
    assert server.process.wait(timeout=30) in (0, -signal.SIGTERM)
    server.stop()
    async with aiodocker.Docker() as docker:
        left = await docker.containers.list(all=True, filters={"label": [f"{LABEL}=true"]})
    assert not [c for c in left if c._container["Labels"].get(OWNER_LABEL) == owner]


async def test_tokens_in_the_query_string_stay_out_of_the_logs(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path, EXECSTREAM_LOG_LEVEL="info").start()
    try:
        _, token = server.new_user()
        async with connect(f"{server.ws_url}?token={token}") as ws:
            await ws.send(json.dumps({"type": "run", "language": "python", "code": "print(1)"}))
            while json.loads(await ws.recv())["type"] != "exit":
                pass
    finally:
        server.stop()
    log = server.log.read_text()
    assert "WebSocket /api/v1/code/ws?token=[redacted]" in log
    assert token not in log
