"""All settings in one place: defaults here, overridden by `EXECSTREAM_*` environment variables."""

from __future__ import annotations

import dataclasses
import socket
from functools import cached_property
from pathlib import Path
from typing import Literal

import annotated_types
import limits
from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from sandbox import Limits

KB = 1024
MB = 1024 * KB
GB = 1024 * MB
ENGINE_SCHEMES = ("unix://", "tcp://", "http://", "https://")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EXECSTREAM_", frozen=True)

    # Serving
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    log_level: Literal["critical", "error", "warning", "info", "debug", "trace"] = "info"
    instance_prefix: str = Field(default_factory=socket.gethostname, min_length=1, max_length=64)
    """Start of this server instance's id (then random hex): it labels the containers it makes."""
    trusted_proxies: str = ""
    """Comma-separated addresses (or ``*``) of reverse proxies whose X-Forwarded-For and
    X-Forwarded-Proto are believed; by default none, so the client is the TCP peer."""

    # Sandbox
    backend: Literal["docker", "local"] = "docker"
    image: str = "execstream-executor:latest"
    docker_url: str | None = None
    """One engine's URL; the former name of ``docker_urls``, read when that is unset."""
    docker_urls: str = ""
    """Comma-separated engine URLs (``unix://``, ``tcp://``): with more than one, each run goes
    to the least-loaded engine that answers. ``tcp://`` engines use TLS client certificates
    when ``DOCKER_TLS_VERIFY`` is set (``ca.pem``, ``cert.pem``, ``key.pem`` in
    ``DOCKER_CERT_PATH``). Empty: ``docker_url``, else ``DOCKER_HOST``, else the local socket."""
    engine_probe_seconds: float = Field(default=2.0, ge=0.1, le=600)
    """With several engines, how often each is pinged; one that does not answer within
    ``engine_timeout`` is down (no runs, its runs end) until it answers again."""
    runtime: Literal["auto", "runc", "runsc"] = "auto"
    """Container runtime: ``auto`` uses gVisor (runsc) when the engine has it, else runc."""
    pool_min: int = Field(default=2, ge=0, le=1_000)
    """Warm containers kept ready per launcher whatever the demand."""
    pool_max: int = Field(default=128, ge=0, le=1_000)
    """Warm containers per launcher at most, however many sessions announce it; 0 turns
    the pool off."""
    pool_size: int | None = Field(default=None, ge=0, le=1_000)
    """The former name of ``pool_min``, still read: 0 turns the pool off, as it used to."""
    pool_memory_bytes: int = Field(default=2560 * MB, ge=0, le=1024 * GB)
    """Memory all idle warm containers may hold together (each counted at its runtime's
    measured idle cost, sandbox/docker.py IDLE_BYTES); it caps every launcher's target."""
    pool_shrink_seconds: float = Field(default=60.0, ge=1, le=86400)
    """Warm containers beyond the target are removed once they were surplus this long."""
    engine_concurrency: int = Field(default=4, ge=1, le=256)
    """Containers being started at once (cold starts first, then pool fills); the rest wait."""
    pool_idle_seconds: float = Field(default=600.0, ge=10, le=86400)
    """A container that got no program in this time ends itself (the pool replaces it first)."""
    engine_timeout: float = Field(default=5.0, gt=0, le=120)
    """Seconds for each call to the engine that a run waits for (create, attach, start...)."""

    # Capacity: runs at once, so one user (or a crowd) cannot starve everyone else
    max_runs: int = Field(default=64, ge=1, le=10_000)
    max_runs_per_user: int = Field(default=8, ge=1, le=1_000)
    queue_max: int = Field(default=256, ge=0, le=100_000)
    """Runs that may wait for a slot, in all; past it a run is refused (``server_busy``)."""
    queue_per_user: int = Field(default=32, ge=0, le=10_000)
    """Runs one user may have waiting; past it a run is refused (``too_many_runs``)."""
    slot_poll_seconds: float = Field(default=0.25, ge=0.01, le=10)
    """Replicas on one PostgreSQL: how often a run waiting for a slot held by another replica
    looks again (a slot freed on its own replica wakes it at once)."""

    # Operators
    metrics: Literal["public", "admin", "off"] = "admin"
    """Who may read ``/metrics``: anyone, admins (with a token), or nobody (not served)."""

    # Limits of one run. Zero is not "none" here: Docker reads 0 as unlimited, so each has a floor.
    max_wall_time: float = Field(default=30.0, ge=0.1, le=3600)
    memory_bytes: int = Field(default=128 * MB, ge=6 * MB, le=64 * GB)
    cpus: float = Field(default=0.5, ge=0.01, le=256)
    pids: int = Field(default=64, ge=1, le=32_768)
    output_bytes: int = Field(default=10 * KB, ge=1, le=64 * MB)
    image_bytes: int = Field(default=1 * MB, ge=1 * KB, le=16 * MB)
    images: int = Field(default=5, ge=0, le=50)
    python_preload: bool = True
    test_concurrency: int = Field(default=2, ge=1, le=20)
    code_bytes: int = Field(default=50 * KB, ge=1, le=16 * MB)
    stdin_bytes: int = Field(default=64 * KB, ge=0, le=64 * MB)
    stdin_backlog_bytes: int = Field(default=256 * KB, ge=1, le=64 * MB)
    """Typed input a program has not read yet, at most; past it, input is refused."""
    tmp_bytes: int = Field(default=16 * MB, ge=1 * MB, le=16 * GB)
    open_files: int = Field(default=256, ge=16, le=65_536)
    file_bytes: int = Field(default=8 * MB, ge=1, le=16 * GB)

    # Limits of a compile stage (compiled languages), in a container of its own
    compile_wall_time: float = Field(default=15.0, ge=0.1, le=3600)
    compile_memory_bytes: int = Field(default=512 * MB, ge=32 * MB, le=64 * GB)
    compile_cpus: float = Field(default=2.0, ge=0.01, le=256)
    """CPU share of a compile container; capped at the engine's cores."""
    compile_output_bytes: int = Field(default=10 * KB, ge=1, le=64 * MB)
    """The compiler's messages, at most; the rest is cut (the compile goes on)."""

    # Protocol and HTTP edge
    max_frame_bytes: int = Field(default=128 * KB, ge=1 * KB, le=64 * MB)
    """Largest WebSocket frame accepted from a client: room for the largest code plus stdin."""
    max_body_bytes: int = Field(default=512 * KB, ge=1 * KB, le=64 * MB)
    """Largest HTTP request body, JSON or form; refused with 413 while it is being read."""
    allowed_origins: str = ""
    """Comma-separated origins whose pages may open a WebSocket; empty: the server's own."""
    max_sockets_per_user: int = Field(default=16, ge=1, le=10_000)
    reattach_seconds: float = Field(default=15.0, ge=0, le=3600)
    """How long a run whose socket closed without a Stop waits for its owner to ``attach``
    before it is killed; 0 kills it at once."""
    reattach_replay_bytes: int = Field(default=1 * MB, ge=1 * KB, le=256 * MB)
    """Frames kept per live run (JSON bytes) for the replay an ``attach`` starts with."""

    # Sign-in abuse
    throttle_per_address: str = "300/minute"
    """Sign-in and sign-up requests per client address (a whole school may share one NAT)."""
    throttle_per_username: str = "10/minute"
    """Sign-in and sign-up requests per username: this is what stops password guessing."""
    hash_concurrency: int = Field(default=1, ge=1, le=64)
    """Password hashes computed at once (in threads, off the event loop)."""

    # Storage and accounts
    data_dir: Path = Path("data")
    database_url: str | None = None
    """SQLAlchemy async URL; defaults to a SQLite file in ``data_dir``. PostgreSQL:
    ``postgresql+asyncpg://user:password@host/name``."""
    database_pool_size: int = Field(default=20, ge=1, le=1_000)
    """Connections each server keeps open to PostgreSQL (as many more at a burst); SQLite
    always uses one."""
    jwt_secret: str | None = None
    """Signing secret for tokens; when unset, one is generated once into ``data_dir``."""
    token_minutes: int = Field(default=24 * 60, ge=1, le=366 * 24 * 60)
    allow_registration: bool = True
    history_days: int = Field(default=90, ge=1, le=100 * 365)
    """Stored runs older than this many days are purged."""
    history_per_user: int = Field(default=1000, ge=1, le=1_000_000)
    """Stored runs kept per user, at most; past it, the oldest are purged."""
    history_purge_seconds: float = Field(default=3600.0, gt=0, le=7 * 24 * 3600)
    """How often the purge of old runs runs, in the background."""
    checkpoint_seconds: float = Field(default=1.0, gt=0, le=60)
    """How often the output of running runs is saved, so a crash loses at most this much."""

    # Instances: containers belong to an instance whose lease is kept in the database
    lease_seconds: float = Field(default=30.0, gt=0, le=3600)
    """How long a lease lasts without a heartbeat: then its instance counts as dead."""
    heartbeat_seconds: float = Field(default=5.0, gt=0, le=600)
    sweep_seconds: float = Field(default=30.0, gt=0, le=3600)
    """How often a server sweeps the containers and runs of dead instances."""

    @model_validator(mode="before")
    @classmethod
    def _pool_size_is_the_minimum(cls, data: object) -> object:
        if not isinstance(data, dict) or data.get("pool_size") is None:
            return data
        size = data["pool_size"]
        data = {"pool_min": size, **data}
        if str(size).strip() == "0":
            data.setdefault("pool_max", 0)
        return data

    @model_validator(mode="after")
    def _pool_bounds(self) -> Settings:
        if self.pool_min > self.pool_max:
            raise ValueError(
                "EXECSTREAM_POOL_MIN must be at most EXECSTREAM_POOL_MAX "
                f"({self.pool_min} > {self.pool_max})"
            )
        return self

    @model_validator(mode="after")
    def _heartbeat_within_lease(self) -> Settings:
        if self.heartbeat_seconds * 2 > self.lease_seconds:
            raise ValueError(
                "EXECSTREAM_HEARTBEAT_SECONDS must be at most half of EXECSTREAM_LEASE_SECONDS, "
                "or a live server could be taken for dead"
            )
        return self

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("docker_urls")
    @classmethod
    def _engines(cls, value: str) -> str:
        urls = _split(value)
        for url in urls:
            if not url.startswith(ENGINE_SCHEMES):
                raise ValueError(f"expected URLs starting with {', '.join(ENGINE_SCHEMES)}")
        if len(set(urls)) < len(urls):
            raise ValueError("an engine is listed twice")
        return value

    @field_validator("throttle_per_address", "throttle_per_username")
    @classmethod
    def _rate(cls, value: str) -> str:
        try:
            item = limits.parse(value)
        except ValueError:
            raise ValueError("expected a rate such as 10/minute") from None
        if item.amount < 1:
            raise ValueError("expected a rate of at least 1 per period")
        return value

    @property
    def docker_url_list(self) -> list[str | None]:
        """The engines to use; ``[None]``: Docker's default (``DOCKER_HOST`` or the socket)."""
        return list(_split(self.docker_urls)) or [self.docker_url]

    @property
    def trusted_proxy_list(self) -> list[str]:
        return _split(self.trusted_proxies)

    @property
    def allowed_origin_list(self) -> list[str]:
        return [origin.rstrip("/").lower() for origin in _split(self.allowed_origins)]

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
            image_bytes=self.image_bytes,
            images=self.images,
        )

    @cached_property
    def compile_limits(self) -> Limits:
        """A compile container's limits: its tmpfs (counted in its memory) holds half."""
        return dataclasses.replace(
            self.limits,
            wall_time=self.compile_wall_time,
            memory_bytes=self.compile_memory_bytes,
            cpus=self.compile_cpus,
            pids=max(self.pids, 256),
            output_bytes=self.compile_output_bytes,
            tmp_bytes=self.compile_memory_bytes // 2,
            file_bytes=self.compile_memory_bytes // 2,
        )

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{self.data_dir / 'execstream.db'}"


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def explain(exc: ValidationError) -> str:
    """One line naming each bad variable, its value and what is allowed."""
    parts = []
    for error in exc.errors():
        name = str(error["loc"][0]) if error["loc"] else ""
        variable = f"EXECSTREAM_{name.upper()}"
        allowed = _allowed(name)
        reason = (
            f"allowed range {allowed}" if allowed else error["msg"].removeprefix("Value error, ")
        )
        parts.append(f"{variable}={error.get('input')!s} is refused: {reason}")
    return "invalid setting: " + "; ".join(parts)


def _allowed(name: str) -> str:
    """``low..high`` from a field's bounds, or empty when it has none."""
    field = Settings.model_fields.get(name)
    if field is None:
        return ""
    low = high = ""
    for rule in field.metadata:
        if isinstance(rule, annotated_types.Ge):
            low = str(rule.ge)
        elif isinstance(rule, annotated_types.Le):
            high = str(rule.le)
    return f"{low}..{high}" if low or high else ""
