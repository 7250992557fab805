"""Storage for the run lifecycle, on real SQLite files and a real PostgreSQL: migrations, order
by start, runs stored from their start, leases, statistics and retention."""

from __future__ import annotations

import asyncio
import io
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, inspect
from sqlalchemy.ext.asyncio import create_async_engine
from sqlmodel import SQLModel

from server import retention
from storage import CodeExecution, CursorNotFound, Database, migrations
from tests.postgres import PostgresServer
from tests.test_storage import url

SNAPSHOT = Path(__file__).parent / "data" / "schema-before-migrations.sql"
T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url)
    await database.open()
    yield database
    await database.close()


async def user(db: Database, name: str = "ada") -> int:
    created = await db.create_user(name, "h")
    assert created.id is not None
    return created.id


async def save(db: Database, user_id: int, **fields: Any) -> CodeExecution:
    run: dict[str, Any] = {"language": "python", "code": "", "status": "success"}
    return await db.save_execution(user_id=user_id, execution_time=0.1, **(run | fields))


# Migrations --------------------------------------------------------------------------------


async def test_a_database_of_the_previous_version_is_upgraded_and_keeps_its_runs(
    tmp_path: Path,
) -> None:
    path = tmp_path / "execstream.db"
    with sqlite3.connect(path) as conn:
        conn.executescript(SNAPSHOT.read_text())
    db = Database(url(path))
    await db.open()
    try:
        ada = await db.get_user_by_name("ada")
        assert ada is not None and ada.id is not None
        runs = await db.list_executions(ada.id)
        assert [(r.id, r.output) for r in runs] == [(3, "2\n"), (2, "1\n"), (1, "0\n")]
        new = await save(db, ada.id, status="running", instance_id="host-1")
        assert new.instance_id == "host-1"
    finally:
        await db.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [
            (migrations.head(),)
        ]


async def test_migrations_make_exactly_the_tables_the_models_describe(database_url: str) -> None:
    db = Database(database_url)
    await db.open()
    assert db._engine is not None
    async with db._engine.connect() as conn:

        def differences(sync_conn: Any) -> list[Any]:
            context = MigrationContext.configure(sync_conn)
            return list(compare_metadata(context, SQLModel.metadata))

        diff = await conn.run_sync(differences)
    await db.close()
    assert diff == []


