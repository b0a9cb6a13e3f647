"""The store's reads: SQLModel queries in a worker thread, plain records out.

Each read runs in one transaction on a thread of its own, from SQLAlchemy's
pool of plain ``sqlite3`` connections: a read that is cancelled waits for its
thread and leaves nothing behind (an async driver would leave a connection
being torn down by a task of its own, which can hang the event loop's close).
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import anyio
from sqlalchemy import Engine, func, text
from sqlalchemy.exc import OperationalError
from sqlmodel import Session, SQLModel, col, select

from parallel_orch.exceptions import AmbiguousSessionError, SessionNotFoundError, StoreError
from parallel_orch.models import ExecutionStatus, SessionStatus
from parallel_orch.store import history as across
from parallel_orch.store.records import (
    AttemptRecord,
    CaseRecord,
    ExecutionProgress,
    ExecutionRecord,
    OutcomeCounts,
    SessionRecord,
    SessionSnapshot,
)
from parallel_orch.store.tables import (
    ParallelTestAttempt,
    ParallelTestExecution,
    ParallelTestSession,
    ParallelTestSubmitKey,
)
from parallel_orch.store.writer import describe

HISTORY_WINDOW = 5  # recent final executions averaged per test id
AMBIGUOUS_LISTED = 10  # candidates named when a session prefix matches several
IN_CHUNK = 500  # ids per IN (...): SQLite's variable limit

R = TypeVar("R", ExecutionRecord, AttemptRecord)
T = TypeVar("T")


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


_TIMES = frozenset({"created_at", "started_at", "completed_at"})
_FLAGS = frozenset({"flaky", "sharded"})


def _plain(db: Session, cls: type[R], table: str, session_id: str, order: str) -> tuple[R, ...]:
    """A session's rows of ``table`` as ``cls`` records, straight from SQL.

    Tens of thousands of ORM objects cost seconds; rows cost milliseconds.
    Values come back as the ORM's reads give them: UTC datetimes (aware, so every
    JSON out of them has its ``Z``), bools.
    """
    names = [f.name for f in fields(cls)]
    query = text(f"SELECT {', '.join(names)} FROM {table} WHERE session_id = :sid ORDER BY {order}")
    times = [i for i, n in enumerate(names) if n in _TIMES]
    flags = [i for i, n in enumerate(names) if n in _FLAGS]
    out = []
    for row in db.connection().execute(query, {"sid": session_id}):
        values = list(row)
        for i in times:
            if values[i] is not None:
                values[i] = datetime.fromisoformat(values[i]).replace(tzinfo=UTC)
        for i in flags:
            if values[i] is not None:
                values[i] = bool(values[i])
        out.append(cls(*values))
    return tuple(out)


def _snapshot(db: Session, session_id: str) -> SessionSnapshot:
    session = db.get(ParallelTestSession, session_id)
    if session is None:
        raise SessionNotFoundError(f"no session {session_id!r}")
    return SessionSnapshot(
        session=_session(session),
        executions=_plain(db, ExecutionRecord, "executions", session_id, "seq"),
        attempts=_plain(db, AttemptRecord, "attempts", session_id, "id"),
        cases=_cases(db, session_id),
    )


_CASES = text(
    "SELECT c.attempt_id, c.classname, c.name, c.file, c.status, c.time, c.message"
    " FROM cases AS c JOIN attempts AS a ON a.id = c.attempt_id"
    " WHERE a.session_id = :session_id ORDER BY c.id"
)


def _cases(db: Session, session_id: str) -> tuple[CaseRecord, ...]:
    """A session's JUnit cases, as plain rows: 100,000 ORM objects would take seconds."""
    rows = db.connection().execute(_CASES, {"session_id": session_id})
    return tuple(CaseRecord(*row) for row in rows)


_CASE_TIMES = text(
    "SELECT c.classname, c.name, c.time FROM cases AS c"
    " JOIN attempts AS a ON a.id = c.attempt_id JOIN executions AS e ON e.id = a.execution_id"
    " WHERE (e.test_id = :test_id OR substr(e.test_id, 1, :n) = :prefix)"
    " AND c.time IS NOT NULL ORDER BY a.id DESC LIMIT :limit"
)
CASE_TIMES_LIMIT = 500_000  # rows read for one sharded test's durations


