"""Store: the record's API. Reads through SQLModel, writes through the one writer."""

from __future__ import annotations

import functools
import json
import statistics
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import fields
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import anyio
from sqlalchemy import event, func, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlmodel import SQLModel, col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from parallel_orch.exceptions import AmbiguousSessionError, SessionNotFoundError, StoreError
from parallel_orch.models import ExecutionStatus, SessionStatus
from parallel_orch.store import writes
from parallel_orch.store.records import (
    AttemptEnd,
    AttemptRecord,
    ExecutionEnd,
    ExecutionRecord,
    NewExecution,
    SessionRecord,
    SessionSnapshot,
)
from parallel_orch.store.tables import (
    ParallelTestAttempt,
    ParallelTestExecution,
    ParallelTestSession,
    utcnow,
)
from parallel_orch.store.writer import Writer, on_connect, sql_time

DB_FILENAME = "orch.sqlite3"
HISTORY_WINDOW = 5  # recent final executions averaged per test id
AMBIGUOUS_LISTED = 10  # candidates named when a session prefix matches several

R = TypeVar("R", ExecutionRecord, AttemptRecord)


def _session(row: ParallelTestSession) -> SessionRecord:
    try:
        paths = json.loads(row.plan_paths)
    except json.JSONDecodeError:
        paths = []
    values: dict[str, Any] = {f.name: getattr(row, f.name) for f in fields(SessionRecord)}
    values["plan_paths"] = tuple(str(p) for p in paths) if isinstance(paths, list) else ()
    return SessionRecord(**values)


def _record(cls: type[R], row: SQLModel) -> R:
    return cls(**{f.name: getattr(row, f.name) for f in fields(cls)})


