"""Every write the store makes, as a function of a sqlite3 connection in a transaction.

Prepared statements, no ORM: the :class:`~parallel_orch.store.writer.Writer`
runs each in its own transaction, in turn with the others.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

from parallel_orch.exceptions import DuplicateSubmitError
from parallel_orch.junit import Case
from parallel_orch.models import ExecutionStatus, SessionStatus
from parallel_orch.store.records import AttemptEnd, ExecutionEnd, NewExecution

PENDING = ExecutionStatus.PENDING.value
RUNNING = ExecutionStatus.RUNNING.value
ERROR = ExecutionStatus.ERROR.value

INSERT_SESSION = (
    "INSERT INTO sessions (id, status, created_at, started_at, num_workers, repo,"
    " plan_paths, plan_key, owner, options_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
INSERT_EXECUTION = (
    "INSERT INTO executions (session_id, seq, test_id, request_json, ref, sha, category,"
    " status, flaky, attempts, error, created_at, completed_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, 0, ?, ?, ?)"
)


def _session_row(session: Mapping[str, Any], now: str) -> tuple[object, ...]:
    """A new running session's row, from :func:`insert_session`'s keyword arguments."""
    return (
        session["session_id"],
        SessionStatus.RUNNING.value,
        now,
        now,
        session["num_workers"],
        session["repo"],
        json.dumps(list(session["plan_paths"])),
        session["plan_key"],
        session["owner"],
        session.get("options_json", "{}"),
    )


def _execution_row(session_id: str, seq: int, new: NewExecution, now: str) -> tuple[object, ...]:
    """A request's row: pending, or error (ended) when its ref did not resolve."""
    request = new.request
    status, ended = (PENDING, None) if new.error is None else (ERROR, now)
    return (
        session_id,
        seq,
        request.id,
        request.model_dump_json(),
        request.ref,
        new.sha,
        request.category,
        status,
        new.error,
        now,
        ended,
    )


def insert_session(
    db: sqlite3.Connection,
    session_id: str,
    *,
    now: str,
    idempotency_key: str | None = None,
    **session: Any,
) -> list[int]:
    """A new running session and its requests; the requests' execution ids in order.

    :param session: ``num_workers``, ``repo``, ``plan_paths``, ``plan_key``, ``owner``,
        ``executions`` (:class:`NewExecution`), and ``options_json`` (default ``{}``).
    :raises DuplicateSubmitError: if ``idempotency_key`` already made a session.
    """
    if idempotency_key is not None:
        found = db.execute(
            "SELECT session_id FROM submit_keys WHERE key = ?", (idempotency_key,)
        ).fetchone()
        if found is not None:
            raise DuplicateSubmitError(idempotency_key, found[0])
    (ids,) = insert_sessions(db, [{"session_id": session_id, **session}], now=now)
    if idempotency_key is not None:
        db.execute(
            "INSERT INTO submit_keys (key, session_id, created_at) VALUES (?, ?, ?)",
            (idempotency_key, session_id, now),
        )
    return ids


def insert_sessions(
    db: sqlite3.Connection, sessions: Sequence[Mapping[str, Any]], *, now: str
) -> list[list[int]]:
    """Several new sessions without idempotency keys (each given as :func:`insert_session`'s
    keyword arguments) and all their requests in four statements; each one's execution ids
    in order. A burst of 20 one-test submits spent more on 60 statements than on its fsync.

    :raises ValueError: if one has an idempotency key (:func:`insert_session` checks it).
    """
    if any(kw.get("idempotency_key") is not None for kw in sessions):
        raise ValueError("sessions with idempotency keys are inserted one by one")
    (last,) = db.execute("SELECT coalesce(max(id), 0) FROM executions").fetchone()
    db.executemany(INSERT_SESSION, (_session_row(kw, now) for kw in sessions))
    db.executemany(
        INSERT_EXECUTION,
        (
            _execution_row(kw["session_id"], seq, new, now)
            for kw in sessions
            for seq, new in enumerate(kw["executions"])
        ),
    )
    # the write lock is ours: every row above the last id is one of these
    ids = {
        (session_id, seq): row_id
        for row_id, session_id, seq in db.execute(
            "SELECT id, session_id, seq FROM executions WHERE id > ?", (last,)
        )
    }
    return [[ids[kw["session_id"], seq] for seq in range(len(kw["executions"]))] for kw in sessions]


def append_executions(
    db: sqlite3.Connection, session_id: str, executions: Sequence[NewExecution], *, now: str
) -> list[int]:
    """More requests for an open session, after those it has."""
    (seq,) = db.execute(
        "SELECT count(*) FROM executions WHERE session_id = ?", (session_id,)
    ).fetchone()
    return insert_executions(db, session_id, executions, start_seq=seq, now=now)


