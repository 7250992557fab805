"""A throw-away PostgreSQL 15 server for the tests: initdb into a temporary folder, pg_ctl
start on loopback, a fresh database per test, everything removed at the end.

No system service is used (scripts/ensure-postgres.sh installs the programs). initdb refuses
to run as root, so under root the server runs as ``nobody`` in a folder that user owns.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

from tests.server import free_port

DEBIAN_BIN = Path("/usr/lib/postgresql/15/bin")
SUPERUSER = "postgres"


def program(name: str) -> str:
    """A PostgreSQL program from the PATH, else from Debian's folder for version 15."""
    found = shutil.which(name) or (DEBIAN_BIN / name if (DEBIAN_BIN / name).exists() else None)
    if found is None:
        raise RuntimeError(f"{name} not found: run scripts/ensure-postgres.sh")
    return str(found)


class PostgresServer:
    """One PostgreSQL server in a folder of its own, listening on 127.0.0.1 only."""

    def __init__(self) -> None:
        # Not under pytest's temporary folder: that one is private to root, and the server may
        # run as another user.
        self.folder = Path(tempfile.mkdtemp(prefix="execstream-pg-"))
        self.data = self.folder / "data"
        self.port = free_port()
        self.user = "nobody" if os.geteuid() == 0 else None

    def start(self) -> PostgresServer:
        if self.user is not None:
            shutil.chown(self.folder, self.user)
        self._run(
            program("initdb"),
            "--pgdata", str(self.data), "--username", SUPERUSER, "--auth", "trust",
            "--encoding", "UTF8", "--no-sync",
        )  # fmt: skip
        # fsync off: a test database needs no durability, and the machine is shared. A time
        # zone far from UTC, so that no query can lean on the server's being UTC.
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.folder} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
            "-c max_connections=200 -c timezone=Pacific/Kiritimati"
        )
        self._run(
            program("pg_ctl"), "--pgdata", str(self.data), "--log", str(self.folder / "log"),
            "--wait", "--options", options, "start",
        )  # fmt: skip
        return self

    def stop(self) -> None:
        try:
            self._run(program("pg_ctl"), "--pgdata", str(self.data), "--mode", "immediate", "stop")
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)

    def url(self, database: str = SUPERUSER) -> str:
        """The SQLAlchemy URL of ``database`` on this server."""
        return f"postgresql+asyncpg://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """Create an empty database; its URL."""
        name = f"t{uuid.uuid4().hex[:12]}"
        self.sql(f"CREATE DATABASE {name}")
        return self.url(name)

    def sql(self, statement: str, database: str = SUPERUSER) -> str:
        """Run one statement with psql; its unaligned output."""
        done = subprocess.run(
            [
                program("psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", SUPERUSER,
                "-d", database, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", statement,
            ],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        return done.stdout.strip()

    def _run(self, *command: str) -> None:
        if self.user is not None:
            command = ("runuser", "-u", self.user, "--", *command)
        subprocess.run(command, cwd=self.folder, check=True, capture_output=True)
