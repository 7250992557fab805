"""The database: an async engine, one session per operation, and the queries we need."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import Table, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel import SQLModel, col, delete, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.errors import UsernameTaken
from storage.models import CodeExecution, User

HEALTH_TIMEOUT = 5.0

# Only ours, should anything else in the process declare SQLModel tables too.
TABLES: Sequence[Table] = [SQLModel.metadata.tables[name] for name in ("users", "code_executions")]


class Database:
    """Users and their stored runs, in whatever database ``url`` names.

    Safe to share between tasks: every operation has its own session and connection.
    """

    def __init__(self, url: str) -> None:
        self.url: URL = make_url(url)
        self._engine: AsyncEngine | None = None
        self._sessions: async_sessionmaker[AsyncSession] | None = None

    async def open(self) -> None:
        """Connect, and create the tables that are missing."""
        is_sqlite = self.url.get_backend_name() == "sqlite"
        if is_sqlite:
            _make_parent_folder(self.url)
        engine = create_async_engine(self.url)
        if is_sqlite:
            event.listen(engine.sync_engine, "connect", _configure_sqlite)
        try:
            async with engine.begin() as conn:
                await conn.run_sync(SQLModel.metadata.create_all, tables=TABLES)
        except BaseException:
            await engine.dispose()
            raise
        self._engine = engine
        # Records are handed out after their session is gone, so keep them loaded.
        self._sessions = async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)

    async def close(self) -> None:
        if self._engine is None:
            return
        engine, self._engine, self._sessions = self._engine, None, None
        await engine.dispose()

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

    # Users

    async def create_user(self, username: str, password_hash: str) -> User:
        """Store a new user; raises ``UsernameTaken`` when the name exists."""
        user = User(username=username, password_hash=password_hash)
        async with self._session() as session:
            session.add(user)
            try:
                await session.commit()
            except IntegrityError:
                # The unique index decides, so two sign-ups racing for one name cannot both win.
                raise UsernameTaken(username) from None
        return user

    async def get_user(self, user_id: int) -> User | None:
        async with self._session() as session:
            return await session.get(User, user_id)

    async def get_user_by_name(self, username: str) -> User | None:
        async with self._session() as session:
            result = await session.exec(select(User).where(User.username == username))
            return result.first()

    # Executions

    async def save_execution(
        self,
        *,
        user_id: int,
        language: str,
        code: str,
        status: str,
        execution_time: float,
        project_id: int | None = None,
        stdin: str | None = None,
        output: str | None = None,
        error: str | None = None,
        exit_code: int | None = None,
        signal: str | None = None,
        output_truncated: bool = False,
    ) -> CodeExecution:
        """Store one run; the record comes back with its id."""
        record = CodeExecution(
            user_id=user_id,
            project_id=project_id,
            language=language,
            code=code,
            stdin=stdin,
            output=output,
            error=error,
            exit_code=exit_code,
            signal=signal,
            status=status,
            execution_time=execution_time,
            output_truncated=output_truncated,
        )
        async with self._session() as session:
            session.add(record)
            await session.commit()
        return record

    async def list_executions(
        self,
        user_id: int,
        project_id: int | None = None,
        limit: int = 50,
        offset: int = 0,
        before_id: int | None = None,
    ) -> list[CodeExecution]:
        """A user's runs, newest first; ``before_id`` is the cursor: only older runs."""
        query = select(CodeExecution).where(CodeExecution.user_id == user_id)
        if project_id is not None:
            query = query.where(CodeExecution.project_id == project_id)
        if before_id is not None:
            query = query.where(col(CodeExecution.id) < before_id)
        query = query.order_by(col(CodeExecution.id).desc()).offset(offset).limit(limit)
        async with self._session() as session:
            return list((await session.exec(query)).all())

    async def get_execution(self, user_id: int, execution_id: int) -> CodeExecution | None:
        """One of the user's runs; another user's is ``None``, as if it did not exist."""
        query = select(CodeExecution).where(
            CodeExecution.id == execution_id, CodeExecution.user_id == user_id
        )
        async with self._session() as session:
            return (await session.exec(query)).first()

    async def delete_execution(self, user_id: int, execution_id: int) -> bool:
        """Delete one of the user's runs; ``False`` when there was none to delete."""
        query = delete(CodeExecution).where(
            col(CodeExecution.id) == execution_id, col(CodeExecution.user_id) == user_id
        )
        async with self._session() as session:
            result = await session.exec(query)
            await session.commit()
        return result.rowcount == 1

    def _session(self) -> AsyncSession:
        if self._sessions is None:
            raise RuntimeError("the database is not open")
        return self._sessions()


def _make_parent_folder(url: URL) -> None:
    database = url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    Path(database).parent.mkdir(parents=True, exist_ok=True)


def _configure_sqlite(dbapi_connection: Any, connection_record: Any) -> None:
    # WAL lets readers go on while one connection writes; SQLite checks foreign keys only when
    # asked, on every connection.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
