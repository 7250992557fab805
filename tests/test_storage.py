"""The storage on real SQLite files and a real PostgreSQL: tables, users, stored runs,
isolation, persistence."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from storage import CodeExecution, Database, RunImage, User, UsernameTaken


def url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "execstream.db"  # the folder does not exist yet


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url)
    await database.open()
    yield database
    await database.close()


async def save(db: Database, user_id: int, **fields: Any) -> CodeExecution:
    run: dict[str, Any] = {
        "language": "python",
        "code": "print('hi')",
        "status": "success",
        "execution_time": 0.1,
    }
    return await db.save_execution(user_id=user_id, **(run | fields))


def schema(path: Path) -> tuple[set[str], set[str], str]:
    """What anyone would see opening the file with sqlite3: tables, indexes, journal mode."""
    with sqlite3.connect(path) as conn:
        names = conn.execute("SELECT type, name FROM sqlite_master").fetchall()
        journal = conn.execute("PRAGMA journal_mode").fetchone()[0]
    tables = {name for kind, name in names if kind == "table"}
    indexes = {name for kind, name in names if kind == "index"}
    return tables, indexes, journal


async def test_open_creates_the_folder_the_tables_and_the_indexes(db_path: Path):
    database = Database(url(db_path))
    await database.open()
    await database.close()

    tables, indexes, journal = schema(db_path)
    assert {"users", "code_executions", "instances", "alembic_version"} <= tables
    assert {
        "ix_users_username",
        "ix_code_executions_user_id_created_at_id",
        "ix_code_executions_user_id_project_id_created_at_id",
        "ix_code_executions_created_at",
        "ix_code_executions_status_instance_id",
        "ix_instances_expires_at",
    } <= indexes
    assert journal == "wal"


async def test_health(db: Database, database_url: str):
    assert await db.health() == {"ok": True, "url": database_url}
    await db.close()
    closed = await db.health()
    assert closed["ok"] is False
    assert "not open" in closed["error"]


async def test_health_hides_the_password():
    db = Database("postgresql+asyncpg://ada:s3cret@localhost/execstream")
    report = await db.health()
    assert report["ok"] is False
    assert "s3cret" not in report["url"]
    assert report["url"].startswith("postgresql+asyncpg://ada:")


async def test_create_and_find_a_user(db: Database):
    before = datetime.now(UTC)
    user = await db.create_user("ada", "hash-of-ada")
    assert user.id is not None

    found = await db.get_user(user.id)
    assert found is not None
    assert (found.username, found.password_hash) == ("ada", "hash-of-ada")
    assert found.created_at.tzinfo is not None
    assert before - timedelta(seconds=1) <= found.created_at <= datetime.now(UTC)

    by_name = await db.get_user_by_name("ada")
    assert by_name is not None and by_name.id == user.id
    assert await db.get_user_by_name("grace") is None
    assert await db.get_user(user.id + 1) is None


async def test_password_hash_stays_out_of_the_repr(db: Database):
    user = await db.create_user("ada", "hash-of-ada")
    assert "hash-of-ada" not in repr(user)


async def test_a_taken_username_is_refused(db: Database):
    first = await db.create_user("ada", "first")
    with pytest.raises(UsernameTaken) as caught:
        await db.create_user("ada", "second")
    assert caught.value.code == "username_taken"
    assert "ada" in str(caught.value)
    kept = await db.get_user_by_name("ada")
    assert kept is not None and (kept.id, kept.password_hash) == (first.id, "first")


async def test_racing_sign_ups_for_one_name_leave_one_user(db: Database):
    results = await asyncio.gather(
        *(db.create_user("ada", f"hash-{i}") for i in range(10)), return_exceptions=True
    )
    assert sum(isinstance(r, UsernameTaken) for r in results) == 9
    assert sum(isinstance(r, User) for r in results) == 1


async def test_an_execution_is_stored_whole(db: Database):
    user = await db.create_user("ada", "h")
    assert user.id is not None
    saved = await db.save_execution(
        user_id=user.id,
        project_id=7,
        language="python",
        code="import sys\nprint(input())\nsys.exit(3)",
        stdin="héllo ✓\n",
        output="héllo ✓\n",
        error="bye\n",
        exit_code=3,
        signal=None,
        status="error",
        execution_time=0.25,
        output_truncated=True,
        instance_id="host-1234",
        files=[{"name": "util.py", "content": "x = 1\n"}],
        compile_output="note: é\n",
        compile_time=0.5,
        cpu_time=0.125,
        memory_peak=5_000_000_000,  # past 2**31: a BIGINT on PostgreSQL
        tests=[{"name": "t1", "passed": False, "diff": "-1\n+2\n"}],
        tests_passed=0,
        tests_total=1,
        images=[("image/png", b"\x89PNG one"), ("image/png", b"\x89PNG two")],
    )
    assert saved.id is not None

    record = await db.get_execution(user.id, saved.id)
    assert record is not None
    assert record.model_dump(exclude={"id", "created_at"}) == {
        "user_id": user.id,
        "project_id": 7,
        "language": "python",
        "code": "import sys\nprint(input())\nsys.exit(3)",
        "stdin": "héllo ✓\n",
        "output": "héllo ✓\n",
        "error": "bye\n",
        "exit_code": 3,
        "signal": None,
        "status": "error",
        "execution_time": 0.25,
        "output_truncated": True,
        "instance_id": "host-1234",
        "files": [{"name": "util.py", "content": "x = 1\n"}],
        "compile_output": "note: é\n",
        "compile_time": 0.5,
        "cpu_time": 0.125,
        "memory_peak": 5_000_000_000,
        "tests": [{"name": "t1", "passed": False, "diff": "-1\n+2\n"}],
        "tests_passed": 0,
        "tests_total": 1,
        "image_count": 2,
    }
    assert record.created_at.tzinfo is not None
    images = await db.execution_images(user.id, saved.id)
    assert [(i.position, i.mime, i.data) for i in images] == [
        (0, "image/png", b"\x89PNG one"),
        (1, "image/png", b"\x89PNG two"),
    ]


async def test_images_are_the_owners_and_go_with_their_run(db: Database):
    ada, bob = await db.create_user("ada", "h"), await db.create_user("bob", "h")
    assert ada.id is not None and bob.id is not None
    running = await save(db, ada.id, status="running")
    assert running.id is not None
    # A run that showed its plots while running gets them with its final record.
    await db.finish_execution(running.id, {"status": "success"}, [("image/png", b"plot")])
    assert (await db.get_execution(ada.id, running.id)).image_count == 1  # type: ignore[union-attr]
    assert await db.execution_images(bob.id, running.id) == []
    assert await db.delete_execution(ada.id, running.id)
    assert await db.execution_images(ada.id, running.id) == []
    async with db._session() as session:  # no orphan left behind by the delete
        assert (await session.exec(select(RunImage))).all() == []


async def test_optional_fields_stay_empty(db: Database):
    user = await db.create_user("ada", "h")
    assert user.id is not None
    saved = await save(db, user.id, status="killed", signal="SIGINT")
    assert saved.id is not None
    record = await db.get_execution(user.id, saved.id)
    assert record is not None
    assert (record.project_id, record.stdin, record.output, record.error) == (None,) * 4
    assert (record.exit_code, record.signal, record.output_truncated) == (None, "SIGINT", False)


async def test_an_execution_needs_an_existing_user(db: Database):
    with pytest.raises(IntegrityError):
        await save(db, 12345)


async def test_history_is_newest_first_and_filters_by_project(db: Database):
    user = await db.create_user("ada", "h")
    assert user.id is not None
    projects = [1, 2, None, 1, 2, 1]
    ids = [
        (await save(db, user.id, project_id=p, code=f"run {i}")).id for i, p in enumerate(projects)
    ]

    history = await db.list_executions(user.id)
    assert [r.id for r in history] == ids[::-1]
    assert [r.code for r in history] == [f"run {i}" for i in range(5, -1, -1)]

    project_1 = await db.list_executions(user.id, project_id=1)
    assert [r.id for r in project_1] == [ids[5], ids[3], ids[0]]


async def test_history_pages_by_limit_and_offset(db: Database):
    user = await db.create_user("ada", "h")
    assert user.id is not None
    ids = [(await save(db, user.id)).id for _ in range(7)]
    newest_first = ids[::-1]

    assert [r.id for r in await db.list_executions(user.id, limit=3)] == newest_first[:3]
    assert [r.id for r in await db.list_executions(user.id, limit=3, offset=3)] == newest_first[3:6]
    assert [r.id for r in await db.list_executions(user.id, limit=3, offset=6)] == newest_first[6:]
    assert await db.list_executions(user.id, limit=3, offset=7) == []


async def test_history_pages_by_cursor(db: Database):
    user = await db.create_user("ada", "h")
    other = await db.create_user("grace", "h")
    assert user.id is not None and other.id is not None
    ids = []
    for i in range(7):
        ids.append((await save(db, user.id, project_id=i % 2)).id)
        await save(db, other.id, project_id=i % 2)  # interleaved ids that must not show up

    pages = []
    cursor = None
    for _ in range(5):  # bounded: a cursor that does not move must fail, not hang
        page = await db.list_executions(user.id, limit=3, before_id=cursor)
        pages.append([r.id for r in page])
        if len(page) < 3:
            break
        cursor = page[-1].id
    newest_first = ids[::-1]
    assert pages == [newest_first[:3], newest_first[3:6], newest_first[6:]]

    older = await db.list_executions(user.id, project_id=0, before_id=ids[4])
    assert [r.id for r in older] == [ids[2], ids[0]]


async def test_one_user_cannot_see_or_delete_another_users_runs(db: Database):
    ada = await db.create_user("ada", "h")
    grace = await db.create_user("grace", "h")
    assert ada.id is not None and grace.id is not None
    record = await save(db, ada.id, code="ada's secret")
    assert record.id is not None

    assert await db.get_execution(grace.id, record.id) is None
    assert await db.delete_execution(grace.id, record.id) is False
    assert await db.list_executions(grace.id) == []

    still = await db.get_execution(ada.id, record.id)
    assert still is not None and still.code == "ada's secret"


async def test_delete_an_execution(db: Database):
    user = await db.create_user("ada", "h")
    assert user.id is not None
    kept = await save(db, user.id)
    gone = await save(db, user.id)
    assert gone.id is not None

    assert await db.delete_execution(user.id, gone.id) is True
    assert await db.get_execution(user.id, gone.id) is None
    assert await db.delete_execution(user.id, gone.id) is False
    assert [r.id for r in await db.list_executions(user.id)] == [kept.id]


async def test_data_survives_closing_and_reopening(database_url: str):
    first = Database(database_url)
    await first.open()
    user = await first.create_user("ada", "h")
    assert user.id is not None
    record = await save(first, user.id, output="kept\n")
    await first.close()

    second = Database(database_url)
    await second.open()
    try:
        again = await second.get_user_by_name("ada")
        assert again is not None and again.id == user.id
        assert again.created_at == user.created_at
        runs = await second.list_executions(user.id)
        assert [(r.id, r.output) for r in runs] == [(record.id, "kept\n")]
    finally:
        await second.close()


async def test_concurrent_saves_all_land(db: Database):
    user = await db.create_user("ada", "h")
    assert user.id is not None
    uid = user.id
    records = await asyncio.gather(*(save(db, uid, code=f"run {i}") for i in range(50)))

    assert len({r.id for r in records}) == 50
    stored = await db.list_executions(user.id, limit=100)
    assert sorted(r.code for r in stored) == sorted(f"run {i}" for i in range(50))


async def test_a_closed_database_refuses_work(db: Database):
    await db.close()
    with pytest.raises(RuntimeError, match="not open"):
        await db.get_user(1)
