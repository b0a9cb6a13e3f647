"""The SQL of the store's reads, on a plain ``sqlite3`` connection, plain records out.

No ORM on the read path: importing SQLAlchemy and SQLModel costs a quarter
of a second, more than ``run`` may take to its first attempt, and tens of
thousands of ORM objects cost seconds where rows cost milliseconds. Values
come back as the tables' columns mean them: times as UTC-aware datetimes (so
every JSON out of them has its ``Z``), flags as bools.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import fields
from datetime import UTC, datetime
from typing import Any, TypeVar

from parallel_orch.exceptions import AmbiguousSessionError, SessionNotFoundError
from parallel_orch.models import ExecutionStatus, SessionStatus
from parallel_orch.store.records import (
    AttemptRecord,
    CaseRecord,
    ExecutionProgress,
    ExecutionRecord,
    SessionRecord,
    SessionSnapshot,
)
from parallel_orch.store.writer import sql_time

HISTORY_WINDOW = 5  # recent final executions averaged per test id
AMBIGUOUS_LISTED = 10  # candidates named when a session prefix matches several
IN_CHUNK = 500  # ids per IN (...): SQLite's variable limit
CASE_TIMES_LIMIT = 500_000  # rows read for one sharded test's durations
CASE_TIMES_RUNS = 3  # runs with cases read per id (the test's, each shard's), newest first

R = TypeVar("R", SessionRecord, ExecutionRecord, AttemptRecord)

_TIMES = frozenset({"created_at", "started_at", "completed_at"})
_FLAGS = frozenset({"flaky", "sharded"})
_TABLE = {SessionRecord: "sessions", ExecutionRecord: "executions", AttemptRecord: "attempts"}


class TooLarge(Exception):
    """A read found more rows than it may read on the event loop (see ``StoreReads``)."""


def at_most(db: sqlite3.Connection, limit: int | None, rows: str, params: Sequence[Any]) -> None:
    """:class:`TooLarge` when ``rows`` (a ``SELECT``) has more than ``limit`` rows; a
    bounded count. Nothing to check when ``limit`` is ``None``."""
    if limit is None:
        return
    sql = f"SELECT count(*) FROM ({rows} LIMIT ?)"
    (count,) = db.execute(sql, (*params, limit + 1)).fetchone()
    if count > limit:
        raise TooLarge


def utc(value: str | None) -> datetime | None:
    """A stored time (``YYYY-MM-DD HH:MM:SS.ffffff``, UTC) as an aware datetime."""
    return None if value is None else datetime.fromisoformat(value).replace(tzinfo=UTC)


_NO_REPORT = frozenset({"report_json"})


_Shape = tuple[str, list[int], list[int], int | None]
_SHAPES: dict[tuple[type[Any], bool], _Shape] = {}


def _shape(cls: type[R], report: bool) -> _Shape:
    """``cls``'s columns to select, and where its times, flags and plan paths are."""
    known = _SHAPES.get((cls, report))
    if known is None:
        known = _SHAPES[cls, report] = _shape_of(cls, report)
    return known


def _shape_of(cls: type[R], report: bool) -> _Shape:
    names = [f.name for f in fields(cls)]
    unread = frozenset() if report else _NO_REPORT
    columns = ", ".join("NULL" if n in unread else n for n in names)
    times = [i for i, n in enumerate(names) if n in _TIMES]
    flags = [i for i, n in enumerate(names) if n in _FLAGS]
    paths = names.index("plan_paths") if cls is SessionRecord else None
    return columns, times, flags, paths


def rows_of(
    db: sqlite3.Connection, cls: type[R], where: str, params: Any = (), *, report: bool = True
) -> list[R]:
    """``SELECT <cls's fields> FROM <its table> <where>`` as ``cls`` records; sessions
    without their stored report (``report_json`` None) unless ``report``."""
    columns, times, flags, paths = _shape(cls, report)
    out = []
    for row in db.execute(f"SELECT {columns} FROM {_TABLE[cls]} {where}", params):
        values = list(row)
        for i in times:
            values[i] = utc(values[i])
        for i in flags:
            if values[i] is not None:
                values[i] = bool(values[i])
        if paths is not None:
            values[paths] = _plan_paths(values[paths])
        out.append(cls(*values))
    return out


