"""The store's reads: plain ``sqlite3`` in a worker thread, plain records out.

Each read runs in one read transaction (one snapshot of the WAL) on a thread
of its own, on a connection from a small pool of the store's own: a read
that is cancelled waits for its thread and leaves nothing behind. A read
that turns out small (a session of a few tests: what the daemon reads for
every session it runs) runs on the event loop instead, on a connection of
its own that never waits for a lock: a hop to a thread and back costs the
loop more than such a read. The SQL is in :mod:`~.queries` and :mod:`~.history`.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TypeVar

import anyio

from parallel_orch.exceptions import StoreError
from parallel_orch.models import ExecutionStatus, SessionStatus
from parallel_orch.store import history as across
from parallel_orch.store import queries
from parallel_orch.store.queries import TooLarge
from parallel_orch.store.records import (
    AttemptRecord,
    ExecutionProgress,
    ExecutionRecord,
    OutcomeCounts,
    SessionRecord,
    SessionSnapshot,
)
from parallel_orch.store.writer import describe, on_connect

T = TypeVar("T")

#: Rows (executions, attempts, cases) a read may take on the event loop; a larger read
#: finds out in a bounded probe and goes to a thread.
INLINE_ROWS = 64

Small = Callable[[sqlite3.Connection, int | None], T]
"""A read given a row limit when it runs on the loop: it raises :class:`TooLarge` past
it (``None``: in a thread, no limit)."""


class StoreReads:
    """Reads of the record; WAL readers never wait for the writer."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._idle: list[sqlite3.Connection] = []  # connections no read is using
        self._idle_lock = threading.Lock()
        self._loop_db: sqlite3.Connection | None = None  # the event loop's own, never waits

    def _take(self) -> sqlite3.Connection:
        with self._idle_lock:
            if self._idle:
                return self._idle.pop()
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        on_connect(db, None)
        return db

    def _give(self, db: sqlite3.Connection) -> None:
        with self._idle_lock:
            self._idle.append(db)

    def close_reads(self) -> None:
        """Close the idle read connections (blocks: the last one may checkpoint)."""
        with self._idle_lock:
            idle, self._idle = self._idle, []
        loop_db, self._loop_db = self._loop_db, None
        for db in [*idle, *([loop_db] if loop_db else [])]:
            db.close()

    def _run(self, query: Callable[[sqlite3.Connection], T]) -> T:
        try:
            db = self._take()
        except sqlite3.Error as exc:
            raise StoreError(describe(self.path, exc)) from exc
        try:
            db.execute("BEGIN")
            try:
                return query(db)
            finally:
                db.execute("ROLLBACK")  # a read: nothing to keep, the snapshot ends
        except sqlite3.OperationalError as exc:
            raise StoreError(describe(self.path, exc)) from exc
        finally:
            self._give(db)

    async def _read(self, query: Callable[[sqlite3.Connection], T]) -> T:
        """``query`` in one read transaction, in a worker thread."""
        return await anyio.to_thread.run_sync(self._run, query)

    async def _read_small(self, query: Small[T]) -> T:
        """``query`` on the event loop when it is small (it raises :class:`TooLarge` past
        :data:`INLINE_ROWS`) and no lock is in the way; else in a worker thread."""
        if self._loop_db is None:  # opening may wait out another's recovery: in a thread
            self._loop_db = await anyio.to_thread.run_sync(self._connect_for_loop)
        try:
            return self._run_on_loop(self._loop_db, query)
        except TooLarge:
            pass
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode & 0xFF not in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                raise StoreError(describe(self.path, exc)) from exc
        return await self._read(lambda db: query(db, None))

    def _connect_for_loop(self) -> sqlite3.Connection:
        try:
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            on_connect(db, None)
            db.execute("PRAGMA busy_timeout = 0")  # the loop never sleeps on a lock
        except sqlite3.Error as exc:
            raise StoreError(describe(self.path, exc)) from exc
        return db

    @staticmethod
    def _run_on_loop(db: sqlite3.Connection, query: Small[T]) -> T:
        db.execute("BEGIN")
        try:
            return query(db, INLINE_ROWS)
        finally:
            db.execute("ROLLBACK")

    async def session_snapshot(self, session_id: str) -> SessionSnapshot:
        """A session (by exact id), its executions and its attempts, in one read.

        :raises SessionNotFoundError: if there is no such session.
        """
        return await self._read(lambda db: queries.snapshot(db, session_id))

    async def ending_snapshot(
        self, session_id: str
    ) -> tuple[SessionSnapshot, SessionRecord | None]:
        """A session's snapshot (as :meth:`session_snapshot`) and the session of the same plan
        set that ran last before it (as :meth:`previous_session`), in one read: what its
        report needs. On the event loop for a small session.

        :raises SessionNotFoundError: if there is no such session.
        """

        def query(
            db: sqlite3.Connection, limit: int | None
        ) -> tuple[SessionSnapshot, SessionRecord | None]:
            snapshot = queries.snapshot(db, session_id, limit)
            session = snapshot.session
            return snapshot, queries.previous(db, session) if session.plan_key else None

        return await self._read_small(query)

    async def get_session(self, session_id: str) -> SessionRecord:
        """A session by id, or by a prefix of its id that names one session only.

        The prefix matches literally (``%`` and ``_`` are characters like any other).

        :raises SessionNotFoundError: if there is none.
        :raises AmbiguousSessionError: if the prefix names several; it lists them.
        """
        return await self._read(lambda db: queries.find_session(db, session_id))

    async def session_executions(
        self, session_id: str
    ) -> tuple[SessionRecord, list[ExecutionRecord]]:
        """A session (as :meth:`get_session` finds it, without its stored report) and its
        executions in submission order, in one read; on the event loop for a small session."""

        def query(
            db: sqlite3.Connection, limit: int | None
        ) -> tuple[SessionRecord, list[ExecutionRecord]]:
            session = queries.find_session(db, session_id, report=False)
            queries.at_most(db, limit, queries.EXECUTIONS_OF, (session.id,))
            where = "WHERE session_id = ? ORDER BY seq"
            return session, queries.rows_of(db, ExecutionRecord, where, (session.id,))

        return await self._read_small(query)

    async def session_counts(self, session_id: str) -> tuple[SessionRecord, dict[str, int]]:
        """A session (as :meth:`get_session` finds it, without its stored report) and its
        executions per status, in one read; on the event loop for a small session."""

        def query(
            db: sqlite3.Connection, limit: int | None
        ) -> tuple[SessionRecord, dict[str, int]]:
            session = queries.find_session(db, session_id, report=False)
            queries.at_most(db, limit, queries.EXECUTIONS_OF, (session.id,))
            return session, queries.counts(db, [session.id])[session.id]

        return await self._read_small(query)

    async def case_durations(self, test_id: str) -> dict[str, float]:
        """The newest recorded duration of each JUnit case of ``test_id`` or its shards
        (from each one's last few runs that recorded cases), keyed ``classname::name``."""
        return await self._read(lambda db: queries.case_times(db, test_id))

    async def previous_session(self, session: SessionRecord) -> SessionRecord | None:
        """The session of the same plan set that ran last before ``session``, if any."""
        if not session.plan_key:
            return None
        return await self._read(lambda db: queries.previous(db, session))

    async def recent_sessions(self, limit: int = 20) -> list[SessionRecord]:
        where = "ORDER BY created_at DESC LIMIT ?"
        return await self._read(lambda db: queries.rows_of(db, SessionRecord, where, (limit,)))

    async def sessions_with_status(self, status: SessionStatus) -> list[SessionRecord]:
        where, params = "WHERE status = ?", (status.value,)
        return await self._read(lambda db: queries.rows_of(db, SessionRecord, where, params))

    async def executions(
        self, session_id: str, statuses: Iterable[ExecutionStatus] | None = None
    ) -> list[ExecutionRecord]:
        where, params = "WHERE session_id = ?", [session_id]
        if statuses is not None:
            values = [s.value for s in statuses]
            where += f" AND status IN ({', '.join('?' * len(values))})"
            params += values
        where += " ORDER BY seq"
        return await self._read(lambda db: queries.rows_of(db, ExecutionRecord, where, params))

    async def attempts(
        self, session_id: str, *, status: ExecutionStatus | None = None
    ) -> list[AttemptRecord]:
        """A session's attempts in the order they started (only those in ``status``)."""
        where, params = "WHERE session_id = ?", [session_id]
        if status is not None:
            where += " AND status = ?"
            params.append(status.value)
        where += " ORDER BY id"
        return await self._read(lambda db: queries.rows_of(db, AttemptRecord, where, params))

    async def session_for_key(self, idempotency_key: str) -> str | None:
        """The session a submit with this idempotency key made, if any (one row: on the loop)."""

        def query(db: sqlite3.Connection, _limit: int | None) -> str | None:
            sql = "SELECT session_id FROM submit_keys WHERE key = ?"
            row = db.execute(sql, (idempotency_key,)).fetchone()
            return None if row is None else str(row[0])

        return await self._read_small(query)

    async def count_by_status(self, session_id: str) -> dict[str, int]:
        return (await self.counts_by_session([session_id]))[session_id]

    async def counts_by_session(self, session_ids: Sequence[str]) -> dict[str, dict[str, int]]:
        """Executions per status for several sessions, in one read."""
        ids = list(dict.fromkeys(session_ids))
        if not ids:
            return {}
        return await self._read(lambda db: queries.counts(db, ids))

    async def progress(self, session_id: str) -> list[ExecutionProgress]:
        """Where each execution of a session (by exact id) stands: status, final duration,
        and since when its attempt runs; columns only, so it stays cheap at 20,000 tests."""
        return await self._read(lambda db: queries.progress(db, session_id))

    async def history(self, test_ids: Iterable[str]) -> dict[str, float]:
        """Expected duration per test id: the mean duration of its last few executions."""
        ids = list(set(test_ids))
        if not ids:
            return {}

        def query(db: sqlite3.Connection, limit: int | None) -> dict[str, float]:
            if limit is not None and len(ids) > limit:  # a few rows each: a few ids on the loop
                raise TooLarge
            return queries.history(db, ids)

        return await self._read_small(query)

    async def test_history(self, test_id: str, limit: int = 20) -> list[ExecutionRecord]:
        """The newest executions of ``test_id`` (and its ``@ref`` / ``#n`` variants) in any
        session, newest first."""
        return await self._read(lambda db: across.executions_of(db, test_id, limit))

    async def outcome_counts(self, sessions: int = 20) -> tuple[int, list[OutcomeCounts]]:
        """How many sessions the newest ``sessions`` are, and per test id and commit how
        many of its executions in them passed, failed (or timed out) and were flaky."""
        return await self._read(lambda db: across.outcome_counts(db, sessions))
