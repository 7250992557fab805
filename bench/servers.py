"""execstream servers in subprocesses, each on a free port with its own data folder."""

from __future__ import annotations

import os
import resource
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx

PASSWORD = "bench horse battery"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def raise_fd_limit() -> int:
    """Lift the soft open-files limit to the hard one; children started later inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def rss_bytes(pid: int) -> int:
    """VmRSS of one process (not its children), from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


class Server:
    """``python -m server.cli serve`` on 127.0.0.1, in a session of its own.

    Its own session keeps a Ctrl-C in the terminal away from it: the bench stops it with
    SIGTERM, after it has finished with it.
    """

    def __init__(self, name: str, data_dir: Path, pool_size: int) -> None:
        self.name = name
        self.pool_size = pool_size
        self.port = free_port()
        self.data_dir = data_dir
        self.log = data_dir / "server.log"
        self.env = {
            **os.environ,
            "EXECSTREAM_HOST": "127.0.0.1",
            "EXECSTREAM_PORT": str(self.port),
            "EXECSTREAM_DATA_DIR": str(data_dir),
            "EXECSTREAM_POOL_SIZE": str(pool_size),
            "EXECSTREAM_LOG_LEVEL": "warning",
        }
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/api/v1/code/ws"

    @property
    def pid(self) -> int:
        if self.process is None:
            raise RuntimeError(f"the {self.name} server is not running")
        return self.process.pid

    @property
    def owner(self) -> str:
        """The value of ``execstream.server`` on the containers this server makes."""
        return f"{socket.gethostname()}:{self.pid}"

    def launch(self) -> None:
        """Start the process; ``ready`` waits until it answers."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "server.cli", "serve"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def ready(self, timeout: float = 60) -> None:
        if self.process is None:
            raise RuntimeError(f"the {self.name} server was not launched")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} server exited at start:\n{self.log.read_text()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} server did not answer within {timeout} s")

    def stop(self, timeout: float = 30) -> int | None:
        """SIGTERM, then SIGKILL if it has not ended within ``timeout`` seconds."""
        process, self.process = self.process, None
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            return process.wait()

    def token(self) -> str:
        """Register a fresh user and sign in; returns its access token."""
        username = f"bench{uuid.uuid4().hex[:10]}"
        credentials = {"username": username, "password": PASSWORD}
        httpx.post(f"{self.url}/api/v1/auth/register", json=credentials).raise_for_status()
        response = httpx.post(f"{self.url}/api/v1/auth/token", data=credentials)
        response.raise_for_status()
        return str(response.json()["access_token"])
