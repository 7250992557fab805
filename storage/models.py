"""The tables: users, the runs they stored, and the server instances that run them.

The schema is changed only through migrations (``storage/migrations``); these models and the
newest migration describe the same tables.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Dialect, Index, LargeBinary, Text, TypeDecorator
from sqlmodel import Field, SQLModel


class UTCDateTime(TypeDecorator[datetime]):
    """A moment stored in UTC and read back timezone-aware, whatever the database keeps.

    SQLite has no time zones: it gives back naive values, which are UTC because we wrote UTC.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: give it a time zone")
        return value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)  # type: ignore[no-any-return]
        return value.astimezone(UTC)  # type: ignore[no-any-return]


USER = "user"
ADMIN = "admin"
ROLES = (USER, ADMIN)


def utc_now() -> datetime:
    return datetime.now(UTC)


class User(SQLModel, table=True):
    __tablename__ = "users"

    id: int | None = Field(default=None, primary_key=True)
    username: str = Field(unique=True, index=True)
    password_hash: str = Field(repr=False)  # kept out of logs
    created_at: datetime = Field(default_factory=utc_now, sa_type=UTCDateTime)
    role: str = Field(default=USER, sa_column_kwargs={"server_default": USER})
    """``user`` or ``admin``."""


class CodeExecution(SQLModel, table=True):
    """One stored run: what was asked, what came out, how it ended."""

    __tablename__ = "code_executions"
    # The history queries: a user's runs newest first by start (id breaks ties), all of them or
    # one project's. The first also serves as the index of the foreign key, so user_id needs
    # none of its own. Retention finds old runs by created_at; the sweeper finds the runs
    # still marked running, a handful at any time, by status.
    __table_args__ = (
        Index("ix_code_executions_user_id_created_at_id", "user_id", "created_at", "id"),
        Index(
            "ix_code_executions_user_id_project_id_created_at_id",
            "user_id",
            "project_id",
            "created_at",
            "id",
        ),
        Index("ix_code_executions_created_at", "created_at"),
        Index("ix_code_executions_status_instance_id", "status", "instance_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="users.id", ondelete="CASCADE")
    project_id: int | None = None
    language: str
    code: str = Field(sa_type=Text)
    stdin: str | None = Field(default=None, sa_type=Text)
    output: str | None = Field(default=None, sa_type=Text)
    """Standard output as delivered to the client."""
    error: str | None = Field(default=None, sa_type=Text)
    """Standard error as delivered to the client."""
    exit_code: int | None = None
    signal: str | None = None
    status: str
    execution_time: float
    output_truncated: bool = False
    created_at: datetime = Field(default_factory=utc_now, sa_type=UTCDateTime)
    """When the run started."""
    instance_id: str | None = None
    """The server instance that ran it: while its status is ``running``, that instance's lease
    says whether it still can end it."""
    files: list[dict[str, str]] | None = Field(default=None, sa_type=JSON)
    """The program's other files ({"name", "content"}) beside ``code``, its entry file."""
    compile_output: str | None = Field(default=None, sa_type=Text)
    """The compiler's messages, as delivered (compiled languages only)."""
    compile_time: float | None = None
    """Seconds of the compile stage; ``execution_time`` counts the run stage only."""
    cpu_time: float | None = None
    """Seconds of CPU (user plus system) the program used, as its sandbox measured them."""
    memory_peak: int | None = Field(default=None, sa_type=BigInteger)
    """Bytes of peak resident memory of the program."""
    tests: list[dict[str, Any]] | None = Field(default=None, sa_type=JSON)
    """For a run against test cases: each test's result, as its ``test`` frame said it."""
    tests_passed: int | None = None
    tests_total: int | None = None
    image_count: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    """How many plots the run showed and ``run_images`` keeps (read apart: they are large)."""


class RunImage(SQLModel, table=True):
    """A plot a run showed, in the order it came; at most the run's image cap of them."""

    __tablename__ = "run_images"

    id: int | None = Field(default=None, primary_key=True)
    execution_id: int = Field(foreign_key="code_executions.id", ondelete="CASCADE", index=True)
    position: int
    mime: str
    data: bytes = Field(sa_type=LargeBinary, repr=False)


class Instance(SQLModel, table=True):
    """A running (or once running) server, with the lease that says it is alive.

    Its containers carry its id; once its lease has expired, any server on the same database
    removes them and marks its unfinished runs ``interrupted``.
    """

    __tablename__ = "instances"

    id: str = Field(primary_key=True)
    host: str
    """For people reading the table: the host and process it ran as."""
    pid: int
    started_at: datetime = Field(default_factory=utc_now, sa_type=UTCDateTime)
    heartbeat_at: datetime = Field(default_factory=utc_now, sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime, index=True)


class RunSlot(SQLModel, table=True):
    """A run slot taken by one instance for one user's run, from admission to its end.

    Replicas sharing a database count these to hold the per-user and global caps together;
    a slot counts only while its instance's lease is alive, so a dead replica's slots stop
    counting when its lease expires (and the sweep deletes them).
    """

    __tablename__ = "run_slots"

    id: int | None = Field(default=None, primary_key=True)
    instance_id: str = Field(index=True)
    user_id: int = Field(index=True)
    """No foreign key: a slot lives seconds, and taking one must stay a single insert."""
    taken_at: datetime = Field(default_factory=utc_now, sa_type=UTCDateTime)
