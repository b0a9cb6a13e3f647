"""Store: the record's API, and :func:`open_store`."""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio

from parallel_orch.exceptions import StoreError
from parallel_orch.models import ExecutionStatus, SessionStatus
from parallel_orch.store import writes
from parallel_orch.store.reads import StoreReads
from parallel_orch.store.records import (
    AttemptEnd,
    ExecutionEnd,
    NewExecution,
    utcnow,
)
from parallel_orch.store.schema import create_schema
from parallel_orch.store.writer import Writer, each_alone, sql_time

BULK_CASES = 200  # an attempt's cases beyond which their insert runs in a thread
BULK_REPORT_CHARS = 64 * 1024  # a stored report beyond which its write runs in a thread
DB_FILENAME = "orch.sqlite3"
SCHEMA_LOCK = "orch.sqlite3.schema-lock"  # held while the schema is made


class Store(StoreReads):
    """Async access to the record: the reads of :class:`StoreReads`, and every write
    through one :class:`~parallel_orch.store.writer.Writer`. Use :func:`open_store`."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self._writer = Writer(path)

    def close(self) -> None:
        """Close the write connection and the idle read ones (blocks: call in a thread)."""
        self._writer.close()
        self.close_reads()

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
        idempotency_key: str | None = None,
        options_json: str = "{}",
        then: Callable[[list[int]], None] | None = None,
    ) -> list[int]:
        """Commit the session and its requests (pending), synced to disk; execution ids back.

        Concurrent calls share one transaction and one fsync (group commit).
        ``then`` is called with the ids the moment they are on disk (see
        :meth:`~parallel_orch.store.writer.Writer.write_synced`).

        :raises DuplicateSubmitError: if ``idempotency_key`` already made a session.
        """
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
            idempotency_key=idempotency_key,
            options_json=options_json,
        )
        return await self._writer.write_synced(write, rows=len(executions), then=then)

    async def create_sessions(
        self,
        sessions: Sequence[dict[str, Any]],
        *,
        then: Callable[[list[list[int] | Exception]], None] | None = None,
    ) -> list[list[int] | Exception]:
        """:meth:`create_session` for several sessions (each given as its keyword arguments,
        ``then`` aside) in one synced write, all in a few statements: the ids of each, or
        what it raised (then each is written again in a savepoint of its own, and only the
        ones that fail are undone; so are sessions with idempotency keys).

        :raises StoreError: if the transaction cannot be committed (none is).
        """
        now = sql_time(utcnow())

        def write(db: sqlite3.Connection) -> list[list[int] | Exception]:
            db.execute("SAVEPOINT every")  # all together; if one fails, each alone
            try:
                ids: list[list[int] | Exception] = [*writes.insert_sessions(db, sessions, now=now)]
            except Exception:
                db.execute("ROLLBACK TO every")
                alone = [functools.partial(writes.insert_session, now=now, **kw) for kw in sessions]
                ids = each_alone(db, alone, self.path)
            db.execute("RELEASE every")
            return ids

        rows = sum(len(kwargs["executions"]) for kwargs in sessions)
        return await self._writer.write_synced(write, rows=rows, then=then)

    async def add_executions(
        self, session_id: str, executions: Sequence[NewExecution]
    ) -> list[int]:
        """Commit more pending requests to an open session, synced to disk (group commit)."""
        write = functools.partial(
            writes.append_executions,
            session_id=session_id,
            executions=executions,
            now=sql_time(utcnow()),
        )
        return await self._writer.write_synced(write, rows=len(executions))

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
        big = report_json is not None and len(report_json) > BULK_REPORT_CHARS
        await self._writer.write(write, in_thread=big)  # a report can run to megabytes

    async def set_notify_status(self, session_id: str, status: str) -> None:
        """How the webhook's delivery of a session's report went."""
        await self._writer.write(
            functools.partial(writes.set_notify_status, session_id=session_id, status=status)
        )

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
        host: str = "",
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
            host=host,
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
        many = end.junit is not None and len(end.junit.cases) > BULK_CASES
        await self._writer.write(write, in_thread=many)  # a file's cases: off the loop

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


@asynccontextmanager
async def open_store(state_dir: Path) -> AsyncIterator[Store]:
    """Open (creating if needed) the store under ``state_dir``.

    :raises StoreError: if the directory or database cannot be written.
    """
    try:
        await anyio.to_thread.run_sync(lambda: state_dir.mkdir(parents=True, exist_ok=True))
    except OSError as exc:
        raise StoreError(
            f"cannot create state dir {state_dir}: {exc.strerror}; make its parent writable "
            "or pass --state-dir"
        ) from exc
    path = state_dir / DB_FILENAME
    await anyio.to_thread.run_sync(create_schema, path, state_dir / SCHEMA_LOCK)
    store = Store(path)
    try:
        yield store
    finally:
        with anyio.CancelScope(shield=True):  # closing connections can wait on a disk
            await anyio.to_thread.run_sync(store.close)