def test_the_db_upgrade_command_upgrades_an_old_database(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / "execstream.db") as conn:
        conn.executescript(SNAPSHOT.read_text())
    done = subprocess.run(
        [sys.executable, "-m", "server.cli", "db", "upgrade"],
        env={"EXECSTREAM_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert migrations.head() in done.stdout
    with sqlite3.connect(tmp_path / "execstream.db") as conn:
        assert conn.execute("SELECT count(*) FROM code_executions").fetchone() == (3,)
        assert conn.execute("SELECT count(*) FROM instances").fetchone() == (0,)


def test_the_db_upgrade_command_migrates_postgresql(postgres: PostgresServer) -> None:
    shared = postgres.new_database()
    done = subprocess.run(
        [sys.executable, "-m", "server.cli", "db", "upgrade"],
        env={"EXECSTREAM_DATABASE_URL": shared, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert migrations.head() in done.stdout
    name = shared.rsplit("/", 1)[1]
    assert postgres.sql("SELECT version_num FROM alembic_version", name) == migrations.head()
    tables = postgres.sql("SELECT tablename FROM pg_tables WHERE schemaname = 'public'", name)
    assert set(tables.split()) == {
        "alembic_version",
        "users",
        "code_executions",
        "instances",
        "run_slots",
        "run_images",
    }


# History order -----------------------------------------------------------------------------


async def test_history_is_ordered_by_start_even_when_ids_are_not(db: Database) -> None:
    ada = await user(db)
    # Two replicas on one database: a run that started later may be inserted first.
    starts = [T0 + timedelta(seconds=s) for s in (5, 1, 3, 3, 2, 4)]
    ids = [(await save(db, ada, created_at=t, code=f"{t.second}")).id for t in starts]
    newest_first = [i for _, i in sorted(zip(starts, ids, strict=True), reverse=True)]

    assert [r.id for r in await db.list_executions(ada)] == newest_first
    pages, cursor = [], None
    for _ in range(5):
        page = await db.list_executions(ada, limit=2, before_id=cursor)
        pages.append([r.id for r in page])
        if len(page) < 2:
            break
        cursor = page[-1].id
    assert [i for page in pages for i in page] == newest_first
    assert pages[0] == newest_first[:2] and pages[1] == newest_first[2:4]


async def test_a_cursor_that_is_not_the_users_run_is_refused(db: Database) -> None:
    ada, grace = await user(db, "ada"), await user(db, "grace")
    theirs = await save(db, grace)
    assert theirs.id is not None
    with pytest.raises(CursorNotFound):
        await db.list_executions(ada, before_id=theirs.id)
    with pytest.raises(CursorNotFound):
        await db.list_executions(ada, before_id=999)


# Runs stored from their start ----------------------------------------------------------------


async def test_progress_updates_touch_only_running_runs(db: Database) -> None:
    ada = await user(db)
    running = await save(db, ada, status="running", instance_id="a")
    ended = await save(db, ada, status="success", output="final\n", instance_id="a")
    assert running.id is not None and ended.id is not None
    changes = [(running.id, {"output": "so far\n"}), (ended.id, {"output": "late\n"})]
    assert await db.update_executions(changes) == 1
    first = await db.get_execution(ada, running.id)
    second = await db.get_execution(ada, ended.id)
    assert first is not None and first.output == "so far\n"
    assert second is not None and second.output == "final\n"


async def test_runs_of_dead_instances_become_interrupted_and_live_ones_do_not(
    db: Database,
) -> None:
    ada = await user(db)
    await db.register_instance("me", "host", 1, ttl=30)
    await db.register_instance("neighbour", "host", 2, ttl=30)
    await db.register_instance("dead", "host", 3, ttl=30)
    await db.release_instance("dead")  # expired now
    runs = {
        owner: await save(db, ada, status="running", output="so far\n", instance_id=owner)
        for owner in ("me", "neighbour", "dead", "forgotten")
    }
    assert await db.expired_instances() == {"dead"}
    assert await db.interrupt_runs(keep="me") == 2
    statuses = {}
    for owner, run in runs.items():
        assert run.id is not None
        record = await db.get_execution(ada, run.id)
        assert record is not None
        statuses[owner] = (record.status, record.output)
    assert statuses == {
        "me": ("running", "so far\n"),
        "neighbour": ("running", "so far\n"),
        "dead": ("interrupted", "so far\n"),
        "forgotten": ("interrupted", "so far\n"),
    }


async def test_a_lease_is_renewed_released_and_forgotten(db: Database) -> None:
    await db.register_instance("a", "host", 1, ttl=0.01)
    assert await db.renew_instance("a", ttl=30) is True
    assert await db.expired_instances() == set()
    await db.release_instance("a")
    assert await db.expired_instances() == {"a"}
    assert await db.forget_instances(timedelta(days=1)) == 0
    assert await db.forget_instances(timedelta(0)) == 1
    assert await db.renew_instance("a", ttl=30) is False


# Run slots shared by replicas ----------------------------------------------------------------


async def test_slots_hold_the_caps_and_count_only_live_instances(db: Database) -> None:
    await db.register_instance("a", "host", 1, ttl=30)
    await db.register_instance("b", "host", 2, ttl=30)
    taken = [await db.take_slot("a", 1, max_runs=3, max_per_user=2) for _ in range(3)]
    assert taken[0] is not None and taken[1] is not None
    assert taken[2] is None  # user 1 is at their cap, on any instance
    assert await db.take_slot("b", 1, max_runs=3, max_per_user=2) is None
    assert await db.take_slot("b", 2, max_runs=3, max_per_user=2) is not None
    assert await db.take_slot("b", 3, max_runs=3, max_per_user=2) is None  # all 3 in use
    await db.free_slot(taken[0])
    assert await db.take_slot("b", 3, max_runs=3, max_per_user=2) is not None

    await db.release_instance("a")  # a's lease expires: its slot stops counting at once
    assert await db.take_slot("b", 1, max_runs=3, max_per_user=2) is not None
    assert await db.forget_slots(keep="b") == 1
    assert await db.forget_slots(keep="b") == 0


async def test_replicas_taking_slots_at_once_never_pass_the_cap(
    postgres: PostgresServer,
) -> None:
    shared = postgres.new_database()
    replicas = [Database(shared) for _ in range(3)]
    try:
        for replica in replicas:
            await replica.open()
        for i, replica in enumerate(replicas):
            await replica.register_instance(f"r{i}", "host", i, ttl=30)
        takes = [
            replica.take_slot(f"r{i}", user_id, max_runs=10, max_per_user=4)
            for i, replica in enumerate(replicas)
            for user_id in (1, 2, 3)
            for _ in range(4)
        ]
        slots = await asyncio.gather(*takes)
    finally:
        for replica in replicas:
            await replica.close()
    assert sum(slot is not None for slot in slots) == 10
    name = shared.rsplit("/", 1)[1]
    per_user = postgres.sql(
        "SELECT max(n) FROM (SELECT count(*) n FROM run_slots GROUP BY user_id) c", name
    )
    assert int(per_user) <= 4


async def test_a_slot_freed_by_one_replica_is_announced_to_the_others(
    postgres: PostgresServer,
) -> None:
    shared = postgres.new_database()
    one, other = Database(shared), Database(shared)
    await one.open()
    await other.open()
    heard = asyncio.Event()
    stop = await other.listen_for_freed_slots(heard.set)
    assert stop is not None
    try:
        await one.register_instance("one", "host", 1, ttl=30)
        slot = await one.take_slot("one", 1, max_runs=1, max_per_user=1)
        assert slot is not None
        assert not heard.is_set()
        await one.free_slot(slot)
        async with asyncio.timeout(5):
            await heard.wait()
    finally:
        await stop()
        await one.close()
        await other.close()


# Statistics --------------------------------------------------------------------------------


async def test_statistics_count_runs_by_utc_day_on_any_database(db: Database) -> None:
    ada = await user(db)
    late = datetime(2026, 3, 1, 23, 30, tzinfo=UTC)  # 1 March in UTC, 2 March in Kiritimati
    await save(db, ada, created_at=late)
    await save(db, ada, created_at=late + timedelta(hours=1), status="error")
    stats = await db.run_stats(since=late - timedelta(days=1))
    assert stats["by_day"] == [
        {"day": "2026-03-01", "language": "python", "count": 1},
        {"day": "2026-03-02", "language": "python", "count": 1},
    ]
    assert stats["by_language_and_status"] == [
        {"language": "python", "status": "error", "count": 1, "average_execution_time": 0.1},
        {"language": "python", "status": "success", "count": 1, "average_execution_time": 0.1},
    ]


# Retention ---------------------------------------------------------------------------------


async def test_retention_purges_old_runs_and_runs_past_the_cap_but_never_running_ones(
    db: Database,
) -> None:
    ada, grace = await user(db, "ada"), await user(db, "grace")
    now = datetime.now(UTC)
    old = [await save(db, ada, created_at=now - timedelta(days=10 + i)) for i in range(3)]
    old_running = await save(db, ada, status="running", created_at=now - timedelta(days=20))
    ada_recent = [await save(db, ada, created_at=now - timedelta(minutes=i)) for i in range(7)]
    grace_recent = [await save(db, grace, created_at=now - timedelta(minutes=i)) for i in range(3)]

    deleted = await retention.purge(db, days=7, per_user=5, batch=2)

    assert deleted == 3 + 2
    ada_left = {r.id for r in await db.list_executions(ada, limit=100)}
    assert ada_left == {r.id for r in ada_recent[:5]} | {old_running.id}
    assert not {r.id for r in old} & ada_left
    assert len(await db.list_executions(grace, limit=100)) == len(grace_recent)


async def test_migrations_go_down_and_up_again(database_url: str) -> None:
    def down_and_up(conn: Connection) -> None:
        migrations.upgrade(conn)
        command.downgrade(migrations.config(conn), migrations.BASELINE)
        assert migrations.current(conn) == migrations.BASELINE
        assert "instances" not in inspect(conn).get_table_names()
        indexes = {i["name"] for i in inspect(conn).get_indexes("code_executions")}
        assert indexes == {
            "ix_code_executions_user_id_id",
            "ix_code_executions_user_id_project_id_id",
        }
        migrations.upgrade(conn)
        assert migrations.current(conn) == migrations.head()

    if database_url.startswith("sqlite"):
        Path(database_url.split("///", 1)[1]).parent.mkdir(parents=True)
    engine = create_async_engine(database_url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(down_and_up)
    finally:
        await engine.dispose()


async def test_replicas_starting_together_migrate_once(postgres: PostgresServer) -> None:
    """Several servers opening one new PostgreSQL database at once: the advisory lock lets one
    migrate while the others wait, so none fails on tables another just made."""
    shared = postgres.new_database()
    replicas = [Database(shared) for _ in range(4)]
    try:
        await asyncio.gather(*(replica.open() for replica in replicas))
        assert [await replica.revision() for replica in replicas] == [migrations.head()] * 4
    finally:
        await asyncio.gather(*(replica.close() for replica in replicas))
    name = shared.rsplit("/", 1)[1]
    assert postgres.sql("SELECT count(*) FROM alembic_version", name) == "1"


def test_migrations_render_for_postgresql() -> None:
    """No SQLite-only SQL: the same revisions print valid PostgreSQL DDL (no server needed)."""
    out = io.StringIO()
    settings = Config(output_buffer=out)
    settings.set_main_option("script_location", str(migrations.FOLDER))
    settings.set_main_option("sqlalchemy.url", "postgresql://")
    command.upgrade(settings, "head", sql=True)
    sql = out.getvalue()
    assert "CREATE TABLE instances" in sql
    assert "ALTER TABLE code_executions ADD COLUMN instance_id VARCHAR" in sql
    assert "created_at TIMESTAMP WITH TIME ZONE NOT NULL" in sql
    assert f"version_num='{migrations.head()}'" in sql
