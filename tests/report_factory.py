"""Small hand-made reports for tests of what reads a report: gates, comparison.

Counts, categories and failed tests are derived from the results the way the
report builder derives them, so a synthetic report is one the store could give.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

from parallel_orch.models import FAILURE_STATUSES, ExecutionStatus
from parallel_orch.report.build import case_totals, count_statuses
from parallel_orch.report.model import (
    AttemptResult,
    CaseResult,
    CommitCoverage,
    ParallelTestReport,
    TestResult,
)

START = datetime(2026, 1, 1, tzinfo=UTC)


def attempt(
    number: int, status: str, seconds: float = 1.0, cases: tuple[CaseResult, ...] = ()
) -> AttemptResult:
    """One attempt, ``seconds`` long, starting :data:`START`."""
    return AttemptResult(
        number=number,
        status=status,
        worker=0,
        worktree="/wt/0",
        exit_code=0 if status == "passed" else 1,
        started_at=START,
        completed_at=START + timedelta(seconds=seconds),
        duration_seconds=seconds,
        log_path=f"/logs/{number}.log",
        cases=cases,
    )


def case(name: str, status: str = "passed", time: float = 0.1) -> CaseResult:
    """A JUnit case of class ``tests.m``."""
    return CaseResult(classname="tests.m", name=name, status=status, time=time)


def result(
    test_id: str,
    status: str = "passed",
    *,
    category: str = "unit",
    flaky: bool = False,
    quarantine: str | None = None,
    seconds: float = 1.0,
    attempts: tuple[AttemptResult, ...] | None = None,
) -> TestResult:
    """A test with one attempt of its own status (a failed one first when ``flaky``)."""
    if attempts is None:
        final = attempt(2 if flaky else 1, status, seconds)
        attempts = (attempt(1, "failed", seconds), final) if flaky else (final,)
    return TestResult(
        test_id=test_id,
        status=status,
        flaky=flaky,
        category=category,
        ref="HEAD",
        sha="a" * 40,
        duration_seconds=sum(a.duration_seconds or 0.0 for a in attempts),
        attempts=attempts,
        quarantine=quarantine,
    )


def make_report(
    *results: TestResult,
    session_id: str = "now",
    wall: float = 10.0,
    coverage: tuple[CommitCoverage, ...] = (),
    **overrides: Any,
) -> ParallelTestReport:
    """A session's report of ``results``, ``wall`` seconds long; its status from the results."""
    totals = count_statuses(list(results))
    per_category: dict[str, list[TestResult]] = defaultdict(list)
    for result in results:
        per_category[result.category].append(result)
    values: dict[str, Any] = {
        "session_id": session_id,
        "status": _status(results),
        "started_at": START,
        "completed_at": START + timedelta(seconds=wall),
        "duration_seconds": wall,
        "total_tests": totals.total,
        "tests_passed": totals.passed,
        "tests_failed": totals.failed,
        "tests_timed_out": totals.timed_out,
        "tests_errored": totals.errored,
        "tests_skipped": totals.skipped,
        "tests_cancelled": totals.cancelled,
        "tests_interrupted": totals.interrupted,
        "tests_flaky": totals.flaky,
        "success_rate": totals.success_rate,
        "num_workers": 2,
        "categories": {name: count_statuses(rs) for name, rs in sorted(per_category.items())},
        "completed_tests": results,
        "failed_tests": tuple(
            r.test_id for r in results if ExecutionStatus(r.status) in FAILURE_STATUSES
        ),
        "cases": case_totals(results),
        "tests_quarantined": sum(bool(r.quarantine) for r in results),
        "quarantined_tests": tuple(r.test_id for r in results if r.quarantine),
        "coverage": coverage,
        "report_hash": "0" * 64,
    }
    values.update(overrides)
    return ParallelTestReport(**values)


def _status(results: tuple[TestResult, ...]) -> str:
    passed = sum(r.status == "passed" for r in results)
    if not results:
        return "no_tests"
    if passed == len(results):
        return "complete"
    return "partial_success" if passed else "failed"
