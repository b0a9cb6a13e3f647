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
from parallel_orch.store.records import ExecutionRecord, OutcomeRecord
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


_OUTCOMES = text(
    "SELECT e.test_id, e.session_id, e.sha, e.status, e.flaky, e.completed_at"
    " FROM executions AS e"
    " WHERE e.session_id IN (SELECT id FROM sessions ORDER BY created_at DESC LIMIT :sessions)"
    f" AND e.status IN ({', '.join(repr(s) for s in OUTCOME_STATUSES)})"
    " ORDER BY e.completed_at, e.id"
)


def recent_outcomes(db: Session, sessions: int) -> tuple[int, list[OutcomeRecord]]:
    """How many sessions the last ``sessions`` are (fewer in a young store), and the
    executions in them that ended with an outcome of the test's own, oldest first."""
    recent = select(ParallelTestSession.id).limit(sessions).subquery()
    counted = db.exec(select(func.count()).select_from(recent)).one()
    rows = db.connection().execute(_OUTCOMES, {"sessions": sessions})
    return counted, [
        OutcomeRecord(test_id, session_id, sha, status, bool(flaky), _time(completed))
        for test_id, session_id, sha, status, flaky, completed in rows
    ]


def _time(value: str | datetime | None) -> datetime | None:
    """A time column read as plain SQL (text), as the ORM reads it: naive UTC."""
    return datetime.fromisoformat(value) if isinstance(value, str) else value
