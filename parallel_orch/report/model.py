"""ParallelTestReport: the frozen, JSON-serialisable summary of a session (DESIGN §6)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from parallel_orch.report import formats


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


class CaseResult(_Frozen):
    """One case of a JUnit file."""

    classname: str
    name: str
    status: str  # passed, failed, error, skipped
    time: float | None = None
    file: str | None = None
    message: str | None = None  # the first line of its failure, error or skip reason


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
    setup_seconds: float | None = None  # the worktree's setup, before (not in) its duration
    shard: str | None = None  # "2/4": the shard of its test this attempt ran
    sharded: bool | None = None  # a shard's runner did (True) or did not (False) shard
    junit_error: str | None = None  # why its JUnit file could not be read
    host: str = ""  # the machine it ran on: a Dask worker's address on a fleet, "" here
    output_tail: str = ""  # a failed test's final attempt: its log's last bytes (log_tail_bytes)
    # Its JUnit cases: all of them for the final attempt, those that did not pass for others.
    cases: tuple[CaseResult, ...] = ()


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
    quarantine: str | None = None  # why it is quarantined: reported, but gates nothing
    first_error: str | None = None  # what went wrong, in one line: JUnit message or log
    shards: int = 0  # the shards it ran as (their attempts are its attempts); 0: not sharded
    notes: tuple[str, ...] = ()  # things a reader should know, e.g. a runner that ignored shards


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


class SlowerTest(_Frozen):
    test_id: str
    before_seconds: float
    after_seconds: float


class Changes(_Frozen):
    """How one session's outcomes differ from another's, by test or by case id."""

    new_failures: tuple[str, ...] = ()
    fixed: tuple[str, ...] = ()
    still_failing: tuple[str, ...] = ()
    newly_flaky: tuple[str, ...] = ()
    slower: tuple[SlowerTest, ...] = ()  # by more than 20 % and more than 1 s
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()


class Comparison(_Frozen):
    """This session against a baseline: the previous one of its plan set, or one named."""

    baseline_session_id: str
    tests: Changes = Field(default_factory=Changes)
    cases: Changes | None = None  # where both sides parsed JUnit cases


class GateResult(_Frozen):
    """One gate's verdict."""

    name: str  # min_pass_rate, min_pass_rate[unit], max_flaky, max_duration, ...
    target: float | bool
    actual: float | bool | None
    passed: bool
    reason: str  # one line, whichever way it went


class FileCoverage(_Frozen):
    path: str  # relative to the repo
    statements: int
    missing: int
    percent: float


class CommitCoverage(_Frozen):
    """Coverage combined over every attempt at one commit, paths as in the repo."""

    sha: str
    percent: float
    statements: int
    missing: int
    files: tuple[FileCoverage, ...] = ()
    data_files: int = 0  # the attempts' data files it combines
    warnings: tuple[str, ...] = ()  # coverage.py's, e.g. a data file it could not read
    error: str | None = None  # why it could not be combined


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
    tests_quarantined: int = 0
    quarantined_tests: tuple[str, ...] = ()
    comparison: Comparison | None = None
    gates: tuple[GateResult, ...] = ()
    gates_passed: bool = True  # every gate held (quarantined tests gate nothing)
    coverage: tuple[CommitCoverage, ...] = ()
    report_hash: str

    def render(self, fmt: str) -> str:
        """This report as ``json``, ``junit``, ``markdown``, ``html``, ``csv``, ``csv-cases``,
        ``trace`` or ``text``.

        :raises ValueError: for an unknown format; the message lists them.
        """
        return formats.renderer(fmt)(self)