def _case_times(db: Session, test_id: str) -> dict[str, float]:
    prefix = f"{test_id}["
    rows = db.connection().execute(
        _CASE_TIMES,
        {"test_id": test_id, "n": len(prefix), "prefix": prefix, "limit": CASE_TIMES_LIMIT},
    )
    found: dict[str, float] = {}
    for classname, name, seconds in rows:
        found.setdefault(f"{classname}::{name}", seconds)  # the newest wins
    return found


def _previous(db: Session, session: SessionRecord) -> SessionRecord | None:
    """The newest finished session of the same plan set created before ``session``."""
    row = db.exec(
        select(ParallelTestSession)
        .where(
            col(ParallelTestSession.plan_key) == session.plan_key,
            col(ParallelTestSession.id) != session.id,
            col(ParallelTestSession.created_at) <= session.created_at,
            col(ParallelTestSession.status) != SessionStatus.RUNNING.value,
        )
        .order_by(col(ParallelTestSession.created_at).desc())
        .limit(1)
    ).first()
    return _session(row) if row is not None else None


def _find_session(db: Session, session_id: str) -> SessionRecord:
    row = db.get(ParallelTestSession, session_id)
    rows = [row] if row is not None else _by_prefix(db, session_id)
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


def _by_prefix(db: Session, prefix: str) -> list[ParallelTestSession]:
    """The newest sessions whose id starts with ``prefix``, compared literally (no LIKE)."""
    if not prefix:
        return []
    found = db.exec(
        select(ParallelTestSession)
        .where(func.substr(ParallelTestSession.id, 1, len(prefix)) == prefix)
        .order_by(col(ParallelTestSession.created_at).desc())
        .limit(AMBIGUOUS_LISTED + 1)
    )
    return list(found)


