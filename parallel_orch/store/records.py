"""Plain records at the store's boundary: what callers pass in and get back.

Frozen dataclasses that hold values, not a database session: they can be
kept, compared and passed between tasks. The tables themselves never leave
the store package.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # plain values here: reading records needs neither pydantic nor lxml
    from parallel_orch.junit import JUnitResult
    from parallel_orch.models import ExecutionStatus, TestRequest


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """A session as recorded."""

    id: str
    status: str
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    num_workers: int
    repo: str
    plan_paths: tuple[str, ...]
    plan_key: str
    owner: str  # host:pid:starttime of the process running it
    report_json: str | None
    options_json: str = "{}"  # how its report is judged and sent: gates, comparison, webhook
    notify_status: str | None = None  # how the webhook's delivery of its report went


@dataclass(frozen=True, slots=True)
class ExecutionRecord:
    """A request's record across its attempts."""

    id: int
    session_id: str
    seq: int  # submission order within the session
    test_id: str
    request_json: str
    ref: str
    sha: str | None
    category: str
    status: str
    flaky: bool
    attempts: int
    error: str | None
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    duration_seconds: float | None  # of the final attempt

    @property
    def request(self) -> TestRequest:
        from parallel_orch.models import STORED, TestRequest

        return TestRequest.model_validate_json(self.request_json, context={STORED: True})


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """One attempt as recorded."""

    id: int
    execution_id: int
    session_id: str
    number: int
    worker: int
    worktree: str
    pid: int | None
    pgid: int | None
    started_at: datetime
    completed_at: datetime | None
    duration_seconds: float | None
    exit_code: int | None
    status: str
    log_path: str
    output_tail: str
    error: str | None
    cases_passed: int | None
    cases_failed: int | None
    cases_errors: int | None
    cases_skipped: int | None
    leaked: int
    junit_error: str | None = None  # why its JUnit file could not be read
    setup_seconds: float | None = None  # the worktree's setup, before (not in) its duration
    sharded: bool | None = None  # a shard whose runner did (True) or did not shard
    host: str = ""  # the machine: a Dask worker's address on a fleet, "" here


@dataclass(frozen=True, slots=True)
class OutcomeCounts:
    """How one test id went at one commit, summed over a window of sessions."""

    test_id: str
    sha: str | None
    passed: int
    failed: int  # failed or timed out
    flagged: int  # passed after failing: flaky
    last_failed: tuple[datetime, str] | None  # when and in which session, the latest
    last_flagged: tuple[datetime, str] | None


@dataclass(frozen=True, slots=True)
class CaseRecord:
    """One case of an attempt's JUnit file."""

    attempt_id: int
    classname: str
    name: str
    file: str | None
    status: str
    time: float | None
    message: str | None


@dataclass(frozen=True, slots=True)
class SessionSnapshot:
    """A session with its executions and attempts, read at one moment."""

    session: SessionRecord
    executions: tuple[ExecutionRecord, ...]
    attempts: tuple[AttemptRecord, ...]
    cases: tuple[CaseRecord, ...] = ()  # of every attempt whose JUnit file was read


@dataclass(frozen=True, slots=True)
class ExecutionProgress:
    """Where one execution stands, as much as an ETA needs (a light read)."""

    test_id: str
    status: str
    duration_seconds: float | None  # of its final attempt, once final
    running_since: datetime | None  # when its running attempt started, if one runs


@dataclass(frozen=True, slots=True)
class NewExecution:
    """A request about to be committed as pending."""

    request: TestRequest
    sha: str | None
    error: str | None = None  # set when the ref did not resolve: recorded as error at once


@dataclass(frozen=True, slots=True)
class AttemptEnd:
    """How an attempt ended, as recorded."""

    attempt_id: int
    execution_id: int
    status: ExecutionStatus
    exit_code: int | None
    duration_seconds: float
    output_tail: str = ""
    error: str | None = None
    junit: JUnitResult | None = None  # its JUnit file, when the request asked for it
    leaked: int = 0
    setup_seconds: float | None = None
    sharded: bool | None = None
    pid: int | None = None  # its last process, when not recorded while it ran
    pgid: int | None = None


@dataclass(frozen=True, slots=True)
class ExecutionEnd:
    """An execution's final state."""

    status: ExecutionStatus
    flaky: bool = False
    error: str | None = None
    duration_seconds: float | None = None