class Store:
    """Async access to the record. Use :func:`open_store`."""

    def __init__(self, engine: AsyncEngine, path: Path) -> None:
        self._engine = engine
        self.path = path
        self._writer = Writer(path)

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[AsyncSession]:
        """One read transaction; WAL readers never wait for writers."""
        try:
            async with AsyncSession(self._engine, expire_on_commit=False) as db, db.begin():
                yield db
        except OperationalError as exc:
            raise StoreError(f"store {self.path}: {exc.orig}") from exc

    def close(self) -> None:
        self._writer.close()

    # -- writes -------------------------------------------------------------

    async def create_session(
        self,
        session_id: str,
        *,
        num_workers: int,
        repo: str,
        plan_paths: Sequence[str],
        plan_key: str,
        owner: str,
        executions: Sequence[NewExecution],
    ) -> list[int]:
        """Commit the session and its requests (pending) in one transaction; execution ids back."""
        write = functools.partial(
            writes.insert_session,
            session_id=session_id,
            num_workers=num_workers,
            repo=repo,
            plan_paths=plan_paths,
            plan_key=plan_key,
            owner=owner,
            executions=executions,
            now=sql_time(utcnow()),
        )
        return await self._writer.write(write, in_thread=True)

    async def add_executions(
        self, session_id: str, executions: Sequence[NewExecution]
    ) -> list[int]:
        """Commit more pending requests to an open session."""
        write = functools.partial(
            writes.append_executions,
            session_id=session_id,
            executions=executions,
            now=sql_time(utcnow()),
        )
        return await self._writer.write(write, in_thread=True)

    async def finish_session(
        self,
        session_id: str,
        status: SessionStatus,
        *,
        completed_at: datetime | None = None,
        report_json: str | None = None,
    ) -> None:
        """Record a session's end (and its report) in one write."""
        ended = sql_time(completed_at or utcnow())
        write = functools.partial(
            writes.finish_session,
            session_id=session_id,
            status=status.value,
            completed_at=ended,
            report_json=report_json,
        )
        await self._writer.write(write, in_thread=True)  # a report can run to megabytes

    async def reopen_session(self, session_id: str, owner: str) -> None:
        """Take over an interrupted session to resume it."""
        await self._writer.write(
            functools.partial(writes.reopen_session, session_id=session_id, owner=owner)
        )

    async def start_attempt(
        self,
        execution_id: int,
        session_id: str,
        *,
        number: int,
        worker: int,
        worktree: str,
        log_path: str,
    ) -> int:
        """Record an attempt as running, and its execution with it; the attempt's id."""
        write = functools.partial(
            writes.start_attempt,
            execution_id=execution_id,
            session_id=session_id,
            number=number,
            worker=worker,
            worktree=worktree,
            log_path=log_path,
            now=sql_time(utcnow()),
        )
        return await self._writer.write(write)

    async def set_attempt_process(self, attempt_id: int, pid: int, pgid: int) -> None:
        """The process an attempt runs now (its setup's, then its command's)."""
        write = functools.partial(
            writes.set_attempt_process, attempt_id=attempt_id, pid=pid, pgid=pgid
        )
        await self._writer.write(write)

    async def end_attempt(self, end: AttemptEnd, outcome: ExecutionEnd | None) -> None:
        """Record an attempt's end and, in the same transaction, its execution's new state:
        ``outcome`` when final, else back to pending for a retry.
        """
        write = functools.partial(
            writes.end_attempt, end=end, outcome=outcome, now=sql_time(utcnow())
        )
        await self._writer.write(write)

    async def finish_execution(
        self,
        execution_id: int,
        status: ExecutionStatus,
        *,
        flaky: bool = False,
        error: str | None = None,
        duration_seconds: float | None = None,
    ) -> None:
        outcome = ExecutionEnd(
            status=status, flaky=flaky, error=error, duration_seconds=duration_seconds
        )
        write = functools.partial(
            writes.finish_execution,
            execution_id=execution_id,
            outcome=outcome,
            now=sql_time(utcnow()),
        )
        await self._writer.write(write)

    async def set_execution_pending(self, execution_id: int) -> None:
        """Back to pending while a retry waits in the queue."""
        await self._writer.write(
            functools.partial(writes.set_execution_pending, execution_id=execution_id)
        )

    async def close_unfinished(
        self,
        session_id: str,
        status: ExecutionStatus,
        *,
        error: str | None = None,
        executions: bool = True,
    ) -> int:
        """Mark a session's running attempts, and its unfinished executions unless told not to,
        with ``status``; how many executions.
        """
        write = functools.partial(
            writes.close_unfinished,
            session_id=session_id,
            status=status.value,
            error=error,
            executions=executions,
            now=sql_time(utcnow()),
        )
        return await self._writer.write(write, in_thread=True)

    # -- reads --------------------------------------------------------------

    async def session_snapshot(self, session_id: str) -> SessionSnapshot:
        """A session (by exact id), its executions and its attempts, in one read.

        :raises SessionNotFoundError: if there is no such session.
        """
        async with self._read() as db:
            session = await db.get(ParallelTestSession, session_id)
            if session is None:
                raise SessionNotFoundError(f"no session {session_id!r}")
            executions = await db.exec(
                select(ParallelTestExecution)
                .where(col(ParallelTestExecution.session_id) == session_id)
                .order_by(col(ParallelTestExecution.seq))
            )
            attempts = await db.exec(
                select(ParallelTestAttempt)
                .where(col(ParallelTestAttempt.session_id) == session_id)
                .order_by(col(ParallelTestAttempt.id))
            )
            return SessionSnapshot(
                session=_session(session),
                executions=tuple(_record(ExecutionRecord, e) for e in executions),
                attempts=tuple(_record(AttemptRecord, a) for a in attempts),
            )

    async def get_session(self, session_id: str) -> SessionRecord:
        """A session by id, or by a prefix of its id that names one session only.

        The prefix matches literally (``%`` and ``_`` are characters like any other).

        :raises SessionNotFoundError: if there is none.
        :raises AmbiguousSessionError: if the prefix names several; it lists them.
        """
        async with self._read() as db:
            row = await db.get(ParallelTestSession, session_id)
            rows = [row] if row is not None else []
            if row is None and session_id:
                found = await db.exec(
                    select(ParallelTestSession)
                    .where(func.substr(ParallelTestSession.id, 1, len(session_id)) == session_id)
                    .order_by(col(ParallelTestSession.created_at).desc())
                    .limit(AMBIGUOUS_LISTED + 1)
                )
                rows = list(found)
        if not rows:
            raise SessionNotFoundError(
                f"no session {session_id!r}; `parallel-orch sessions` lists them"
            )
        if len(rows) > 1:
            listed = ", ".join(r.id for r in rows[:AMBIGUOUS_LISTED])
            more = " and more" if len(rows) > AMBIGUOUS_LISTED else ""
            raise AmbiguousSessionError(
                f"session prefix {session_id!r} matches several sessions ({listed}{more}); "
                "give more of the id"
            )
        return _session(rows[0])

    async def recent_sessions(self, limit: int = 20) -> list[SessionRecord]:
        async with self._read() as db:
            rows = await db.exec(
                select(ParallelTestSession)
                .order_by(col(ParallelTestSession.created_at).desc())
                .limit(limit)
            )
            return [_session(r) for r in rows]

    async def sessions_with_status(self, status: SessionStatus) -> list[SessionRecord]:
        async with self._read() as db:
            rows = await db.exec(
                select(ParallelTestSession).where(col(ParallelTestSession.status) == status.value)
            )
            return [_session(r) for r in rows]

    async def executions(
        self, session_id: str, statuses: Iterable[ExecutionStatus] | None = None
    ) -> list[ExecutionRecord]:
        query = select(ParallelTestExecution).where(
            col(ParallelTestExecution.session_id) == session_id
        )
        if statuses is not None:
            query = query.where(col(ParallelTestExecution.status).in_([s.value for s in statuses]))
        async with self._read() as db:
            rows = await db.exec(query.order_by(col(ParallelTestExecution.seq)))
            return [_record(ExecutionRecord, r) for r in rows]

    async def attempts(
        self, session_id: str, *, status: ExecutionStatus | None = None
    ) -> list[AttemptRecord]:
        """A session's attempts in the order they started (only those in ``status``)."""
        query = select(ParallelTestAttempt).where(col(ParallelTestAttempt.session_id) == session_id)
        if status is not None:
            query = query.where(col(ParallelTestAttempt.status) == status.value)
        async with self._read() as db:
            rows = await db.exec(query.order_by(col(ParallelTestAttempt.id)))
            return [_record(AttemptRecord, r) for r in rows]

    async def count_by_status(self, session_id: str) -> dict[str, int]:
        return (await self.counts_by_session([session_id]))[session_id]

    async def counts_by_session(self, session_ids: Sequence[str]) -> dict[str, dict[str, int]]:
        """Executions per status for several sessions, in one query."""
        out: dict[str, dict[str, int]] = {sid: {} for sid in session_ids}
        if not out:
            return out
        async with self._read() as db:
            rows = await db.exec(
                select(ParallelTestExecution.session_id, ParallelTestExecution.status, func.count())
                .where(col(ParallelTestExecution.session_id).in_(list(out)))
                .group_by(col(ParallelTestExecution.session_id), col(ParallelTestExecution.status))
            )
            for session_id, status, count in rows:
                out[session_id][status] = count
        return out

    async def history(self, test_ids: Iterable[str]) -> dict[str, float]:
        """Expected duration per test id: mean of its last few final attempts' durations."""
        ids = list(set(test_ids))
        if not ids:
            return {}
        found: dict[str, list[float]] = {}
        async with self._read() as db:
            for start in range(0, len(ids), 500):  # stay under SQLite's variable limit
                rows = await db.exec(
                    select(ParallelTestExecution.test_id, ParallelTestExecution.duration_seconds)
                    .where(
                        col(ParallelTestExecution.test_id).in_(ids[start : start + 500]),
                        col(ParallelTestExecution.duration_seconds).is_not(None),
                    )
                    .order_by(col(ParallelTestExecution.completed_at).desc())
                )
                for test_id, duration in rows:
                    bucket = found.setdefault(test_id, [])
                    if len(bucket) < HISTORY_WINDOW and duration is not None:
                        bucket.append(duration)
        return {k: statistics.fmean(v) for k, v in found.items() if v}


@asynccontextmanager
async def open_store(state_dir: Path) -> AsyncIterator[Store]:
    """Open (creating if needed) the store under ``state_dir``.

    :raises StoreError: if the directory or database cannot be written.
    """
    try:
        await anyio.to_thread.run_sync(lambda: state_dir.mkdir(parents=True, exist_ok=True))
    except OSError as exc:
        raise StoreError(f"cannot create state dir {state_dir}: {exc.strerror}") from exc
    path = state_dir / DB_FILENAME
    engine = create_async_engine(f"sqlite+aiosqlite:///{path}")
    event.listen(engine.sync_engine, "connect", on_connect)
    try:
        try:
            async with engine.begin() as conn:
                await conn.run_sync(SQLModel.metadata.create_all)
                await conn.execute(text("SELECT 1"))
        except OperationalError as exc:
            raise StoreError(f"cannot open store {path}: {exc.orig}; check permissions") from exc
        store = Store(engine, path)
        try:
            yield store
        finally:
            store.close()
    finally:
        await engine.dispose()