def _plan_paths(stored: str) -> tuple[str, ...]:
    try:
        paths = json.loads(stored)
    except (json.JSONDecodeError, TypeError):
        return ()
    return tuple(str(p) for p in paths) if isinstance(paths, list) else ()


def session_by_id(
    db: sqlite3.Connection, session_id: str, *, report: bool = True
) -> SessionRecord | None:
    found = rows_of(db, SessionRecord, "WHERE id = ?", (session_id,), report=report)
    return found[0] if found else None


def snapshot(db: sqlite3.Connection, session_id: str, limit: int | None = None) -> SessionSnapshot:
    """A session's rows; :class:`TooLarge` when it has more than ``limit`` executions,
    attempts or cases."""
    session = session_by_id(db, session_id)
    if session is None:
        raise SessionNotFoundError(f"no session {session_id!r}")
    has_cases = True
    if limit is not None:  # one bounded count of each: fewer statements than rows here
        counts = db.execute(_SIZES, {"session_id": session_id, "limit": limit + 1}).fetchone()
        if max(counts) > limit:
            raise TooLarge
        has_cases = counts[2] > 0
    where = "WHERE session_id = ? ORDER BY"
    return SessionSnapshot(
        session=session,
        executions=tuple(rows_of(db, ExecutionRecord, f"{where} seq", (session_id,))),
        attempts=tuple(rows_of(db, AttemptRecord, f"{where} id", (session_id,))),
        cases=_cases(db, session_id) if has_cases else (),
    )


EXECUTIONS_OF = "SELECT 1 FROM executions WHERE session_id = ?"
_SIZES = "SELECT " + ", ".join(
    f"(SELECT count(*) FROM ({rows} LIMIT :limit))"
    for rows in (
        "SELECT 1 FROM executions WHERE session_id = :session_id",
        "SELECT 1 FROM attempts WHERE session_id = :session_id",
        "SELECT 1 FROM cases AS c JOIN attempts AS a ON a.id = c.attempt_id"
        " WHERE a.session_id = :session_id",
    )
)

_CASES = (
    "SELECT c.attempt_id, c.classname, c.name, c.file, c.status, c.time, c.message"
    " FROM cases AS c JOIN attempts AS a ON a.id = c.attempt_id"
    " WHERE a.session_id = ? ORDER BY c.id"
)


def _cases(db: sqlite3.Connection, session_id: str) -> tuple[CaseRecord, ...]:
    return tuple(CaseRecord(*row) for row in db.execute(_CASES, (session_id,)))


#: A sharded test's case times: its own id and each of its shards' ids (``<id>[k/n]``;
#: ids are ASCII, so they are the range ``<id>[`` .. ``<id>\\``, walked one distinct id at a
#: time), each id's newest executions that recorded cases, their cases newest first.
#: Every step is a seek in the (test_id, created_at) index, however long the history.
_CASE_TIMES = (
    "WITH RECURSIVE shard(id) AS ("
    "  SELECT min(test_id) FROM executions WHERE test_id >= :first_shard AND test_id < :past"
    "  UNION ALL SELECT (SELECT min(test_id) FROM executions"
    "   WHERE test_id > shard.id AND test_id < :past) FROM shard WHERE shard.id IS NOT NULL"
    "), ids(id) AS (SELECT :test_id UNION SELECT id FROM shard WHERE id IS NOT NULL)"
    " SELECT c.classname, c.name, c.time FROM ids"
    " JOIN executions AS e ON e.id IN (SELECT x.id FROM executions AS x WHERE x.test_id = ids.id"
    "  AND EXISTS (SELECT 1 FROM attempts AS y JOIN cases AS z ON z.attempt_id = y.id"
    "   WHERE y.execution_id = x.id)"
    "  ORDER BY x.created_at DESC, x.id DESC LIMIT :runs)"
    " JOIN attempts AS a ON a.execution_id = e.id JOIN cases AS c ON c.attempt_id = a.id"
    " WHERE c.time IS NOT NULL ORDER BY a.id DESC LIMIT :limit"
)


