"""Schema migrations (Alembic): every change to the tables is a revision in ``versions/``.

``upgrade`` brings any database to the newest revision. A database made before migrations
existed (by ``create_all``) has exactly the baseline's tables: it is stamped with the
baseline first, then upgraded like any other.

Replicas starting together each run ``upgrade`` on the one database: on PostgreSQL the first
takes an advisory lock for its transaction, the others wait for it and then find the schema
new already. (SQLite lets one writer in at a time by itself.)
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect, text

FOLDER = Path(__file__).parent
BASELINE = "0001"
"""The schema of the last version without migrations."""
MIGRATION_LOCK = 0x65786563_0001
"""PostgreSQL advisory lock key held while migrating (any number no other code uses)."""


def config(connection: Connection) -> Config:
    """Alembic's configuration, running on ``connection``."""
    settings = Config()
    settings.set_main_option("script_location", str(FOLDER))
    settings.attributes["connection"] = connection  # env.py runs on it
    return settings


def upgrade(connection: Connection) -> None:
    """Bring the schema to the newest revision. Synchronous: run it with ``run_sync``, in a
    transaction (the lock is held until it ends, and the DDL is part of it)."""
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
    settings = config(connection)
    tables = inspect(connection).get_table_names()
    if "alembic_version" not in tables and "users" in tables:
        command.stamp(settings, BASELINE)
    command.upgrade(settings, "head")


def current(connection: Connection) -> str | None:
    """The revision the database is at; None before any."""
    return MigrationContext.configure(connection).get_current_revision()


def head() -> str:
    head = ScriptDirectory(str(FOLDER)).get_current_head()
    assert head is not None
    return head
