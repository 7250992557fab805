"""All settings in one place: defaults here, overridden by `EXECSTREAM_*` environment variables."""

from __future__ import annotations

import socket
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from sandbox import Limits

KB = 1024
MB = 1024 * KB


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EXECSTREAM_", frozen=True)

    # Serving
    host: str = "127.0.0.1"
    port: int = 8000
    log_level: str = "info"
    instance_prefix: str = Field(default_factory=socket.gethostname)
    """Start of this server instance's id (then random hex): it labels the containers it makes."""

    # Sandbox
    backend: Literal["docker", "local"] = "docker"
    image: str = "execstream-executor:latest"
    docker_url: str | None = None
    runtime: Literal["auto", "runc", "runsc"] = "auto"
    """Container runtime: ``auto`` uses gVisor (runsc) when the engine has it, else runc."""
    pool_size: int = Field(default=2, ge=0, le=32)
    """Warm containers kept ready per language; 0 turns the pool off."""

    # Capacity: runs at once, so one user (or a crowd) cannot starve everyone else
    max_runs: int = Field(default=64, ge=1)
    max_runs_per_user: int = Field(default=8, ge=1)

    # Limits of one run
    max_wall_time: float = Field(default=30.0, gt=0)
    memory_bytes: int = 128 * MB
    cpus: float = 0.5
    pids: int = 64
    output_bytes: int = 10 * KB
    code_bytes: int = 50 * KB
    stdin_bytes: int = 64 * KB
    stdin_backlog_bytes: int = 256 * KB
    """Typed input a program has not read yet, at most; past it, input is refused."""
    tmp_bytes: int = 16 * MB
    open_files: int = 256
    file_bytes: int = 8 * MB

    # Protocol
    max_frame_bytes: int = 128 * KB
    """Largest WebSocket frame accepted from a client: room for the largest code plus stdin."""

    # Storage and accounts
    data_dir: Path = Path("data")
    database_url: str | None = None
    """SQLAlchemy async URL; defaults to a SQLite file in ``data_dir``."""
    jwt_secret: str | None = None
    """Signing secret for tokens; when unset, one is generated once into ``data_dir``."""
    token_minutes: int = Field(default=24 * 60, gt=0)
    allow_registration: bool = True

    @cached_property
    def limits(self) -> Limits:
        return Limits(
            wall_time=self.max_wall_time,
            memory_bytes=self.memory_bytes,
            cpus=self.cpus,
            pids=self.pids,
            output_bytes=self.output_bytes,
            code_bytes=self.code_bytes,
            stdin_backlog_bytes=self.stdin_backlog_bytes,
            tmp_bytes=self.tmp_bytes,
            open_files=self.open_files,
            file_bytes=self.file_bytes,
        )

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{self.data_dir / 'execstream.db'}"
