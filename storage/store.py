"""The database's engines and sessions: one writer, readers beside it, and the schema.

``Store`` connects to whatever database its URL names and brings the schema to the newest
migration; the queries live in the modules that inherit it, one concern each.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession

from storage import migrations

HEALTH_TIMEOUT = 5.0


class Store:
    """Engines and sessions of one database; safe to share between tasks: every operation
    has its own session and connection."""

    def __init__(self, url: str, pool_size: int = 20) -> None:
        self.url: URL = make_url(url)
        self.pool_size = pool_size
        """Connections kept open to a database server (SQLite has one, see ``open``)."""
        self._engine: AsyncEngine | None = None
        self._reader: AsyncEngine | None = None
        self._sessions: async_sessionmaker[AsyncSession] | None = None
        self._reads: async_sessionmaker[AsyncSession] | None = None
        self._quick: sqlite3.Connection | None = None

    async def open(self) -> None:
        """Connect, and bring the schema to the newest migration."""
        is_sqlite = self.url.get_backend_name() == "sqlite"
        if is_sqlite:
            _make_parent_folder(self.url)
        # SQLite lets one writer in at a time, and a connection that finds the file locked
        # sleeps in growing steps (up to 100 ms) before it tries again: under a burst of
        # runs, each storing its record, those sleeps were most of a run's start. One
        # connection queues the operations instead (each takes a millisecond or two).
        options: dict[str, Any] = {"pool_size": 1, "max_overflow": 0}
        if not is_sqlite:
            # Connections beyond the pool are closed when given back, and a new one costs
            # tens of milliseconds: a burst of admissions must find theirs open.
            options = {"pool_size": self.pool_size, "max_overflow": self.pool_size}
        engine = create_async_engine(self.url, **options)
        if is_sqlite:
            event.listen(engine.sync_engine, "connect", _configure_sqlite)
        try:
            async with engine.begin() as conn:
                await conn.run_sync(migrations.upgrade)
        except BaseException:
            await engine.dispose()
            raise
        self._engine = engine
        # Records are handed out after their session is gone, so keep them loaded.
        self._sessions = async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)
        self._reader = _reader(engine, self.url) if is_sqlite else engine
        self._reads = async_sessionmaker(self._reader, class_=AsyncSession, expire_on_commit=False)
        self._quick = _quick_reader(self.url) if is_sqlite else None

    async def close(self) -> None:
        if self._engine is None:
            return
        engine, reader = self._engine, self._reader
        if self._quick is not None:
            self._quick.close()
            self._quick = None
        self._engine = self._reader = self._sessions = self._reads = None
        if reader is not None and reader is not engine:
            await reader.dispose()
        await engine.dispose()

    async def revision(self) -> str | None:
        """The schema's migration revision."""
        if self._engine is None:
            raise RuntimeError("the database is not open")
        async with self._engine.connect() as conn:
            return await conn.run_sync(migrations.current)

    async def health(self) -> dict[str, Any]:
        """Whether a query goes through; never raises."""
        shown = self.url.render_as_string(hide_password=True)
        if self._engine is None:
            return {"ok": False, "url": shown, "error": "database is not open"}
        try:
            async with asyncio.timeout(HEALTH_TIMEOUT), self._engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except Exception as exc:
            return {"ok": False, "url": shown, "error": f"{type(exc).__name__}: {exc}"}
        return {"ok": True, "url": shown}

    def _session(self) -> AsyncSession:
        if self._sessions is None:
            raise RuntimeError("the database is not open")
        return self._sessions()

    def _read_session(self) -> AsyncSession:
        if self._reads is None:
            raise RuntimeError("the database is not open")
        return self._reads()


def _reader(writer: AsyncEngine, url: URL) -> AsyncEngine:
    """Connections for reads that must not wait behind the one writing connection.

    In WAL mode a reader never takes the write lock, so several of them cannot make the
    writer sleep in SQLite's busy handler. An in-memory database is one per connection:
    it keeps the writer's.
    """
    database = url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return writer
    reader = create_async_engine(url, pool_size=4, max_overflow=0)
    event.listen(reader.sync_engine, "connect", _configure_sqlite)
    return reader


def _quick_reader(url: URL) -> sqlite3.Connection | None:
    """A read-only connection used on the event loop itself, for the check before each run.

    Going through a thread costs a few hand-offs of a fraction of a millisecond each, more
    than the read: an indexed lookup in WAL mode takes microseconds and never waits for a
    writer (the busy timeout bounds the rare wait on a checkpoint). Each read is its own
    transaction (autocommit), so it sees what other processes committed.
    """
    database = url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    uri = Path(database).resolve().as_uri() + "?mode=ro"
    conn = sqlite3.connect(uri, uri=True, check_same_thread=False, isolation_level=None)
    conn.execute("PRAGMA busy_timeout=20")
    return conn


def _make_parent_folder(url: URL) -> None:
    database = url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    Path(database).parent.mkdir(parents=True, exist_ok=True)


def _configure_sqlite(dbapi_connection: Any, connection_record: Any) -> None:
    # WAL lets readers go on while one connection writes; with it, synchronous=NORMAL keeps
    # every commit through a crash of the server (only a power cut may lose the last ones)
    # and spares each commit an fsync, which runs feel: a run is written when it starts.
    # SQLite checks foreign keys only when asked, on every connection.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
