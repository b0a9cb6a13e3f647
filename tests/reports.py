"""Synthetic reports of any size, for renderers' size and speed checks (tests and bench)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from parallel_orch.report.build import case_totals, count_statuses
from parallel_orch.report.model import (
    AttemptResult,
    CaseCounts,
    CaseResult,
    ParallelTestReport,
    TestResult,
)

START = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
#: A log tail as long as the default ``log_tail_bytes`` (16 KiB).
LONG_TAIL = ("E   AssertionError: assert 2 == 3 <and a long line of output>\n" * 300)[:16_384]


def _cases(test: int, count: int, *, failing: bool) -> tuple[CaseResult, ...]:
    return tuple(
        CaseResult(
            classname=f"tests.test_mod{test}.TestThing",
            name=f"test_case_{n}",
            status="failed" if failing and n % 97 == 1 else "passed",
            time=0.01,
            message="assert 2 == 3" if failing and n % 97 == 1 else None,
        )
        for n in range(count)
    )


def synthetic_report(tests: int, *, cases: int = 0, workers: int = 8) -> ParallelTestReport:
    """A session of ``tests`` tests (``cases`` JUnit cases each) packed onto ``workers``
    workers: 2 % fail twice with a 16 KiB log tail, 1 % are flaky, every worker's first
    attempt sets its worktree up."""
    rng = random.Random(tests * 7 + cases)
    clock = [0.0] * workers
    results = []
    for index in range(tests):
        failing, flaky = index % 50 == 7, index % 100 == 3
        statuses = ["failed", "failed"] if failing else ["failed", "passed"]
        if not (failing or flaky):
            statuses = ["passed"]
        attempts = []
        for number, status in enumerate(statuses, 1):
            worker = min(range(workers), key=clock.__getitem__)
            setup = 4.0 if clock[worker] == 0 else None
            duration = rng.lognormvariate(0, 1.2)
            started = START + timedelta(seconds=clock[worker])
            clock[worker] += (setup or 0.0) + duration
            final = number == len(statuses)
            attempts.append(
                AttemptResult(
                    number=number,
                    status=status,
                    worker=worker,
                    worktree=f"wt-{worker}",
                    exit_code=0 if status == "passed" else 1,
                    started_at=started,
                    completed_at=started + timedelta(seconds=(setup or 0.0) + duration),
                    duration_seconds=round(duration, 6),
                    log_path=f"/state/logs/session/suite/t{index}.{number}.log",
                    setup_seconds=setup,
                    output_tail=LONG_TAIL if final else "",
                    cases=_cases(index, cases, failing=status != "passed")
                    if final or status != "passed"
                    else (),
                )
            )
        final_cases = attempts[-1].cases
        results.append(
            TestResult(
                test_id=f"suite/part{index % 40}::test_{index:05d}",
                status=statuses[-1],
                flaky=flaky,
                category=("unit", "integration", "e2e")[index % 3],
                ref="main",
                sha="a" * 40,
                duration_seconds=round(sum(a.duration_seconds or 0.0 for a in attempts), 6),
                cases=CaseCounts(
                    passed=sum(c.status == "passed" for c in final_cases),
                    failed=sum(c.status == "failed" for c in final_cases),
                )
                if cases
                else None,
                attempts=tuple(attempts),
                first_error="AssertionError: assert 2 == 3" if failing else None,
            )
        )
    totals = count_statuses(results)
    wall = max(clock)
    return ParallelTestReport(
        session_id="synthetic",
        status="partial_success",
        started_at=START,
        completed_at=START + timedelta(seconds=wall),
        duration_seconds=round(wall, 3),
        total_tests=totals.total,
        tests_passed=totals.passed,
        tests_failed=totals.failed,
        tests_timed_out=0,
        tests_errored=0,
        tests_skipped=0,
        tests_cancelled=0,
        tests_flaky=totals.flaky,
        success_rate=totals.success_rate,
        num_workers=workers,
        categories={
            c: count_statuses([r for r in results if r.category == c])
            for c in ("e2e", "integration", "unit")
        },
        completed_tests=tuple(results),
        failed_tests=tuple(r.test_id for r in results if r.status == "failed"),
        cases=case_totals(results),
        report_hash="0" * 64,
    )
