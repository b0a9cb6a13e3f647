"""Every write the store makes, as a function of a sqlite3 connection in a transaction.

Prepared statements, no ORM: the :class:`~parallel_orch.store.writer.Writer`
runs each in its own transaction, in turn with the others.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence

from parallel_orch.exceptions import DuplicateSubmitError
from parallel_orch.junit import Case
from parallel_orch.models import ExecutionStatus, SessionStatus
from parallel_orch.store.records import AttemptEnd, ExecutionEnd, NewExecution

PENDING = ExecutionStatus.PENDING.value
RUNNING = ExecutionStatus.RUNNING.value


def insert_session(
    db: sqlite3.Connection,
    session_id: str,
    *,
    num_workers: int,
    repo: str,
    plan_paths: Sequence[str],
    plan_key: str,
    owner: str,
    executions: Sequence[NewExecution],
    now: str,
    idempotency_key: str | None = None,
    options_json: str = "{}",
) -> list[int]:
    """A new running session and its requests; the requests' execution ids in order.

    :raises DuplicateSubmitError: if ``idempotency_key`` already made a session.
    """
    if idempotency_key is not None:
        found = db.execute(
            "SELECT session_id FROM submit_keys WHERE key = ?", (idempotency_key,)
        ).fetchone()
        if found is not None:
            raise DuplicateSubmitError(idempotency_key, found[0])
    db.execute(
        "INSERT INTO sessions (id, status, created_at, started_at, num_workers, repo,"
        " plan_paths, plan_key, owner, options_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
            options_json,
        ),
    )
    if idempotency_key is not None:
        db.execute(
            "INSERT INTO submit_keys (key, session_id, created_at) VALUES (?, ?, ?)",
            (idempotency_key, session_id, now),
        )
    return insert_executions(db, session_id, executions, start_seq=0, now=now)


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
    error = ExecutionStatus.ERROR.value
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
                PENDING if new.error is None else error,
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
