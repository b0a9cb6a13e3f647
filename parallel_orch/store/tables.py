"""The SQLModel tables: sessions, executions, attempts (DESIGN §2 names them)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, ForeignKey, Index, Integer, String
from sqlmodel import Field, SQLModel

from parallel_orch.models import ExecutionStatus, SessionStatus
from parallel_orch.store.records import utcnow


class ParallelTestSession(SQLModel, table=True):
    __tablename__ = "sessions"
    # a session's previous one, the newest of its plan set: one seek (migration 0006)
    __table_args__ = (Index("ix_sessions_plan_key_created_at", "plan_key", "created_at"),)

    id: str = Field(primary_key=True)
    status: str = Field(default=SessionStatus.RUNNING.value, index=True)
    created_at: datetime = Field(default_factory=utcnow, index=True)
    started_at: datetime | None = None
    completed_at: datetime | None = None
    num_workers: int = 1
    repo: str = ""
    plan_paths: str = "[]"  # JSON list
    plan_key: str = ""  # groups sessions of the same plan set
    owner: str = ""  # host:pid:starttime of the process running it
    report_json: str | None = None
    options_json: str = Field(default="{}", sa_column_kwargs={"server_default": "{}"})
    notify_status: str | None = None  # how the webhook's delivery of the report went


class ParallelTestExecution(SQLModel, table=True):
    __tablename__ = "executions"
    # a test's last few executions: one seek (migration 0006)
    __table_args__ = (Index("ix_executions_test_id_created_at", "test_id", "created_at"),)

    id: int | None = Field(default=None, primary_key=True)
    session_id: str = Field(
        sa_column=Column(String, ForeignKey("sessions.id", ondelete="CASCADE"), index=True)
    )
    seq: int = 0  # submission order within the session
    test_id: str
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
    host: str = ""  # the machine: a Dask worker's address on a fleet, "" here
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
    leaked: int = 0  # processes that outlived the attempt outside its group: killed
    junit_error: str | None = None  # why its JUnit file could not be read
    setup_seconds: float | None = None  # the worktree's setup, before (not in) its duration
    sharded: bool | None = None  # a shard whose runner did (True) or did not shard


class ParallelTestCase(SQLModel, table=True):
    """One case of an attempt's JUnit file."""

    __tablename__ = "cases"

    id: int | None = Field(default=None, primary_key=True)
    attempt_id: int = Field(
        sa_column=Column(
            Integer, ForeignKey("attempts.id", ondelete="CASCADE"), index=True, nullable=False
        )
    )
    classname: str
    name: str
    file: str | None = None
    status: str
    time: float | None = None
    message: str | None = None


class ParallelTestSubmitKey(SQLModel, table=True):
    """A client's idempotency key for a submit, and the session it created."""

    __tablename__ = "submit_keys"

    key: str = Field(primary_key=True)
    session_id: str = Field(
        sa_column=Column(String, ForeignKey("sessions.id", ondelete="CASCADE"), index=True)
    )
    created_at: datetime = Field(default_factory=utcnow)