def insert_executions(
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
    db.executemany(
        INSERT_EXECUTION,
        (_execution_row(session_id, start_seq + n, new, now) for n, new in enumerate(executions)),
    )
    rows = db.execute(
        "SELECT id FROM executions WHERE session_id = ? AND seq >= ? ORDER BY seq",
        (session_id, start_seq),
    )
    return [row_id for (row_id,) in rows]


def finish_session(
    db: sqlite3.Connection, session_id: str, status: str, completed_at: str, report_json: str | None
) -> None:
    db.execute(
        "UPDATE sessions SET status = ?, completed_at = ?, report_json = ? WHERE id = ?",
        (status, completed_at, report_json, session_id),
    )


def set_notify_status(db: sqlite3.Connection, session_id: str, status: str) -> None:
    db.execute("UPDATE sessions SET notify_status = ? WHERE id = ?", (status, session_id))


def reopen_session(db: sqlite3.Connection, session_id: str, owner: str) -> None:
    db.execute(
        "UPDATE sessions SET status = ?, completed_at = NULL, owner = ? WHERE id = ?",
        (SessionStatus.RUNNING.value, owner, session_id),
    )


def start_attempt(
    db: sqlite3.Connection,
    execution_id: int,
    session_id: str,
    *,
    number: int,
    worker: int,
    worktree: str,
    log_path: str,
    now: str,
    host: str = "",
) -> int:
    """A running attempt, and its execution running with it; the attempt's id."""
    cursor = db.execute(
        "INSERT INTO attempts (execution_id, session_id, number, worker, worktree, host,"
        " log_path, started_at, status, output_tail, leaked)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, '', 0)",
        (execution_id, session_id, number, worker, worktree, host, log_path, now, RUNNING),
    )
    db.execute(
        "UPDATE executions SET status = ?, attempts = ?,"
        " started_at = COALESCE(started_at, ?) WHERE id = ?",
        (RUNNING, number, now, execution_id),
    )
    assert cursor.lastrowid is not None
    return cursor.lastrowid


def set_attempt_process(db: sqlite3.Connection, attempt_id: int, pid: int, pgid: int) -> None:
    db.execute("UPDATE attempts SET pid = ?, pgid = ? WHERE id = ?", (pid, pgid, attempt_id))


def end_attempt(
    db: sqlite3.Connection, end: AttemptEnd, outcome: ExecutionEnd | None, *, now: str
) -> None:
    """An attempt's end and its execution's new state: ``outcome``, or pending for a retry."""
    counts = end.junit.counts if end.junit else None
    cases = (counts.passed, counts.failed, counts.errors, counts.skipped) if counts else (None,) * 4
    db.execute(
        "UPDATE attempts SET status = ?, exit_code = ?, completed_at = ?,"
        " duration_seconds = ?, output_tail = ?, error = ?, cases_passed = ?,"
        " cases_failed = ?, cases_errors = ?, cases_skipped = ?, leaked = ?,"
        " junit_error = ?, setup_seconds = ?, sharded = ?, pid = COALESCE(?, pid),"
        " pgid = COALESCE(?, pgid) WHERE id = ?",
        (
            end.status.value,
            end.exit_code,
            now,
            end.duration_seconds,
            end.output_tail,
            end.error,
            *cases,
            end.leaked,
            end.junit.error if end.junit else None,
            end.setup_seconds,
            end.sharded,
            end.pid,
            end.pgid,
            end.attempt_id,
        ),
    )
    if end.junit and end.junit.cases:
        insert_cases(db, end.attempt_id, end.junit.cases)
    if outcome is None:
        set_execution_pending(db, end.execution_id)
    else:
        finish_execution(db, end.execution_id, outcome, now=now)


def insert_cases(db: sqlite3.Connection, attempt_id: int, cases: Sequence[Case]) -> None:
    """An attempt's JUnit cases, in one prepared statement (100,000 take about 0.2 s)."""
    db.executemany(
        "INSERT INTO cases (attempt_id, classname, name, file, status, time, message)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        ((attempt_id, c.classname, c.name, c.file, c.status, c.time, c.message) for c in cases),
    )


def finish_execution(
    db: sqlite3.Connection, execution_id: int, outcome: ExecutionEnd, *, now: str
) -> None:
    db.execute(
        "UPDATE executions SET status = ?, flaky = ?, error = ?, completed_at = ?,"
        " duration_seconds = ? WHERE id = ?",
        (
            outcome.status.value,
            outcome.flaky,
            outcome.error,
            now,
            outcome.duration_seconds,
            execution_id,
        ),
    )


def set_execution_pending(db: sqlite3.Connection, execution_id: int) -> None:
    db.execute("UPDATE executions SET status = ? WHERE id = ?", (PENDING, execution_id))


def close_unfinished(
    db: sqlite3.Connection,
    session_id: str,
    status: str,
    *,
    error: str | None,
    executions: bool,
    now: str,
) -> int:
    """A session's running attempts, and unless told not to its unfinished executions,
    end with ``status``; how many executions did."""
    db.execute(
        "UPDATE attempts SET status = ?, completed_at = ?, error = ?"
        " WHERE session_id = ? AND status = ?",
        (status, now, error, session_id, RUNNING),
    )
    if not executions:
        return 0
    cursor = db.execute(
        "UPDATE executions SET status = ?, completed_at = ?, error = ?"
        " WHERE session_id = ? AND status IN (?, ?)",
        (status, now, error, session_id, PENDING, RUNNING),
    )
    return cursor.rowcount
