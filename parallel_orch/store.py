"""The SQLite record: sessions, executions, attempts. SQL lives only here.

WAL mode so readers never block the writer, foreign keys on, short
transactions. A request is committed ``pending`` before its submit returns.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import statistics
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import anyio
from sqlalchemy import Column, ForeignKey, Integer, String, event, func, text
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry
from sqlmodel import Field, SQLModel, col, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from parallel_orch.exceptions import SessionNotFoundError, StoreError
from parallel_orch.models import ExecutionStatus, SessionStatus, TestRequest

DB_FILENAME = "orch.sqlite3"
BUSY_TIMEOUT_MS = 10_000
HISTORY_WINDOW = 5  # recent final executions averaged per test id


def utcnow() -> datetime:
    return datetime.now(UTC)


class ParallelTestSession(SQLModel, table=True):
    __tablename__ = "sessions"

    id: str = Field(primary_key=True)
    status: str = Field(default=SessionStatus.RUNNING.value, index=True)
    created_at: datetime = Field(default_factory=utcnow, index=True)
    started_at: datetime | None = None
    completed_at: datetime | None = None
    num_workers: int = 1
    repo: str = ""
    plan_paths: str = "[]"  # JSON list
    plan_key: str = Field(default="", index=True)  # groups sessions of the same plan set
    owner: str = ""  # host:pid:starttime of the process running it
    report_json: str | None = None


class ParallelTestExecution(SQLModel, table=True):
    __tablename__ = "executions"

    id: int | None = Field(default=None, primary_key=True)
    session_id: str = Field(
        sa_column=Column(String, ForeignKey("sessions.id", ondelete="CASCADE"), index=True)
    )
    seq: int = 0  # submission order within the session
    test_id: str = Field(index=True)
    request_json: str = "{}"
    ref: str = "HEAD"
    sha: str | None = None
    category: str = "default"
    status: str = Field(default=ExecutionStatus.PENDING.value, index=True)
    flaky: bool = False
    attempts: int = 0
    error: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    started_at: datetime | None = None
    completed_at: datetime | None = None
    duration_seconds: float | None = None  # of the final attempt


class ParallelTestAttempt(SQLModel, table=True):
    __tablename__ = "attempts"

    id: int | None = Field(default=None, primary_key=True)
    execution_id: int = Field(
        sa_column=Column(Integer, ForeignKey("executions.id", ondelete="CASCADE"), index=True)
    )
    session_id: str = Field(index=True)
    number: int = 1
    worker: int = 0
    worktree: str = ""
    pid: int | None = None
    pgid: int | None = None
    started_at: datetime = Field(default_factory=utcnow)
    completed_at: datetime | None = None
    duration_seconds: float | None = None
    exit_code: int | None = None
    status: str = ExecutionStatus.RUNNING.value
    log_path: str = ""
    output_tail: str = ""
    error: str | None = None
    cases_passed: int | None = None
    cases_failed: int | None = None
    cases_errors: int | None = None
    cases_skipped: int | None = None


@dataclass(frozen=True, slots=True)
class NewExecution:
    """A request about to be committed as pending."""

    request: TestRequest
    sha: str | None
    error: str | None = None  # set when the ref did not resolve: recorded as error at once


@dataclass(frozen=True, slots=True)
class JUnitCounts:
    passed: int
    failed: int
    errors: int
    skipped: int


@dataclass(frozen=True, slots=True)
class AttemptEnd:
    """How an attempt ended, as recorded."""

    attempt_id: int
    execution_id: int
    status: ExecutionStatus
    exit_code: int | None
    duration_seconds: float
    output_tail: str = ""
    error: str | None = None
    junit: JUnitCounts | None = None


@dataclass(frozen=True, slots=True)
class ExecutionEnd:
    """An execution's final state."""

    status: ExecutionStatus
    flaky: bool = False
    error: str | None = None
    duration_seconds: float | None = None


_NO_LOCK = contextlib.nullcontext()


T = TypeVar("T")


