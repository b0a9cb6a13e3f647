"""Markdown report: rendered in under 2 s and under 1 MiB, whatever the session's size.

Two sessions from the issue, each compared with a baseline whose outcomes differ
(so every list of the comparison is long, at test and at case level): 20,000
one-case tests, and 100 tests with 100,000 parsed cases in all; 5 % of tests
(and of cases) failing with a long message, a few flaky, and a third case where
every one of 20,000 tests fails. Times ``render`` alone, best of three; the
reports are built first. Quick: a quarter of the sizes.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime

from bench.common import Figure, bench_main, note
from parallel_orch.report.compare import compare
from parallel_orch.report.model import (
    AttemptResult,
    CaseResult,
    ParallelTestReport,
    TestResult,
)
from parallel_orch.report.renderers import markdown

TARGET_SECONDS = 2.0
NOW = datetime(2026, 1, 1, tzinfo=UTC)
MESSAGE = "AssertionError: expected <200> | got <500> " + "context " * 60


def _test(index: int, cases: int, failing: bool, seed: int) -> TestResult:
    """One test with ``cases`` cases; every twentieth case fails when the test does."""
    status = "failed" if failing else "passed"
    results = tuple(
        CaseResult(
            classname=f"pkg.mod{index}.TestClass",
            name=f"test_case_{n}",
            status="failed" if failing and (n + seed) % 20 == 0 else "passed",
            time=0.01 * (1 + (n + seed) % 7),
            message=MESSAGE if failing and (n + seed) % 20 == 0 else None,
        )
        for n in range(cases)
    )
    attempt = AttemptResult(
        number=1,
        status=status,
        worker=index % 8,
        worktree=f"/repo.worktrees/wt-{index % 8}",
        exit_code=1 if failing else 0,
        started_at=NOW,
        completed_at=NOW,
        duration_seconds=1.0 + (index + seed) % 13,
        log_path=f"/repo/.parallel-orch/logs/s{seed}/suite_test_{index}.1.log",
        cases=results,
    )
    return TestResult(
        test_id=f"suite/part{index // 500}::test_{index}",
        status=status,
        flaky=not failing and (index + seed) % 97 == 0,
        category=("unit", "integration", "e2e")[index % 3],
        ref="HEAD",
        sha="a" * 40,
        duration_seconds=attempt.duration_seconds,
        first_error=MESSAGE if failing else None,
        attempts=(attempt,),
    )


def session(tests: int, cases: int, *, fail_every: int, seed: int) -> ParallelTestReport:
    """``tests`` tests of ``cases`` cases; one in ``fail_every`` fails (1: all)."""
    results = [_test(i, cases, (i + seed) % fail_every == 0, seed) for i in range(tests)]
    failed = sum(r.status == "failed" for r in results)
    return ParallelTestReport(
        session_id=f"session-{seed}",
        status="partial_success" if failed < tests else "failed",
        started_at=NOW,
        completed_at=NOW,
        duration_seconds=600.0,
        total_tests=tests,
        tests_passed=tests - failed,
        tests_failed=failed,
        tests_timed_out=0,
        tests_errored=0,
        tests_skipped=0,
        tests_cancelled=0,
        tests_flaky=sum(r.flaky for r in results),
        success_rate=round((tests - failed) / tests, 4),
        num_workers=8,
        completed_tests=tuple(results),
        failed_tests=tuple(r.test_id for r in results if r.status == "failed"),
        report_hash="bench",
    )


def compared(tests: int, cases: int, fail_every: int) -> ParallelTestReport:
    now = session(tests, cases, fail_every=fail_every, seed=1)
    before = session(tests, cases, fail_every=fail_every, seed=2)
    return now.model_copy(update={"comparison": compare(now, before)})


def _best_render(report: ParallelTestReport) -> tuple[float, int]:
    times = []
    for _ in range(3):
        started = time.perf_counter()
        text = markdown.render(report)
        times.append(time.perf_counter() - started)
    return min(times), len(text.encode())


def run(quick: bool) -> list[Figure]:
    scale = 4 if quick else 1
    shapes: Sequence[tuple[str, int, int, int]] = (
        (f"{20_000 // scale} one-case tests", 20_000 // scale, 1, 20),
        (f"100 tests, {100_000 // scale} cases", 100, 1000 // scale, 20),
        (f"{20_000 // scale} tests, all failing", 20_000 // scale, 1, 1),
    )
    figures = []
    for name, tests, cases, fail_every in shapes:
        report = compared(tests, cases, fail_every)
        seconds, size = _best_render(report)
        note(f"{name}: rendered in {seconds * 1000:.0f} ms, {size} bytes")
        figures.append(
            Figure(
                f"markdown, {name}",
                seconds,
                unit="s",
                target=f"< {TARGET_SECONDS:g} s",
                met=seconds < TARGET_SECONDS,
            )
        )
        figures.append(
            Figure(
                f"markdown size, {name}",
                size / markdown.MAX_BYTES,
                target="<= 1 (of 1 MiB)",
                met=size <= markdown.MAX_BYTES,
            )
        )
    return figures


def main(argv: Sequence[str] | None = None) -> None:
    bench_main("markdown_report: rendered in under 2 s and under 1 MiB", run, argv)


if __name__ == "__main__":
    main()
