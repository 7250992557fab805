"""Stored runs: written from their start, finished with their plots, listed, purged."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, or_, update
from sqlmodel import col, delete, select

from storage.errors import CursorNotFound
from storage.models import CodeExecution, RunImage, utc_now
from storage.store import Store

RUNNING = "running"
INTERRUPTED = "interrupted"


class Executions(Store):
    """A user's runs, their plots, the admins' statistics, and retention."""

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


def _images(execution_id: int, images: Sequence[tuple[str, bytes]]) -> list[RunImage]:
    return [
        RunImage(execution_id=execution_id, position=n, mime=mime, data=data)
        for n, (mime, data) in enumerate(images)
    ]