def _on_connect(
    dbapi_conn: DBAPIConnection | sqlite3.Connection, _record: ConnectionPoolEntry | None
) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA journal_mode = WAL")
    cursor.execute("PRAGMA synchronous = NORMAL")  # WAL + NORMAL: durable across process crashes
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.close()


def _sql_time(value: datetime) -> str:
    """A UTC time as the tables store it (what SQLAlchemy writes for these columns)."""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def _insert_executions(
    db: sqlite3.Connection,
    session_id: str,
    executions: Sequence[NewExecution],
    *,
    start_seq: int,
    now: str,
) -> list[int]:
    """Insert requests as pending (or error, when their ref did not resolve); ids in order.

    One prepared statement for all rows: a session of thousands of requests
    costs milliseconds, where building ORM objects cost a quarter of one each.
    """
    pending, error = ExecutionStatus.PENDING.value, ExecutionStatus.ERROR.value
    db.executemany(
        "INSERT INTO executions (session_id, seq, test_id, request_json, ref, sha, category,"
        " status, flaky, attempts, error, created_at, completed_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, 0, ?, ?, ?)",
        (
            (
                session_id,
                start_seq + offset,
                new.request.id,
                new.request.model_dump_json(),
                new.request.ref,
                new.sha,
                new.request.category,
                pending if new.error is None else error,
                new.error,
                now,
                None if new.error is None else now,
            )
            for offset, new in enumerate(executions)
        ),
    )
    rows = db.execute(
        "SELECT id FROM executions WHERE session_id = ? AND seq >= ? ORDER BY seq",
        (session_id, start_seq),
    )
    return [row_id for (row_id,) in rows]


class _FastWriter:
    """The hot writes, on one plain sqlite3 connection: an attempt's three, a session's
    requests and its end.

    An attempt's writes come hundreds of times a minute, on its critical path.
    Through SQLAlchemy's async stack each costs milliseconds of CPU (greenlets,
    thread hops, statement building); a prepared statement on a connection of
    its own costs about 20 µs, less than the hop to a thread would. Same
    tables, same transactions, same writer turn.

    Nothing here may block the loop for long, so the connection neither waits
    for locks (``busy_timeout = 0``: when another process holds the write lock
    the transaction is retried in a thread, waiting as the store's other
    connections do) nor checkpoints the WAL on commit (an fsync): every
    :data:`CHECKPOINT_EVERY` writes a passive checkpoint runs in a thread.
    """

    CHECKPOINT_EVERY = 200

    def __init__(self, path: Path, turn: anyio.Lock) -> None:
        self._path = path
        self._turn = turn
        self._db: sqlite3.Connection | None = None
        self._writes = 0

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        _on_connect(db, None)
        db.execute("PRAGMA busy_timeout = 0")
        db.execute("PRAGMA wal_autocheckpoint = 0")
        return db

    @staticmethod
    def _transaction(db: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
        db.execute("BEGIN IMMEDIATE")
        try:
            result = fn(db)
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:  # a failed COMMIT can leave it open, holding the write lock
                db.execute("ROLLBACK")
            raise
        return result

    def _transaction_waiting(
        self, db: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T]
    ) -> T:
        db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        try:
            return self._transaction(db, fn)
        finally:
            db.execute("PRAGMA busy_timeout = 0")

    def _checkpoint(self) -> None:
        with contextlib.closing(sqlite3.connect(self._path, isolation_level=None)) as db:
            db.execute("PRAGMA wal_checkpoint(PASSIVE)")

    async def write(self, fn: Callable[[sqlite3.Connection], T], *, in_thread: bool = False) -> T:
        """Run ``fn`` in one transaction, in turn with the store's other writers.

        On the loop by default (a few prepared statements); ``in_thread`` for
        bulk writes that take longer than the hop to a thread.
        """
        async with self._turn:
            try:
                if self._db is None:  # in a thread: opening may wait out another's recovery
                    self._db = await anyio.to_thread.run_sync(self._connect)
                db = self._db
                if in_thread:
                    result = await anyio.to_thread.run_sync(self._transaction_waiting, db, fn)
                else:
                    try:
                        result = self._transaction(db, fn)
                    except sqlite3.OperationalError as exc:
                        if exc.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY:
                            raise
                        result = await anyio.to_thread.run_sync(self._transaction_waiting, db, fn)
            except sqlite3.Error as exc:
                raise StoreError(f"store {self._path}: {exc}") from exc
        await self._count_write()
        return result

    async def _count_write(self) -> None:
        self._writes += 1
        if self._writes % self.CHECKPOINT_EVERY == 0:
            # Shielded: the write is committed, a cancel here must not make it look failed.
            with anyio.CancelScope(shield=True), contextlib.suppress(sqlite3.Error):
                await anyio.to_thread.run_sync(self._checkpoint)

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


