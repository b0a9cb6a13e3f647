"""Reads across sessions: one test's executions, and outcomes for flakiness.

A test id names its matrix and repeat variants too: ``unit/core::cli`` is
also ``unit/core::cli@main`` and ``unit/core::cli#2`` (ids are ASCII, so the
variants sort between ``<id>@`` / ``<id>#`` and the same followed by DEL, and
the id index serves both ranges).
"""

from __future__ import annotations

from dataclasses import fields
from datetime import datetime

from sqlalchemy import func, or_, text
from sqlmodel import Session, col, select

from parallel_orch.models import ExecutionStatus
from parallel_orch.store.records import ExecutionRecord, OutcomeCounts
from parallel_orch.store.tables import ParallelTestExecution, ParallelTestSession

#: Statuses that say how the test itself went; error, skipped and cancelled say nothing of it.
OUTCOME_STATUSES = (
    ExecutionStatus.PASSED.value,
    ExecutionStatus.FAILED.value,
    ExecutionStatus.TIMED_OUT.value,
)
VARIANT_MARKS = ("@", "#")  # a refs matrix's @<ref>, a repeat's #<n>
_LAST_ASCII = "\x7f"


def executions_of(db: Session, test_id: str, limit: int) -> list[ExecutionRecord]:
    """The newest ``limit`` executions of ``test_id`` and its variants, newest first."""
    execution = ParallelTestExecution
    ranges = [
        col(execution.test_id).between(test_id + mark, test_id + mark + _LAST_ASCII)
        for mark in VARIANT_MARKS
    ]
    rows = db.exec(
        select(execution)
        .where(or_(col(execution.test_id) == test_id, *ranges))
        .order_by(col(execution.created_at).desc(), col(execution.id).desc())
        .limit(limit)
    )
    names = [f.name for f in fields(ExecutionRecord)]
    return [ExecutionRecord(**{name: getattr(row, name) for name in names}) for row in rows]


_FAILING = f"e.status != '{ExecutionStatus.PASSED.value}'"
#: Per test id and commit; the latest failure and flaky pass as "<completed_at> <session>"
#: (times are stored as fixed-width text, so the greatest string is the latest).
_OUTCOMES = text(
    "SELECT e.test_id, e.sha,"
    f" sum(NOT ({_FAILING})), sum({_FAILING}), sum(e.flaky),"
    f" max(CASE WHEN {_FAILING} THEN e.completed_at || ' ' || e.session_id END),"
    " max(CASE WHEN e.flaky THEN e.completed_at || ' ' || e.session_id END)"
    " FROM executions AS e"
    " WHERE e.session_id IN (SELECT id FROM sessions ORDER BY created_at DESC LIMIT :sessions)"
    f" AND +e.status IN ({', '.join(repr(s) for s in OUTCOME_STATUSES)})"
    " GROUP BY e.test_id, e.sha"
)


def outcome_counts(db: Session, sessions: int) -> tuple[int, list[OutcomeCounts]]:
    """How many sessions the last ``sessions`` are (fewer in a young store), and per test
    id and commit how its executions in them went (those that passed, failed or timed out).

    Summed in SQL: a window of 20 sessions of 20,000 tests is 400,000 executions.
    """
    recent = select(ParallelTestSession.id).limit(sessions).subquery()
    counted = db.exec(select(func.count()).select_from(recent)).one()
    rows = db.connection().execute(_OUTCOMES, {"sessions": sessions})
    return counted, [
        OutcomeCounts(test_id, sha, passed, failed, flagged, _latest(failed_at), _latest(flaky_at))
        for test_id, sha, passed, failed, flagged, failed_at, flaky_at in rows
    ]


def _latest(value: str | None) -> tuple[datetime, str] | None:
    """``"<date> <time> <session id>"`` as the time (naive UTC, as the ORM reads it) and id."""
    if value is None:
        return None
    day, clock, session_id = value.split(" ", 2)
    return datetime.fromisoformat(f"{day} {clock}"), session_id
