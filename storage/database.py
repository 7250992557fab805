"""The database: an async engine, one session per operation, and the queries we need."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy import event, func, insert, literal, or_, text, update
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel import col, delete, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage import migrations
from storage.errors import CursorNotFound, UsernameTaken
from storage.models import (
    USER,
    CodeExecution,
    Instance,
    RunImage,
    RunSlot,
    User,
    UTCDateTime,
    utc_now,
)

USER_EXISTS = "SELECT 1 FROM users WHERE id = ?"

HEALTH_TIMEOUT = 5.0
SLOTS_CHANNEL = "execstream_slots"
"""PostgreSQL channel on which a freed slot is announced to every replica."""
SLOTS_LOCK = 0x65786563_0002
"""PostgreSQL advisory lock key held while a slot is counted and taken (any number no other
code uses): one admission at a time across replicas, each a millisecond or two."""
RUNNING = "running"
INTERRUPTED = "interrupted"


class Database:
    """Users and their stored runs, in whatever database ``url`` names.

    Safe to share between tasks: every operation has its own session and connection.
    """

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

    # Users

    async def create_user(self, username: str, password_hash: str, role: str = USER) -> User:
        """Store a new user; raises ``UsernameTaken`` when the name exists."""
        user = User(username=username, password_hash=password_hash, role=role)
        async with self._session() as session:
            session.add(user)
            try:
                await session.commit()
            except IntegrityError:
                # The unique index decides, so two sign-ups racing for one name cannot both win.
                raise UsernameTaken(username) from None
        return user

    async def get_user(self, user_id: int) -> User | None:
        async with self._read_session() as session:
            return await session.get(User, user_id)

    async def user_exists(self, user_id: int) -> bool:
        """Asked before every run, so kept lean: beside the writer, never queued behind it."""
        if self._quick is not None:
            return self._quick.execute(USER_EXISTS, (user_id,)).fetchone() is not None
        if self._reader is None:
            raise RuntimeError("the database is not open")
        async with self._reader.connect() as conn:
            found = await conn.scalar(select(User.id).where(User.id == user_id))  # type: ignore[arg-type]
        return found is not None

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
        created_at: datetime | None = None,
        instance_id: str | None = None,
        files: list[dict[str, str]] | None = None,
        compile_output: str | None = None,
        compile_time: float | None = None,
        cpu_time: float | None = None,
        memory_peak: int | None = None,
        tests: list[dict[str, Any]] | None = None,
        tests_passed: int | None = None,
        tests_total: int | None = None,
        images: Sequence[tuple[str, bytes]] = (),
    ) -> CodeExecution:
        """Store one run (a finished one, or one ``running`` from its start), with its plots
        as ``(mime, data)``; with its id."""
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
            created_at=created_at or utc_now(),
            instance_id=instance_id,
            files=files,
            compile_output=compile_output,
            compile_time=compile_time,
            cpu_time=cpu_time,
            memory_peak=memory_peak,
            tests=tests,
            tests_passed=tests_passed,
            tests_total=tests_total,
            image_count=len(images),
        )
        async with self._session() as session:
            session.add(record)
            await session.flush()  # the id, for the images
            assert record.id is not None
            session.add_all(_images(record.id, images))
            await session.commit()
        return record

    async def update_executions(self, changes: Iterable[tuple[int, dict[str, Any]]]) -> int:
        """Update runs still ``running`` (id, new values), in one transaction; how many were.

        A run that has ended meanwhile is left as it ended: a late progress update never
        overwrites the final record.
        """
        updated = 0
        async with self._session() as session:
            for execution_id, values in changes:
                result = await session.exec(
                    update(CodeExecution)
                    .where(col(CodeExecution.id) == execution_id)
                    .where(col(CodeExecution.status) == RUNNING)
                    .values(**values)
                )
                updated += result.rowcount
            await session.commit()
        return updated

    async def delete_execution_by_id(self, execution_id: int) -> None:
        """Delete a run record whoever's it is (one that was refused after all)."""
        query = delete(CodeExecution).where(col(CodeExecution.id) == execution_id)
        async with self._session() as session:
            await session.exec(query)
            await session.commit()

    async def finish_execution(
        self,
        execution_id: int,
        values: dict[str, Any],
        images: Sequence[tuple[str, bytes]] = (),
    ) -> None:
        """Write how a run ended, and its plots, whatever its record said (even
        ``interrupted``: a server taken for dead that finishes its run after all knows best)."""
        if images:
            values = values | {"image_count": len(images)}
        query = update(CodeExecution).where(col(CodeExecution.id) == execution_id).values(**values)
        async with self._session() as session:
            await session.exec(query)
            session.add_all(_images(execution_id, images))
            await session.commit()

    async def execution_images(self, user_id: int, execution_id: int) -> list[RunImage]:
        """The plots of one of the user's runs, in the order it showed them."""
        query = (
            select(RunImage)
            .join(CodeExecution, col(CodeExecution.id) == col(RunImage.execution_id))
            .where(RunImage.execution_id == execution_id, CodeExecution.user_id == user_id)
            .order_by(col(RunImage.position))
        )
        async with self._read_session() as session:
            return list((await session.exec(query)).all())

    async def list_executions(
        self,
        user_id: int,
        project_id: int | None = None,
        limit: int = 50,
        offset: int = 0,
        before_id: int | None = None,
    ) -> list[CodeExecution]:
        """A user's runs, newest first by start; ``before_id`` is the cursor: only the runs
        after that one in this order.

        Order and cursor use (created_at, id): ids follow starts on one server, but replicas
        sharing a database insert runs that started at the same moment in any order.
        Raises ``CursorNotFound`` when the cursor's run is not the user's (any more).
        """
        query = select(CodeExecution).where(CodeExecution.user_id == user_id)
        if project_id is not None:
            query = query.where(CodeExecution.project_id == project_id)
        async with self._session() as session:
            if before_id is not None:
                cursor = await session.get(CodeExecution, before_id)
                if cursor is None or cursor.user_id != user_id:
                    raise CursorNotFound(before_id)
                query = query.where(
                    or_(
                        col(CodeExecution.created_at) < cursor.created_at,
                        (col(CodeExecution.created_at) == cursor.created_at)
                        & (col(CodeExecution.id) < before_id),
                    )
                )
            query = (
                query.order_by(col(CodeExecution.created_at).desc(), col(CodeExecution.id).desc())
                .offset(offset)
                .limit(limit)
            )
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

    # Statistics, for admins

    async def run_stats(self, since: datetime) -> dict[str, list[dict[str, Any]]]:
        """Runs started since ``since``: count and average execution time per language and
        status, and count per day (UTC) and language."""
        runs = CodeExecution
        by_status = (
            select(
                runs.language,
                runs.status,
                func.count().label("count"),
                func.avg(runs.execution_time).label("average"),
            )
            .where(col(runs.created_at) >= since)
            .group_by(col(runs.language), col(runs.status))
            .order_by(col(runs.language), col(runs.status))
        )
        started: Any = col(runs.created_at)
        if self.url.get_backend_name() == "postgresql":
            # PostgreSQL would take the day in the session's time zone; ours is UTC's.
            started = func.timezone("UTC", started)
        day = func.date(started).label("day")
        by_day = (
            select(day, runs.language, func.count().label("count"))
            .where(col(runs.created_at) >= since)
            .group_by(day, col(runs.language))
            .order_by(day, col(runs.language))
        )
        async with self._session() as session:
            statuses = (await session.exec(by_status)).all()
            days = (await session.exec(by_day)).all()
        return {
            "by_language_and_status": [
                {
                    "language": language,
                    "status": status,
                    "count": count,
                    "average_execution_time": round(float(average or 0.0), 4),
                }
                for language, status, count, average in statuses
            ],
            "by_day": [
                {"day": str(day), "language": language, "count": count}
                for day, language, count in days
            ],
        }

    # Retention: small batches, each its own short transaction, so runs never wait long.

    async def purge_executions_before(self, moment: datetime, batch: int) -> int:
        """Delete up to ``batch`` finished runs that started before ``moment``."""
        query = (
            select(CodeExecution.id)
            .where(col(CodeExecution.created_at) < moment)
            .where(col(CodeExecution.status) != RUNNING)
            .limit(batch)
        )
        return await self._delete_executions(query)

    async def purge_executions_over(self, keep: int, batch: int) -> int:
        """Delete up to ``batch`` finished runs past each user's ``keep`` newest."""
        crowded = (
            select(CodeExecution.user_id)
            .group_by(col(CodeExecution.user_id))
            .having(func.count() > keep)
            .limit(batch)
        )
        deleted = 0
        async with self._session() as session:
            users = list((await session.exec(crowded)).all())
        for user_id in users:
            if deleted >= batch:
                break
            query = (
                select(CodeExecution.id, CodeExecution.status)
                .where(CodeExecution.user_id == user_id)
                .order_by(col(CodeExecution.created_at).desc(), col(CodeExecution.id).desc())
                .offset(keep)
                .limit(batch - deleted)
            )
            async with self._session() as session:
                rows = (await session.exec(query)).all()
            deleted += await self._delete_ids(
                [i for i, status in rows if status != RUNNING and i is not None]
            )
        return deleted

    async def _delete_executions(self, ids_query: Any) -> int:
        async with self._session() as session:
            ids = list((await session.exec(ids_query)).all())
        return await self._delete_ids(ids)

    async def _delete_ids(self, ids: list[int]) -> int:
        if not ids:
            return 0
        async with self._session() as session:
            result = await session.exec(delete(CodeExecution).where(col(CodeExecution.id).in_(ids)))
            await session.commit()
        return int(result.rowcount)

    # Server instances and their leases

    async def register_instance(self, instance_id: str, host: str, pid: int, ttl: float) -> None:
        """Write this server's lease; it must exist before anything is labelled with its id."""
        now = utc_now()
        instance = Instance(
            id=instance_id,
            host=host,
            pid=pid,
            started_at=now,
            heartbeat_at=now,
            expires_at=now + timedelta(seconds=ttl),
        )
        async with self._session() as session:
            session.add(instance)
            await session.commit()

    async def renew_instance(self, instance_id: str, ttl: float) -> bool:
        """Extend a lease by ``ttl`` from now; False when the row is gone."""
        now = utc_now()
        query = (
            update(Instance)
            .where(col(Instance.id) == instance_id)
            .values(heartbeat_at=now, expires_at=now + timedelta(seconds=ttl))
        )
        async with self._session() as session:
            result = await session.exec(query)
            await session.commit()
        return bool(result.rowcount)

    async def release_instance(self, instance_id: str) -> None:
        """End a lease now (a clean shutdown): what is left of it may be swept at once."""
        query = update(Instance).where(col(Instance.id) == instance_id).values(expires_at=utc_now())
        async with self._session() as session:
            await session.exec(query)
            await session.commit()

    async def expired_instances(self) -> set[str]:
        """The instances whose lease has run out."""
        query = select(Instance.id).where(col(Instance.expires_at) <= utc_now())
        async with self._session() as session:
            return set((await session.exec(query)).all())

    async def forget_instances(self, expired_for: timedelta) -> int:
        """Delete leases expired longer than ``expired_for`` (long swept by then)."""
        query = delete(Instance).where(col(Instance.expires_at) < utc_now() - expired_for)
        async with self._session() as session:
            result = await session.exec(query)
            await session.commit()
        return int(result.rowcount)

    async def interrupt_runs(self, keep: str) -> int:
        """Mark ``interrupted`` the runs left ``running`` by instances without a live lease
        (expired or forgotten), never those of ``keep`` (the caller); how many there were.

        Runs in this database are only ever started by instances registered in it, so an
        instance missing from it is long dead.
        """
        live = select(Instance.id).where(col(Instance.expires_at) > utc_now())
        query = (
            update(CodeExecution)
            .where(col(CodeExecution.status) == RUNNING)
            .where(
                or_(
                    col(CodeExecution.instance_id).is_(None),
                    (col(CodeExecution.instance_id) != keep)
                    & col(CodeExecution.instance_id).not_in(live),
                )
            )
            .values(status=INTERRUPTED)
        )
        async with self._session() as session:
            result = await session.exec(query)
            await session.commit()
        return int(result.rowcount)

    # Run slots shared by the replicas

    async def take_slot(
        self, instance_id: str, user_id: int, max_runs: int, max_per_user: int
    ) -> int | None:
        """Take a run slot for ``user_id`` if the slots of live instances leave room under
        both caps; its id, or None when full. Atomic across replicas: on PostgreSQL an
        advisory lock orders the count and the insert; SQLite lets one writer in at a time,
        and ``BEGIN IMMEDIATE`` is not needed since one process holds one connection."""
        now = utc_now()
        live = select(Instance.id).where(col(Instance.expires_at) > now)
        ours = col(RunSlot.instance_id).in_(live)
        taken = select(func.count()).where(ours).scalar_subquery()
        mine = select(func.count()).where(ours, col(RunSlot.user_id) == user_id).scalar_subquery()
        # One statement counts and inserts: the lock is held for a single round trip.
        room = select(literal(instance_id), literal(user_id), literal(now, UTCDateTime())).where(
            taken < max_runs, mine < max_per_user
        )
        take = (
            insert(RunSlot)
            .from_select(["instance_id", "user_id", "taken_at"], room)
            .returning(col(RunSlot.id))
        )
        async with self._session() as session:
            connection = await session.connection()
            if self.url.get_backend_name() == "postgresql":
                # Taken before the statement starts: READ COMMITTED then sees every slot
                # committed by whoever held the lock before us.
                lock = text("SELECT pg_advisory_xact_lock(:key)")
                await connection.execute(lock, {"key": SLOTS_LOCK})
            slot = (await connection.execute(take)).scalar_one_or_none()
            await session.commit()
        return slot

    async def free_slot(self, slot_id: int) -> None:
        """Give a slot back; on PostgreSQL every replica listening hears it at commit."""
        async with self._session() as session:
            await session.exec(delete(RunSlot).where(col(RunSlot.id) == slot_id))
            if self.url.get_backend_name() == "postgresql":
                connection = await session.connection()
                await connection.execute(text(f"NOTIFY {SLOTS_CHANNEL}"))
            await session.commit()

    async def listen_for_freed_slots(
        self, callback: Callable[[], None]
    ) -> Callable[[], Awaitable[None]] | None:
        """PostgreSQL: call ``callback`` whenever any replica frees a slot, on a connection
        of its own (a listening connection cannot go back to the pool); returns what closes
        it. None on other databases, where no one else frees slots."""
        if self.url.get_backend_name() != "postgresql":
            return None
        dsn = self.url.set(drivername="postgresql").render_as_string(hide_password=False)
        connection = await asyncpg.connect(dsn)
        await connection.add_listener(SLOTS_CHANNEL, lambda *_: callback())
        return connection.close  # type: ignore[no-any-return]

    async def forget_slots(self, keep: str) -> int:
        """Delete the slots of instances without a live lease (they count no more), never
        those of ``keep``; how many there were."""
        live = select(Instance.id).where(col(Instance.expires_at) > utc_now())
        query = (
            delete(RunSlot)
            .where(col(RunSlot.instance_id) != keep)
            .where(col(RunSlot.instance_id).not_in(live))
        )
        async with self._session() as session:
            result = await session.exec(query)
            await session.commit()
        return int(result.rowcount)

    def _session(self) -> AsyncSession:
        if self._sessions is None:
            raise RuntimeError("the database is not open")
        return self._sessions()

    def _read_session(self) -> AsyncSession:
        if self._reads is None:
            raise RuntimeError("the database is not open")
        return self._reads()


def _images(execution_id: int, images: Sequence[tuple[str, bytes]]) -> list[RunImage]:
    return [
        RunImage(execution_id=execution_id, position=n, mime=mime, data=data)
        for n, (mime, data) in enumerate(images)
    ]


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
