"""A real execstream server in a subprocess, for the end-to-end tests and the benchmark."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx

PASSWORD = "correct horse battery"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """``execstream serve`` on a free port of 127.0.0.1, with its own data folder.

    It runs in a session of its own, so a Ctrl-C in the terminal does not reach it: whoever
    started it stops it with SIGTERM when done with it. A restart keeps port and folder.
    """

    def __init__(self, data_dir: Path, **env: str) -> None:
        self.port = free_port()
        self.data_dir = data_dir
        self.env = {
            **os.environ,
            "EXECSTREAM_HOST": "127.0.0.1",
            "EXECSTREAM_PORT": str(self.port),
            "EXECSTREAM_DATA_DIR": str(data_dir),
            "EXECSTREAM_LOG_LEVEL": "warning",
            # A closed socket kills its run at once, as before reattach: tests of caps and
            # queues open and close sockets back to back. Reattach's tests set their grace.
            "EXECSTREAM_REATTACH_SECONDS": "0",
            **env,
        }
        self.process: subprocess.Popen[bytes] | None = None
        self.pids: list[int] = []
        """Every process started for this server, restarts included."""
        self.log = data_dir / f"server-{self.port}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/api/v1/code/ws"

    @property
    def pid(self) -> int:
        if self.process is None:
            raise RuntimeError(f"the server on port {self.port} is not running")
        return self.process.pid

    @property
    def database(self) -> Path:
        """The SQLite file the server keeps its data (and its instance lease) in."""
        url = self.env.get("EXECSTREAM_DATABASE_URL")
        return Path(url.split("///", 1)[1]) if url else self.data_dir / "execstream.db"

    def instances(self) -> list[str]:
        """The instance ids this server's processes registered, oldest first."""
        with sqlite3.connect(self.database) as conn:
            rows = conn.execute("SELECT id, pid FROM instances ORDER BY started_at").fetchall()
        return [instance for instance, pid in rows if pid in self.pids]

    @property
    def owner(self) -> str:
        """The running instance's id: the ``execstream.owner`` label on its containers."""
        with sqlite3.connect(self.database) as conn:
            rows = conn.execute(
                "SELECT id FROM instances WHERE pid = ? ORDER BY started_at DESC", (self.pid,)
            ).fetchall()
        if not rows:
            raise RuntimeError(f"the server on port {self.port} has no lease (yet)")
        return str(rows[0][0])

    def start(self, timeout: float = 60) -> ServerProcess:
        self.launch()
        self.ready(timeout)
        return self

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
        self.pids.append(self.process.pid)

    def ready(self, timeout: float = 60) -> None:
        process = self.process
        if process is None:
            raise RuntimeError(f"the server on port {self.port} was not launched")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"server exited at start:\n{self.log.read_text()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"server did not answer within {timeout} s:\n{self.log.read_text()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int | None:
        """Send ``sig``, then SIGKILL if it has not ended within ``timeout`` seconds."""
        process, self.process = self.process, None
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(sig)
        try:
            return process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            return process.wait()

    def new_user(self) -> tuple[str, str]:
        """Register a fresh user and sign in; returns (username, token)."""
        username = f"u{uuid.uuid4().hex[:12]}"
        credentials = {"username": username, "password": PASSWORD}
        httpx.post(f"{self.url}/api/v1/auth/register", json=credentials).raise_for_status()
        token = httpx.post(f"{self.url}/api/v1/auth/token", data=credentials)
        token.raise_for_status()
        return username, str(token.json()["access_token"])
