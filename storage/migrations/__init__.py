"""Schema migrations (Alembic): every change to the tables is a revision in ``versions/``.

``upgrade`` brings any database to the newest revision. A database made before migrations
existed (by ``create_all``) has exactly the baseline's tables: it is stamped with the
baseline first, then upgraded like any other.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect

FOLDER = Path(__file__).parent
BASELINE = "0001"
"""The schema of the last version without migrations."""


def config(connection: Connection) -> Config:
    """Alembic's configuration, running on ``connection``."""
    settings = Config()
    settings.set_main_option("script_location", str(FOLDER))
    settings.attributes["connection"] = connection  # env.py runs on it
    return settings


def upgrade(connection: Connection) -> None:
    """Bring the schema to the newest revision. Synchronous: run it with ``run_sync``."""
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
