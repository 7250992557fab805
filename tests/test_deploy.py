"""The deployment as shipped in deploy/: the server's own image on the real engine, and the
nginx configuration in front of two real servers sharing one database."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import aiodocker
import httpx
import pytest
import yaml
from websockets.asyncio.client import connect

from sandbox.container import OWNER_LABEL
from tests.conftest import SUITE
from tests.nginx import ROOT, NginxProcess
from tests.server import PASSWORD, ServerProcess, free_port
from tests.test_reattach import output_until
from tests.test_ws import frames_until_exit, next_frame, stdout_of

COMPOSE = ROOT / "deploy" / "compose.yaml"
CLIENT = "127.0.0.3"
OTHER_CLIENT = "127.0.0.4"
PROXY = "127.0.0.2"  # nginx reaches the servers from here (tests/nginx.py proxy_bind)
PER_ADDRESS = 20
"""Sign-ins a minute per client address on each replica: room for the other tests' sign-ups
from 127.0.0.1, and few enough for one test to go past."""


# The compose file ----------------------------------------------------------------------


def test_compose_runs_two_replicas_on_postgres_behind_nginx() -> None:
    """Its images cannot be pulled here (no registry): its structure is what is checked."""
    compose = yaml.safe_load(COMPOSE.read_text())
    services = compose["services"]
    replicas = [name for name, service in services.items() if "build" in service]
    assert replicas == ["server-1", "server-2"]
    assert services["postgres"]["image"] == "postgres:15"
    nginx = services["nginx"]
    assert nginx["image"].startswith("nginx:")
    assert "./nginx.conf:/etc/nginx/templates/default.conf.template:ro" in nginx["volumes"]
    assert "./nginx-main.conf:/etc/nginx/nginx.conf:ro" in nginx["volumes"]
    nginx_address = nginx["networks"]["execstream"]["ipv4_address"]
    for name in replicas:
        service = services[name]
        assert service["build"]["dockerfile"] == "deploy/Dockerfile.server"
        env = service["environment"]
        assert env["EXECSTREAM_DATABASE_URL"].startswith("postgresql+asyncpg://")
        assert env["EXECSTREAM_TRUSTED_PROXIES"] == nginx_address
        assert env["EXECSTREAM_MAX_BODY_BYTES"] == nginx["environment"]["EXECSTREAM_MAX_BODY_BYTES"]
        assert env["EXECSTREAM_INSTANCE_PREFIX"] == name
        assert "/var/run/docker.sock:/var/run/docker.sock" in service["volumes"]
    upstreams = nginx["environment"]["EXECSTREAM_UPSTREAMS"]
    assert upstreams == "server server-1:8000; server server-2:8000;"


# The server's image --------------------------------------------------------------------


def docker(*args: str, timeout: float = 60) -> str:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"docker {' '.join(args)} failed:\n{done.stderr}"
    return done.stdout.strip()


@pytest.fixture(scope="module")
def server_image(settings) -> str:
    """deploy/Dockerfile.server built on the engine; the build here cannot reach PyPI, so it
    installs from the wheelhouse the host's pip downloaded (scripts/server-wheels.sh)."""
    subprocess.run([str(ROOT / "scripts" / "server-wheels.sh")], check=True, timeout=300)
    tag = f"execstream-server:{settings.image.rsplit(':', 1)[-1]}"
    docker(
        "build", "--quiet", "--network", "host", "--build-arg", "PIP_NO_INDEX=1",
        "-f", str(ROOT / "deploy" / "Dockerfile.server"), "-t", tag, str(ROOT),
        timeout=600,
    )  # fmt: skip
    return tag


