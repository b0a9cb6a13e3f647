"""Reads across sessions: one test's executions, and outcomes for flakiness.

A test id names its matrix and repeat variants too: ``unit/core::cli`` is
also ``unit/core::cli@main`` and ``unit/core::cli#2`` (ids are ASCII, so the
variants sort between ``<id>@`` / ``<id>#`` and the same followed by DEL, and
the id index serves both ranges).
"""

from __future__ import annotations

import sqlite3
from datetime import datetime

from parallel_orch.models import ExecutionStatus
from parallel_orch.store.queries import rows_of
from parallel_orch.store.records import ExecutionRecord, OutcomeCounts

#: Statuses that say how the test itself went; error, skipped and cancelled say nothing of it.
OUTCOME_STATUSES = (
    ExecutionStatus.PASSED.value,
    ExecutionStatus.FAILED.value,
    ExecutionStatus.TIMED_OUT.value,
)
VARIANT_MARKS = ("@", "#")  # a refs matrix's @<ref>, a repeat's #<n>
_LAST_ASCII = "\x7f"


def executions_of(db: sqlite3.Connection, test_id: str, limit: int) -> list[ExecutionRecord]:
    """The newest ``limit`` executions of ``test_id`` and its variants, newest first."""
    ranges = " OR ".join("test_id BETWEEN ? AND ?" for _ in VARIANT_MARKS)
    bounds = [b for mark in VARIANT_MARKS for b in (test_id + mark, test_id + mark + _LAST_ASCII)]
    return rows_of(
        db,
        ExecutionRecord,
        f"WHERE test_id = ? OR {ranges} ORDER BY created_at DESC, id DESC LIMIT ?",
        (test_id, *bounds, limit),
    )


_FAILING = f"e.status != '{ExecutionStatus.PASSED.value}'"
#: Per test id and commit; the latest failure and flaky pass as "<completed_at> <session>"
#: (times are stored as fixed-width text, so the greatest string is the latest).
_OUTCOMES = (
    "SELECT e.test_id, e.sha,"
    f" sum(NOT ({_FAILING})), sum({_FAILING}), sum(e.flaky),"
    f" max(CASE WHEN {_FAILING} THEN e.completed_at || ' ' || e.session_id END),"
    " max(CASE WHEN e.flaky THEN e.completed_at || ' ' || e.session_id END)"
    " FROM executions AS e"
    " WHERE e.session_id IN (SELECT id FROM sessions ORDER BY created_at DESC LIMIT :sessions)"
    f" AND +e.status IN ({', '.join(repr(s) for s in OUTCOME_STATUSES)})"
    " GROUP BY e.test_id, e.sha"
)


def outcome_counts(db: sqlite3.Connection, sessions: int) -> tuple[int, list[OutcomeCounts]]:
    """How many sessions the last ``sessions`` are (fewer in a young store), and per test
    id and commit how its executions in them went (those that passed, failed or timed out).

    Summed in SQL: a window of 20 sessions of 20,000 tests is 400,000 executions.
    """
    recent = "SELECT count(*) FROM (SELECT id FROM sessions LIMIT ?)"
    counted = int(db.execute(recent, (sessions,)).fetchone()[0])
    rows = db.execute(_OUTCOMES, {"sessions": sessions})
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
