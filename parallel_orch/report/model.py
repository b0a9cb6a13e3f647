"""ParallelTestReport: the frozen, JSON-serialisable summary of a session (DESIGN §6)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


class AttemptResult(_Frozen):
    number: int
    status: str
    worker: int
    worktree: str
    exit_code: int | None
    started_at: datetime
    completed_at: datetime | None
    duration_seconds: float | None
    log_path: str
    error: str | None = None
    leaked: int = 0  # processes it left running outside its group, killed after it


class CaseCounts(_Frozen):
    passed: int = 0
    failed: int = 0
    errors: int = 0
    skipped: int = 0


class TestResult(_Frozen):
    """One execution: its final status and every attempt."""

    __test__ = False

    test_id: str
    status: str
    flaky: bool
    category: str
    ref: str
    sha: str | None
    duration_seconds: float | None  # all attempts together
    error: str | None = None
    cases: CaseCounts | None = None  # of the final attempt, when its JUnit file was parsed
    attempts: tuple[AttemptResult, ...] = ()
    leaky: bool = False  # an attempt left processes running after it ended (killed)


class StatusCounts(_Frozen):
    total: int = 0
    passed: int = 0
    failed: int = 0
    timed_out: int = 0
    errored: int = 0
    skipped: int = 0
    cancelled: int = 0
    interrupted: int = 0
    flaky: int = 0
    success_rate: float = 0.0


class DurationStats(_Frozen):
    sum: float = 0.0
    mean: float = 0.0
    p50: float = 0.0
    p95: float = 0.0
    p99: float = 0.0
    max: float = 0.0


class SlowTest(_Frozen):
    test_id: str
    duration_seconds: float


class ParallelTestReport(_Frozen):
    """The immutable summary of a session, built from the store."""

    session_id: str
    status: str
    started_at: datetime | None
    completed_at: datetime | None
    duration_seconds: float
    total_tests: int
    tests_passed: int
    tests_failed: int
    tests_timed_out: int
    tests_errored: int
    tests_skipped: int
    tests_cancelled: int
    tests_interrupted: int = 0
    tests_flaky: int
    tests_leaky: int = 0
    success_rate: float
    num_workers: int
    categories: dict[str, StatusCounts] = Field(default_factory=dict)
    duration_stats: DurationStats = Field(default_factory=DurationStats)
    speedup: float = 0.0
    worker_utilisation: float = 0.0
    slowest_tests: tuple[SlowTest, ...] = ()
    completed_tests: tuple[TestResult, ...] = ()
    failed_tests: tuple[str, ...] = ()
    cases: CaseCounts = Field(default_factory=CaseCounts)
    report_hash: str