@pytest.fixture
def server_container(server_image: str, settings) -> Iterator[tuple[str, str]]:
    """The image run as the operator would: the engine's socket mounted, its group added.
    On the host's network (the port a setting), so the test needs no bridge of the engine's:
    the shared engine here has lost its docker0 bridge once already."""
    port = free_port()
    gid = str(os.stat("/var/run/docker.sock").st_gid)
    name = f"{SUITE}-server"
    docker(
        "run", "--detach", "--name", name, "--group-add", gid,
        "--volume", "/var/run/docker.sock:/var/run/docker.sock",
        "--network", "host",
        "--env", "EXECSTREAM_HOST=127.0.0.1",
        "--env", f"EXECSTREAM_PORT={port}",
        "--env", f"EXECSTREAM_IMAGE={settings.image}",
        "--env", f"EXECSTREAM_INSTANCE_PREFIX={SUITE}",
        "--env", "EXECSTREAM_POOL_MIN=1",
        server_image,
    )  # fmt: skip
    try:
        yield name, f"127.0.0.1:{port}"
    finally:
        # Stopped first, so it removes its own containers; then with its data volume.
        for args in (["stop", "--time", "30", name], ["rm", "--force", "--volumes", name]):
            subprocess.run(["docker", *args], capture_output=True, timeout=60)


def wait_ready(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"the server at {url} was not ready within {timeout} s")


def sign_up(url: str) -> str:
    credentials = {"username": f"u{os.urandom(6).hex()}", "password": PASSWORD}
    with httpx.Client(base_url=url) as client:
        client.post("/api/v1/auth/register", json=credentials).raise_for_status()
        response = client.post("/api/v1/auth/token", data=credentials)
        response.raise_for_status()
        return str(response.json()["access_token"])


def health(name: str) -> str:
    return docker("inspect", "--format", "{{.State.Health.Status}}", name)


@pytest.mark.docker
async def test_the_server_image_runs_programs_through_the_mounted_socket(
    server_container: tuple[str, str],
) -> None:
    name, address = server_container
    url = f"http://{address}"
    wait_ready(url)
    assert docker("exec", name, "id", "-u") != "0"
    token = sign_up(url)
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        response = await client.post(
            "/api/v1/code/execute",
            json={"language": "python", "code": "print(6 * 7)"},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert response.status_code == 200, response.text
        assert response.json()["output"] == "42\n"
        # The page's own files are in the image.
        loader = await client.get("/vendor/monaco-editor/min/vs/loader.js")
        assert loader.status_code == 200
    frames = await interactive_run(f"ws://{address}/api/v1/code/ws", token, url)
    assert frames[-1]["status"] == "success"

    deadline = time.monotonic() + 40  # the first check runs 10 s after start
    while health(name) != "healthy" and time.monotonic() < deadline:
        await asyncio.sleep(1)
    assert health(name) == "healthy"

    owner = re.search(r"server\.lease: instance (\S+)", container_log(name))
    assert owner, "the server logged no instance id"
    assert await containers_of(owner.group(1)), "the pool holds no warm container"
    docker("stop", "--time", "30", name, timeout=60)
    assert await containers_of(owner.group(1)) == []


def container_log(name: str) -> str:
    done = subprocess.run(["docker", "logs", name], capture_output=True, text=True, timeout=30)
    return done.stdout + done.stderr


async def containers_of(owner: str) -> list[str]:
    """The containers labelled with this server instance's id (the suite's prefix)."""
    async with aiodocker.Docker() as engine:
        found = await engine.containers.list(
            all=True, filters={"label": [f"{OWNER_LABEL}={owner}"]}
        )
    return [c.id for c in found]


async def interactive_run(ws_url: str, token: str, origin: str) -> list[dict[str, Any]]:
    """An interactive run: the prompt arrives while the program waits, then the answer."""
    headers = {"Authorization": f"Bearer {token}", "Origin": origin}
    frames: list[dict[str, Any]] = []
    async with asyncio.timeout(60), connect(ws_url, additional_headers=headers) as ws:
        code = 'name = input("Name? ")\nprint(f"Hello, {name}!")'
        await ws.send(json.dumps({"type": "run", "language": "python", "code": code}))
        prompt = ""
        while prompt != "Name? ":
            frame = json.loads(await ws.recv())
            frames.append(frame)
            prompt += frame.get("data", "") if frame["type"] == "output" else ""
            assert frame["type"] != "exit", frames
        await ws.send(json.dumps({"type": "stdin", "data": "Ada\n"}))
        while frames[-1]["type"] != "exit":
            frames.append(json.loads(await ws.recv()))
    output = "".join(f["data"] for f in frames if f["type"] == "output")
    assert output == "Name? Hello, Ada!\n"
    return frames


# nginx in front of two servers ---------------------------------------------------------


@dataclass
class Balanced:
    nginx: NginxProcess
    servers: list[ServerProcess]

    @property
    def url(self) -> str:
        return self.nginx.url

    def log_lines(self) -> list[str]:
        return [line for s in self.servers for line in s.log.read_text().splitlines()]

    def socket_opens(self) -> list[int]:
        """WebSockets each server accepted so far."""
        return [s.log.read_text().count('"WebSocket /api/v1/code/ws') for s in self.servers]

    def access_lines(self, request: str) -> list[str]:
        """uvicorn's access lines for ``request`` ("GET /healthz"), from both servers."""
        return [line for line in self.log_lines() if f'"{request} ' in line]


def client_of(line: str) -> str:
    """The client address of an access line: ``INFO:     127.0.0.3:40000 - "GET ..."``."""
    return line.split()[1].rsplit(":", 1)[0]


@pytest.fixture(scope="module")
def balanced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Balanced]:
    """Two servers on one SQLite file behind nginx, which they trust and nobody else."""
    folder = tmp_path_factory.mktemp("balanced")
    shared = {
        "EXECSTREAM_DATABASE_URL": f"sqlite+aiosqlite:///{folder / 'shared.db'}",
        "EXECSTREAM_JWT_SECRET": os.urandom(32).hex(),
        "EXECSTREAM_TRUSTED_PROXIES": PROXY,
        # Per hour, not per minute: on a loaded machine twice PER_ADDRESS sign-ins (each hashes
        # a password) can take longer than a minute, and a sliding minute would forget them.
        "EXECSTREAM_THROTTLE_PER_ADDRESS": f"{PER_ADDRESS}/hour",
        "EXECSTREAM_POOL_MIN": "1",
        "EXECSTREAM_LOG_LEVEL": "info",
        "EXECSTREAM_REATTACH_SECONDS": "60",  # the default is 15: room for a busy machine
    }
    servers = [ServerProcess(folder / name, **shared) for name in ("a", "b")]
    servers[0].start()  # the first creates the database; the second finds it made
    servers[1].start()
    nginx = NginxProcess(folder / "nginx", [f"127.0.0.1:{s.port}" for s in servers])
    try:
        yield Balanced(nginx.start(), servers)
    finally:
        nginx.stop()
        for server in servers:
            server.stop()