def case_times(db: sqlite3.Connection, test_id: str) -> dict[str, float]:
    """The newest time of each case of ``test_id`` and its shards, keyed ``classname::name``,
    from the last :data:`CASE_TIMES_RUNS` executions of each that recorded cases."""
    rows = db.execute(
        _CASE_TIMES,
        {
            "test_id": test_id,
            "first_shard": f"{test_id}[",
            "past": f"{test_id}\\",  # the character after "["
            "runs": CASE_TIMES_RUNS,
            "limit": CASE_TIMES_LIMIT,
        },
    )
    found: dict[str, float] = {}
    for classname, name, seconds in rows:
        found.setdefault(f"{classname}::{name}", seconds)  # the newest wins
    return found


def previous(db: sqlite3.Connection, session: SessionRecord) -> SessionRecord | None:
    """The newest finished session of the same plan set created before ``session``."""
    found = rows_of(
        db,
        SessionRecord,
        "WHERE plan_key = ? AND id != ? AND created_at <= ? AND status != ?"
        " ORDER BY created_at DESC LIMIT 1",
        (session.plan_key, session.id, sql_time(session.created_at), SessionStatus.RUNNING.value),
    )
    return found[0] if found else None


def find_session(db: sqlite3.Connection, session_id: str, *, report: bool = True) -> SessionRecord:
    """A session by id, or the one session whose id starts with ``session_id`` (literally:
    no LIKE, so ``%`` and ``_`` are characters like any other); without its stored report
    unless ``report``."""
    row = session_by_id(db, session_id, report=report)
    rows = [row] if row is not None else _by_prefix(db, session_id, report=report)
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
    return rows[0]


def _by_prefix(db: sqlite3.Connection, prefix: str, *, report: bool) -> list[SessionRecord]:
    if not prefix:
        return []
    return rows_of(
        db,
        SessionRecord,
        "WHERE substr(id, 1, ?) = ? ORDER BY created_at DESC LIMIT ?",
        (len(prefix), prefix, AMBIGUOUS_LISTED + 1),
        report=report,
    )


def _chunks(ids: Sequence[str]) -> list[Sequence[str]]:
    return [ids[start : start + IN_CHUNK] for start in range(0, len(ids), IN_CHUNK)]


def _marks(count: int) -> str:
    return ", ".join("?" * count)


def counts(db: sqlite3.Connection, session_ids: Sequence[str]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {sid: {} for sid in session_ids}
    for chunk in _chunks(session_ids):
        rows = db.execute(
            "SELECT session_id, status, count(*) FROM executions"
            f" WHERE session_id IN ({_marks(len(chunk))}) GROUP BY session_id, status",
            tuple(chunk),
        )
        for session_id, status, count in rows:
            out[session_id][status] = count
    return out


#: Per test id, the mean duration of its newest executions that have one: a seek in
#: the (test_id, created_at) index for each, however long its history (migration 0006).
_HISTORY = (
    "WITH ids(value) AS (VALUES {})"
    " SELECT ids.value, (SELECT avg(d) FROM (SELECT e.duration_seconds AS d FROM executions AS e"
    "  WHERE e.test_id = ids.value AND e.duration_seconds IS NOT NULL"
    f"  ORDER BY e.created_at DESC, e.id DESC LIMIT {HISTORY_WINDOW}))"
    " FROM ids"
)


def history(db: sqlite3.Connection, ids: Sequence[str]) -> dict[str, float]:
    """Expected seconds per test id: the mean duration of its newest executions (at most
    :data:`HISTORY_WINDOW`); ids that never ran are left out."""
    found: dict[str, float] = {}
    for chunk in _chunks(ids):
        rows = db.execute(_HISTORY.format(", ".join(["(?)"] * len(chunk))), tuple(chunk))
        found.update((test_id, mean) for test_id, mean in rows if mean is not None)
    return found


_PROGRESS = (
    "SELECT e.test_id, e.status, e.duration_seconds, r.started_at FROM executions AS e"
    " LEFT OUTER JOIN (SELECT execution_id, started_at FROM attempts"
    "  WHERE session_id = :sid AND status = :running) AS r ON r.execution_id = e.id"
    " WHERE e.session_id = :sid"
)


def progress(db: sqlite3.Connection, session_id: str) -> list[ExecutionProgress]:
    rows = db.execute(_PROGRESS, {"sid": session_id, "running": ExecutionStatus.RUNNING.value})
    return [
        ExecutionProgress(test_id, status, duration, utc(since))
        for test_id, status, duration, since in rows
    ]
