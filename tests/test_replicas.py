"""Two real servers (``execstream serve``) sharing one real PostgreSQL: history, caps and the
sweep of a dead replica hold across them, and killing one leaves the other's runs alone."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator

import aiodocker
import httpx
import pytest

from sandbox.container import OWNER_LABEL
from tests.postgres import PostgresServer
from tests.server import ServerProcess
from tests.test_ws import frames_until_exit, next_frame, open_socket, run, stdout_of

pytestmark = pytest.mark.docker

PER_USER = 2
LEASE = 3.0
HOLD = "print('holding', flush=True)\nimport time\ntime.sleep(60)"
TICKS = "import time\nfor i in range(12):\n    print(i, flush=True)\n    time.sleep(0.5)"


class Replicas:
    def __init__(self, postgres: PostgresServer, database: str, a: ServerProcess, b: ServerProcess):
        self.postgres, self.database, self.a, self.b = postgres, database, a, b

    def sql(self, statement: str) -> str:
        return self.postgres.sql(statement, self.database)

    def owner(self, server: ServerProcess) -> str:
        return self.sql(
            f"SELECT id FROM instances WHERE pid = {server.pid} ORDER BY started_at DESC LIMIT 1"
        )


async def containers_of(owner: str) -> list[str]:
    async with aiodocker.Docker() as docker:
        found = await docker.containers.list(
            all=True, filters={"label": [f"{OWNER_LABEL}={owner}"]}
        )
    return [c.id for c in found]


async def left_by(replicas: Replicas, owner: str) -> tuple[list[str], str, str]:
    """A dead instance's containers, its runs still marked running, its run slots."""
    running = replicas.sql(
        f"SELECT count(*) FROM code_executions WHERE instance_id = '{owner}' AND status = 'running'"
    )
    slots = replicas.sql(f"SELECT count(*) FROM run_slots WHERE instance_id = '{owner}'")
    return await containers_of(owner), running, slots


@pytest.fixture(scope="module")
def replicas(
    postgres: PostgresServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Replicas]:
    """Two servers, one database; a short lease so a dead one is found within seconds."""
    url = postgres.new_database()
    env = {
        "EXECSTREAM_DATABASE_URL": url,
        "EXECSTREAM_JWT_SECRET": "one secret for every replica, as behind a load balancer",
        "EXECSTREAM_MAX_RUNS_PER_USER": str(PER_USER),
        "EXECSTREAM_LEASE_SECONDS": str(LEASE),
        "EXECSTREAM_HEARTBEAT_SECONDS": "0.5",
        "EXECSTREAM_SWEEP_SECONDS": "1",
        "EXECSTREAM_POOL_MIN": "0",
        "EXECSTREAM_METRICS": "public",
    }
    # Started together: both migrate the new database at once.
    a = ServerProcess(tmp_path_factory.mktemp("replica-a"), **env)
    b = ServerProcess(tmp_path_factory.mktemp("replica-b"), **env)
    a.launch()
    b.launch()
    a.ready()
    b.ready()
    yield Replicas(postgres, url.rsplit("/", 1)[1], a, b)
    for server in (a, b):
        server.stop()
        log = server.log.read_text()
        assert "Traceback" not in log, f"a replica's log holds a traceback:\n{log[-5000:]}"


def test_history_written_through_one_replica_is_read_through_the_other(
    replicas: Replicas,
) -> None:
    _, token = replicas.a.new_user()
    auth = {"Authorization": f"Bearer {token}"}
    body = {"language": "python", "code": "print('via a')", "project_id": 4}
    done = httpx.post(f"{replicas.a.url}/api/v1/code/execute", json=body, headers=auth, timeout=60)
    assert done.status_code == 200, done.text
    history = httpx.get(f"{replicas.b.url}/api/v1/code/history", headers=auth, timeout=10)
    assert history.status_code == 200
    [item] = history.json()
    assert (item["output"], item["project_id"], item["status"]) == ("via a\n", 4, "success")


async def test_the_per_user_cap_holds_across_replicas(replicas: Replicas) -> None:
    _, token = replicas.a.new_user()
    holders = [await open_socket(replicas.a, token) for _ in range(PER_USER)]
    third = await open_socket(replicas.b, token)
    try:
        for ws in holders:
            await run(ws, HOLD)
            assert (await next_frame(ws, timeout=60))["type"] == "started"
            assert (await next_frame(ws, timeout=30))["type"] == "output"
        # Replica b has no run of this user, but the user is at the cap on a.
        await run(third, "print('third')")
        assert await next_frame(third) == {"type": "queued", "position": 1}
        with pytest.raises(TimeoutError):
            await next_frame(third, timeout=2)  # still waiting: the cap holds
        async with httpx.AsyncClient(base_url=replicas.b.url) as client:
            metrics = (await client.get("/metrics", timeout=10)).text
        assert "execstream_queue_depth 1.0" in metrics.splitlines()
        await holders[0].close()  # a's run ends, its slot is freed: b's run starts
        frames = await frames_until_exit(third, timeout=60)
    finally:
        for ws in [*holders, third]:
            await ws.close()
    assert frames[0]["type"] == "started"
    assert stdout_of(frames) == "third\n"


async def test_killing_a_replica_spares_the_others_runs_and_its_containers_are_swept(
    replicas: Replicas,
) -> None:
    username, token = replicas.a.new_user()
    dead_owner = replicas.owner(replicas.a)
    on_a = await open_socket(replicas.a, token)
    on_b = await open_socket(replicas.b, token)
    await run(on_a, HOLD)
    assert (await next_frame(on_a, timeout=60))["type"] == "started"
    assert (await next_frame(on_a, timeout=30))["type"] == "output"
    await run(on_b, TICKS)
    started = await next_frame(on_b, timeout=60)
    assert started["type"] == "started"
    assert await containers_of(dead_owner)  # the held run (and any warm ones)

    replicas.a.stop(signal.SIGKILL)  # no drain, no lease release: a is simply gone
    frames = await frames_until_exit(on_b, timeout=60)
    await on_b.close()
    await on_a.close()

    # b's run went on streaming to its end, untouched.
    assert stdout_of(frames) == "".join(f"{i}\n" for i in range(12))
    assert frames[-1]["status"] == "success"
    # Once a's lease expired, b swept what a left: its container, its run, its slot.
    deadline = time.monotonic() + LEASE + 30
    while await left_by(replicas, dead_owner) != ([], "0", "0"):
        assert time.monotonic() < deadline, f"never swept: {await left_by(replicas, dead_owner)}"
        await asyncio.sleep(0.2)
    statuses = replicas.sql(
        "SELECT instance_id = "
        f"'{dead_owner}', status FROM code_executions JOIN users ON users.id = user_id "
        f"WHERE username = '{username}' ORDER BY code_executions.id"
    )
    assert statuses.splitlines() == ["t|interrupted", "f|success"]  # a's run, then b's
    # The user's slots held on a count no more: b runs their programs at once.
    async with await open_socket(replicas.b, token) as ws:
        await run(ws, "print('after')")
        after = await frames_until_exit(ws, timeout=60)
    assert after[0]["type"] == "started" and stdout_of(after) == "after\n"