def from_address(address: str) -> httpx.HTTPTransport:
    return httpx.HTTPTransport(local_address=address)


@pytest.mark.docker
async def test_a_websocket_run_through_nginx_streams_and_takes_input(
    balanced: Balanced,
) -> None:
    token = sign_up(balanced.url)
    frames = await interactive_run(balanced.nginx.ws_url, token, origin=balanced.url)
    assert frames[0]["type"] == "started"
    assert frames[-1]["status"] == "success"


async def test_a_users_sockets_all_reach_one_replica(balanced: Balanced) -> None:
    """So an ``attach`` after a lost socket finds the replica that holds the run, whether
    the token comes in the query string (the editor) or in Authorization (other clients)."""
    for _ in range(4):
        token = sign_up(balanced.url)
        before = balanced.socket_opens()
        for n in range(4):
            if n % 2:
                opened = connect(f"{balanced.nginx.ws_url}?token={token}")
            else:
                headers = {"Authorization": f"Bearer {token}"}
                opened = connect(balanced.nginx.ws_url, additional_headers=headers)
            async with opened as ws:
                await ws.send(json.dumps({"type": "prepare", "language": "python"}))
        await asyncio.sleep(0.3)  # the access lines are written
        grown = [after - was for after, was in zip(balanced.socket_opens(), before, strict=True)]
        assert sorted(grown) == [0, 4], grown