class Store:
    """Async access to the record. Use :func:`open_store`."""

    def __init__(self, engine: AsyncEngine, path: Path) -> None:
        self._engine = engine
        self.path = path
        self._writer = anyio.Lock()
        self._fast = _FastWriter(path, self._writer)

    @asynccontextmanager
    async def _tx(self, *, write: bool = False) -> AsyncIterator[AsyncSession]:
        """One transaction; those that ``write`` take turns.

        SQLite admits one writer at a time, and its busy handler makes contending
        writers sleep (up to 100 ms a try): queueing them here instead keeps submit
        latency flat under load. WAL readers never wait for writers.
        """
        try:
            async with (
                self._writer if write else _NO_LOCK,
                AsyncSession(self._engine, expire_on_commit=False) as db,
                db.begin(),
            ):
                yield db
        except OperationalError as exc:
            raise StoreError(f"store {self.path}: {exc.orig}") from exc

    # -- sessions ---------------------------------------------------------

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
        now = _sql_time(utcnow())

        def write(db: sqlite3.Connection) -> list[int]:
            db.execute(
                "INSERT INTO sessions (id, status, created_at, started_at, num_workers, repo,"
                " plan_paths, plan_key, owner) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    session_id,
                    SessionStatus.RUNNING.value,
                    now,
                    now,
                    num_workers,
                    repo,
                    json.dumps(list(plan_paths)),
                    plan_key,
                    owner,
                ),
            )
            return _insert_executions(db, session_id, executions, start_seq=0, now=now)

        return await self._fast.write(write, in_thread=True)

    async def add_executions(
        self, session_id: str, executions: Sequence[NewExecution]
    ) -> list[int]:
        """Commit more pending requests to an open session."""
        now = _sql_time(utcnow())

        def write(db: sqlite3.Connection) -> list[int]:
            (seq,) = db.execute(
                "SELECT count(*) FROM executions WHERE session_id = ?", (session_id,)
            ).fetchone()
            return _insert_executions(db, session_id, executions, start_seq=seq, now=now)

        return await self._fast.write(write, in_thread=True)

    async def finish_session(
        self,
        session_id: str,
        status: SessionStatus,
        *,
        completed_at: datetime | None = None,
        report_json: str | None = None,
    ) -> None:
        """Record a session's end (and its report) in one write."""
        values = (status.value, _sql_time(completed_at or utcnow()), report_json, session_id)

        def write(db: sqlite3.Connection) -> None:
            db.execute(
                "UPDATE sessions SET status = ?, completed_at = ?, report_json = ? WHERE id = ?",
                values,
            )

        await self._fast.write(write, in_thread=True)  # a report can run to megabytes

    async def session_snapshot(
        self, session_id: str
    ) -> tuple[ParallelTestSession, list[ParallelTestExecution], list[ParallelTestAttempt]]:
        """A session (by exact id), its executions and its attempts, in one read.

        :raises SessionNotFoundError: if there is no such session.
        """
        async with self._tx() as db:
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
            return session, list(executions), list(attempts)

    async def reopen_session(self, session_id: str, owner: str) -> None:
        """Take over an interrupted session to resume it."""
        async with self._tx(write=True) as db:
            await db.exec(
                update(ParallelTestSession)
                .where(col(ParallelTestSession.id) == session_id)
                .values(status=SessionStatus.RUNNING.value, completed_at=None, owner=owner)
            )

    async def get_session(self, session_id: str) -> ParallelTestSession:
        async with self._tx() as db:
            row = await db.get(ParallelTestSession, session_id)
            if row is None:
                row = (
                    await db.exec(
                        select(ParallelTestSession).where(
                            col(ParallelTestSession.id).startswith(session_id)
                        )
                    )
                ).first()
        if row is None:
            raise SessionNotFoundError(
                f"no session {session_id!r}; `parallel-orch sessions` lists them"
            )
        return row

    async def recent_sessions(self, limit: int = 20) -> list[ParallelTestSession]:
        async with self._tx() as db:
            rows = await db.exec(
                select(ParallelTestSession)
                .order_by(col(ParallelTestSession.created_at).desc())
                .limit(limit)
            )
            return list(rows)

    async def sessions_with_status(self, status: SessionStatus) -> list[ParallelTestSession]:
        async with self._tx() as db:
            rows = await db.exec(
                select(ParallelTestSession).where(col(ParallelTestSession.status) == status.value)
            )
            return list(rows)

    async def executions(
        self, session_id: str, statuses: Iterable[ExecutionStatus] | None = None
    ) -> list[ParallelTestExecution]:
        query = select(ParallelTestExecution).where(
            col(ParallelTestExecution.session_id) == session_id
        )
        if statuses is not None:
            query = query.where(col(ParallelTestExecution.status).in_([s.value for s in statuses]))
        async with self._tx() as db:
            return list(await db.exec(query.order_by(col(ParallelTestExecution.seq))))

    async def attempts(self, session_id: str) -> list[ParallelTestAttempt]:
        async with self._tx() as db:
            rows = await db.exec(
                select(ParallelTestAttempt)
                .where(col(ParallelTestAttempt.session_id) == session_id)
                .order_by(col(ParallelTestAttempt.id))
            )
            return list(rows)

    async def count_by_status(self, session_id: str) -> dict[str, int]:
        async with self._tx() as db:
            rows = await db.exec(
                select(ParallelTestExecution.status, func.count())
                .where(col(ParallelTestExecution.session_id) == session_id)
                .group_by(col(ParallelTestExecution.status))
            )
            return {status: count for status, count in rows}

    async def counts_by_session(self, session_ids: Sequence[str]) -> dict[str, dict[str, int]]:
        """Executions per status for several sessions, in one query."""
        out: dict[str, dict[str, int]] = {sid: {} for sid in session_ids}
        if not out:
            return out
        async with self._tx() as db:
            rows = await db.exec(
                select(ParallelTestExecution.session_id, ParallelTestExecution.status, func.count())
                .where(col(ParallelTestExecution.session_id).in_(list(out)))
                .group_by(col(ParallelTestExecution.session_id), col(ParallelTestExecution.status))
            )
            for session_id, status, count in rows:
                out[session_id][status] = count
        return out

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
        now = _sql_time(utcnow())
        running = ExecutionStatus.RUNNING.value

        def write(db: sqlite3.Connection) -> int:
            cursor = db.execute(
                "INSERT INTO attempts (execution_id, session_id, number, worker, worktree,"
                " log_path, started_at, status, output_tail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, '')",
                (execution_id, session_id, number, worker, worktree, log_path, now, running),
            )
            db.execute(
                "UPDATE executions SET status = ?, attempts = ?,"
                " started_at = COALESCE(started_at, ?) WHERE id = ?",
                (running, number, now, execution_id),
            )
            assert cursor.lastrowid is not None
            return cursor.lastrowid

        return await self._fast.write(write)

    async def set_attempt_process(self, attempt_id: int, pid: int, pgid: int) -> None:
        """The process an attempt runs now (its setup's, then its command's)."""

        def write(db: sqlite3.Connection) -> None:
            db.execute(
                "UPDATE attempts SET pid = ?, pgid = ? WHERE id = ?", (pid, pgid, attempt_id)
            )

        await self._fast.write(write)

    async def end_attempt(self, end: AttemptEnd, outcome: ExecutionEnd | None) -> None:
        """Record an attempt's end and, in the same transaction, its execution's new state:
        ``outcome`` when final, else back to pending for a retry.
        """
        now = _sql_time(utcnow())
        junit = end.junit
        cases = (junit.passed, junit.failed, junit.errors, junit.skipped) if junit else (None,) * 4

        def write(db: sqlite3.Connection) -> None:
            db.execute(
                "UPDATE attempts SET status = ?, exit_code = ?, completed_at = ?,"
                " duration_seconds = ?, output_tail = ?, error = ?, cases_passed = ?,"
                " cases_failed = ?, cases_errors = ?, cases_skipped = ? WHERE id = ?",
                (
                    end.status.value,
                    end.exit_code,
                    now,
                    end.duration_seconds,
                    end.output_tail,
                    end.error,
                    *cases,
                    end.attempt_id,
                ),
            )
            if outcome is None:
                db.execute(
                    "UPDATE executions SET status = ? WHERE id = ?",
                    (ExecutionStatus.PENDING.value, end.execution_id),
                )
            else:
                db.execute(
                    "UPDATE executions SET status = ?, flaky = ?, error = ?, completed_at = ?,"
                    " duration_seconds = ? WHERE id = ?",
                    (
                        outcome.status.value,
                        outcome.flaky,
                        outcome.error,
                        now,
                        outcome.duration_seconds,
                        end.execution_id,
                    ),
                )

        await self._fast.write(write)

    async def finish_execution(
        self,
        execution_id: int,
        status: ExecutionStatus,
        *,
        flaky: bool = False,
        error: str | None = None,
        duration_seconds: float | None = None,
    ) -> None:
        async with self._tx(write=True) as db:
            await db.exec(
                update(ParallelTestExecution)
                .where(col(ParallelTestExecution.id) == execution_id)
                .values(
                    status=status.value,
                    flaky=flaky,
                    error=error,
                    completed_at=utcnow(),
                    duration_seconds=duration_seconds,
                )
            )

    async def set_execution_pending(self, execution_id: int) -> None:
        """Back to pending while a retry waits in the queue."""
        async with self._tx(write=True) as db:
            await db.exec(
                update(ParallelTestExecution)
                .where(col(ParallelTestExecution.id) == execution_id)
                .values(status=ExecutionStatus.PENDING.value)
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
        unfinished = [ExecutionStatus.PENDING.value, ExecutionStatus.RUNNING.value]
        now = utcnow()
        async with self._tx(write=True) as db:
            await db.exec(
                update(ParallelTestAttempt)
                .where(
                    col(ParallelTestAttempt.session_id) == session_id,
                    col(ParallelTestAttempt.status) == ExecutionStatus.RUNNING.value,
                )
                .values(status=status.value, completed_at=now, error=error)
            )
            if not executions:
                return 0
            result = await db.exec(
                update(ParallelTestExecution)
                .where(
                    col(ParallelTestExecution.session_id) == session_id,
                    col(ParallelTestExecution.status).in_(unfinished),
                )
                .values(status=status.value, completed_at=now, error=error)
            )
            return int(result.rowcount or 0)

    async def running_attempts(self, session_id: str) -> list[ParallelTestAttempt]:
        async with self._tx() as db:
            rows = await db.exec(
                select(ParallelTestAttempt).where(
                    col(ParallelTestAttempt.session_id) == session_id,
                    col(ParallelTestAttempt.status) == ExecutionStatus.RUNNING.value,
                )
            )
            return list(rows)

    async def history(self, test_ids: Iterable[str]) -> dict[str, float]:
        """Expected duration per test id: mean of its last few final attempts' durations."""
        ids = list(set(test_ids))
        if not ids:
            return {}
        found: dict[str, list[float]] = {}
        async with self._tx() as db:
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
    event.listen(engine.sync_engine, "connect", _on_connect)
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
            store._fast.close()
    finally:
        await engine.dispose()