def _counts(db: Session, session_ids: Sequence[str]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {sid: {} for sid in session_ids}
    for start in range(0, len(session_ids), IN_CHUNK):
        rows = db.exec(
            select(ParallelTestExecution.session_id, ParallelTestExecution.status, func.count())
            .where(col(ParallelTestExecution.session_id).in_(session_ids[start : start + IN_CHUNK]))
            .group_by(col(ParallelTestExecution.session_id), col(ParallelTestExecution.status))
        )
        for session_id, status, count in rows:
            out[session_id][status] = count
    return out


def _history(db: Session, ids: list[str]) -> dict[str, float]:
    found: dict[str, list[float]] = {}
    for start in range(0, len(ids), IN_CHUNK):
        rows = db.exec(
            select(ParallelTestExecution.test_id, ParallelTestExecution.duration_seconds)
            .where(
                col(ParallelTestExecution.test_id).in_(ids[start : start + IN_CHUNK]),
                col(ParallelTestExecution.duration_seconds).is_not(None),
            )
            .order_by(col(ParallelTestExecution.completed_at).desc())
        )
        for test_id, duration in rows:
            bucket = found.setdefault(test_id, [])
            if len(bucket) < HISTORY_WINDOW and duration is not None:
                bucket.append(duration)
    return {k: statistics.fmean(v) for k, v in found.items() if v}


def _progress(db: Session, session_id: str) -> list[ExecutionProgress]:
    running = (
        select(ParallelTestAttempt.execution_id, ParallelTestAttempt.started_at)
        .where(
            col(ParallelTestAttempt.session_id) == session_id,
            col(ParallelTestAttempt.status) == ExecutionStatus.RUNNING.value,
        )
        .subquery()
    )
    execution = ParallelTestExecution
    query = (
        select(
            execution.test_id, execution.status, execution.duration_seconds, running.c.started_at
        )
        .outerjoin(running, running.c.execution_id == execution.id)
        .where(col(execution.session_id) == session_id)
    )
    return [ExecutionProgress(*row) for row in db.exec(query)]


class StoreReads:
    """Reads of the record; WAL readers never wait for the writer."""

    def __init__(self, engine: Engine, path: Path) -> None:
        self._engine = engine
        self.path = path

    async def _read(self, query: Callable[[Session], T]) -> T:
        """``query`` in one read transaction, in a worker thread."""

        def run() -> T:
            try:
                with Session(self._engine, expire_on_commit=False) as db, db.begin():
                    return query(db)
            except OperationalError as exc:
                raise StoreError(describe(self.path, exc.orig or exc)) from exc

        return await anyio.to_thread.run_sync(run)

    async def session_snapshot(self, session_id: str) -> SessionSnapshot:
        """A session (by exact id), its executions and its attempts, in one read.

        :raises SessionNotFoundError: if there is no such session.
        """
        return await self._read(lambda db: _snapshot(db, session_id))

    async def get_session(self, session_id: str) -> SessionRecord:
        """A session by id, or by a prefix of its id that names one session only.

        The prefix matches literally (``%`` and ``_`` are characters like any other).

        :raises SessionNotFoundError: if there is none.
        :raises AmbiguousSessionError: if the prefix names several; it lists them.
        """
        return await self._read(lambda db: _find_session(db, session_id))

    async def case_durations(self, test_id: str) -> dict[str, float]:
        """The last recorded duration of each JUnit case of ``test_id`` or its shards,
        keyed ``classname::name``."""
        return await self._read(lambda db: _case_times(db, test_id))

    async def previous_session(self, session: SessionRecord) -> SessionRecord | None:
        """The session of the same plan set that ran last before ``session``, if any."""
        if not session.plan_key:
            return None
        return await self._read(lambda db: _previous(db, session))

    async def recent_sessions(self, limit: int = 20) -> list[SessionRecord]:
        query = (
            select(ParallelTestSession)
            .order_by(col(ParallelTestSession.created_at).desc())
            .limit(limit)
        )
        return await self._read(lambda db: [_session(r) for r in db.exec(query)])

    async def sessions_with_status(self, status: SessionStatus) -> list[SessionRecord]:
        query = select(ParallelTestSession).where(col(ParallelTestSession.status) == status.value)
        return await self._read(lambda db: [_session(r) for r in db.exec(query)])

    async def executions(
        self, session_id: str, statuses: Iterable[ExecutionStatus] | None = None
    ) -> list[ExecutionRecord]:
        query = select(ParallelTestExecution).where(
            col(ParallelTestExecution.session_id) == session_id
        )
        if statuses is not None:
            query = query.where(col(ParallelTestExecution.status).in_([s.value for s in statuses]))
        query = query.order_by(col(ParallelTestExecution.seq))
        return await self._read(lambda db: [_record(ExecutionRecord, r) for r in db.exec(query)])

    async def attempts(
        self, session_id: str, *, status: ExecutionStatus | None = None
    ) -> list[AttemptRecord]:
        """A session's attempts in the order they started (only those in ``status``)."""
        query = select(ParallelTestAttempt).where(col(ParallelTestAttempt.session_id) == session_id)
        if status is not None:
            query = query.where(col(ParallelTestAttempt.status) == status.value)
        query = query.order_by(col(ParallelTestAttempt.id))
        return await self._read(lambda db: [_record(AttemptRecord, r) for r in db.exec(query)])

    async def session_for_key(self, idempotency_key: str) -> str | None:
        """The session a submit with this idempotency key made, if any."""
        return await self._read(
            lambda db: db.exec(
                select(ParallelTestSubmitKey.session_id).where(
                    col(ParallelTestSubmitKey.key) == idempotency_key
                )
            ).first()
        )

    async def count_by_status(self, session_id: str) -> dict[str, int]:
        return (await self.counts_by_session([session_id]))[session_id]

    async def counts_by_session(self, session_ids: Sequence[str]) -> dict[str, dict[str, int]]:
        """Executions per status for several sessions, in one read."""
        ids = list(dict.fromkeys(session_ids))
        if not ids:
            return {}
        return await self._read(lambda db: _counts(db, ids))

    async def progress(self, session_id: str) -> list[ExecutionProgress]:
        """Where each execution of a session (by exact id) stands: status, final duration,
        and since when its attempt runs; columns only, so it stays cheap at 20,000 tests."""
        return await self._read(lambda db: _progress(db, session_id))

    async def history(self, test_ids: Iterable[str]) -> dict[str, float]:
        """Expected duration per test id: mean of its last few final attempts' durations."""
        ids = list(set(test_ids))
        if not ids:
            return {}
        return await self._read(lambda db: _history(db, ids))

    async def test_history(self, test_id: str, limit: int = 20) -> list[ExecutionRecord]:
        """The newest executions of ``test_id`` (and its ``@ref`` / ``#n`` variants) in any
        session, newest first."""
        return await self._read(lambda db: across.executions_of(db, test_id, limit))

    async def outcome_counts(self, sessions: int = 20) -> tuple[int, list[OutcomeCounts]]:
        """How many sessions the newest ``sessions`` are, and per test id and commit how
        many of its executions in them passed, failed (or timed out) and were flaky."""
        return await self._read(lambda db: across.outcome_counts(db, sessions))