@pytest.mark.docker
async def test_a_lost_socket_reattaches_through_nginx_to_the_replica_holding_its_run(
    balanced: Balanced,
) -> None:
    """The editor after a reload: a new socket through the balancer, with the same token,
    reaches the replica that runs the program; the output so far comes back, then input
    goes on to the same program."""
    token = sign_up(balanced.url)
    url = f"{balanced.nginx.ws_url}?token={token}"
    code = "print('before', flush=True)\nname = input('Name? ')\nprint('Hello', name)"
    before = balanced.socket_opens()
    async with connect(url) as ws:
        await ws.send(json.dumps({"type": "run", "language": "python", "code": code}))
        started = await next_frame(ws, timeout=60)
        assert started["type"] == "started", started
        await output_until(ws, "Name? ")
    async with connect(url) as ws:  # the socket was lost; the program waits for its name
        await ws.send(json.dumps({"type": "attach", "run_id": started["run_id"]}))
        assert (await next_frame(ws))["type"] == "attached"
        assert stdout_of(await output_until(ws, "Name? ")) == "before\nName? "
        await ws.send(json.dumps({"type": "stdin", "data": "Ada\n"}))
        frames = await frames_until_exit(ws)
    assert stdout_of(frames) == "Hello Ada\n" and frames[-1]["status"] == "success"
    await asyncio.sleep(0.3)  # the access lines are written
    grown = [after - was for after, was in zip(balanced.socket_opens(), before, strict=True)]
    assert sorted(grown) == [0, 2], grown


@pytest.mark.docker
def test_rest_through_nginx_reaches_both_replicas(balanced: Balanced) -> None:
    token = sign_up(balanced.url)
    with httpx.Client(base_url=balanced.url, timeout=60) as client:
        client.headers["Authorization"] = f"Bearer {token}"
        ids = []
        for n in range(4):
            response = client.post(
                "/api/v1/code/execute", json={"language": "python", "code": f"print({n})"}
            )
            assert response.status_code == 200, response.text
            assert response.json()["output"] == f"{n}\n"
            ids.append(response.json()["execution_id"])
        history = client.get("/api/v1/code/history").json()
        assert {item["id"] for item in history} == set(ids)
        too_large = client.post(
            "/api/v1/code/execute",
            content=b"x" * (512 * 1024 + 1),
            headers={"Content-Type": "application/json"},
        )
        assert too_large.status_code == 413
        assert too_large.json()["code"] == "body_too_large"
        assert client.get("/metrics").status_code == 404
    for server in balanced.servers:
        assert '"POST /api/v1/code/execute ' in server.log.read_text()


def test_the_servers_see_and_throttle_the_real_client(balanced: Balanced) -> None:
    statuses = []
    with httpx.Client(base_url=balanced.url, transport=from_address(CLIENT)) as client:
        for n in range(2 * PER_ADDRESS + 1):
            # A new name each time: the per-username limit is not what answers.
            wrong = {"username": f"nobody{n}", "password": "wrong"}
            spoofed = {"X-Forwarded-For": f"203.0.113.{n}"}
            status = client.post("/api/v1/auth/token", data=wrong, headers=spoofed).status_code
            statuses.append(status)
            if status == 429:
                break
    # PER_ADDRESS an hour on each of the two replicas, whatever address the client claims.
    assert statuses[-1] == 429, statuses
    with httpx.Client(base_url=balanced.url, transport=from_address(OTHER_CLIENT)) as client:
        other = {"username": "somebody", "password": "wrong"}
        assert client.post("/api/v1/auth/token", data=other).status_code == 401

    lines = balanced.access_lines("POST /api/v1/auth/token")
    # Every client as it connected to nginx (the other tests' from 127.0.0.1); never
    # nginx's own address, never what a client claimed.
    assert (
        {CLIENT, OTHER_CLIENT}
        <= {client_of(line) for line in lines}
        <= {
            "127.0.0.1",
            CLIENT,
            OTHER_CLIENT,
        }
    ), lines
    audit = [
        json.loads(line)
        for s in balanced.servers
        for line in s.log.read_text().splitlines()
        if line.startswith("{")
    ]  # type: ignore[attr-defined]
    assert {entry["client"] for entry in audit if "client" in entry} <= {CLIENT, OTHER_CLIENT}


def test_forwarded_headers_are_ignored_from_anyone_but_nginx(balanced: Balanced) -> None:
    server = balanced.servers[0]
    spoofed = {"X-Forwarded-For": "198.51.100.7"}
    with httpx.Client(base_url=server.url, transport=from_address(CLIENT)) as client:
        assert client.get("/healthz", headers=spoofed).status_code == 200
    lines = balanced.access_lines("GET /healthz")
    assert CLIENT in {client_of(line) for line in lines}, lines
    assert not any("198.51.100.7" in line for line in lines)
