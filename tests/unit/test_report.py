"""The report: statistics, the stable hash, and its renderers."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from parallel_orch import ParallelTestReport
from parallel_orch.report import TestResult
from parallel_orch.report.build import count_statuses, percentile, report_hash
from parallel_orch.report.renderers import json as json_renderer
from parallel_orch.report.renderers import text as text_renderer
from parallel_orch.store import ExecutionRecord


def execution(
    test_id: str, status: str, *, duration: float, flaky: bool = False
) -> ExecutionRecord:
    now = datetime.now(UTC)
    return ExecutionRecord(
        id=1,
        session_id="s",
        seq=0,
        test_id=test_id,
        request_json=json.dumps({"id": test_id, "command": "true"}),
        ref="HEAD",
        sha="a" * 40,
        category="unit",
        status=status,
        flaky=flaky,
        attempts=1,
        error=None,
        created_at=now,
        started_at=now,
        completed_at=now + timedelta(seconds=duration),
        duration_seconds=duration,
    )


def result(test_id: str, status: str, *, category: str = "unit", flaky: bool = False) -> TestResult:
    return TestResult(
        test_id=test_id,
        status=status,
        flaky=flaky,
        category=category,
        ref="HEAD",
        sha=None,
        duration_seconds=1.0,
    )


@pytest.mark.parametrize(
    ("q", "expected"),
    [(0, 1.0), (50, 5.0), (95, 10.0), (99, 10.0), (100, 10.0), (10, 1.0), (11, 2.0)],
)
def test_percentile_is_nearest_rank(q: float, expected: float) -> None:
    """Percentiles use the nearest-rank method over the sorted durations."""
    assert percentile([float(n) for n in range(1, 11)], q) == expected


def test_percentile_of_nothing_is_zero() -> None:
    """An empty session has zero durations, not an error."""
    assert percentile([], 95) == 0.0


def test_status_counts_and_success_rate() -> None:
    """Counts per status, flaky as a flag on passed tests, success rate over all tests."""
    counts = count_statuses(
        [
            result("a", "passed"),
            result("b", "passed", flaky=True),
            result("c", "failed"),
            result("d", "timed_out"),
            result("e", "error"),
            result("f", "cancelled"),
            result("g", "skipped"),
            result("h", "interrupted"),
        ]
    )
    assert (counts.total, counts.passed, counts.failed, counts.timed_out) == (8, 2, 1, 1)
    assert (counts.errored, counts.cancelled, counts.skipped, counts.interrupted) == (1, 1, 1, 1)
    assert counts.flaky == 1
    assert counts.success_rate == 0.25
    assert count_statuses([]).success_rate == 0.0


def test_report_hash_ignores_timings_but_not_verdicts() -> None:
    """The hash covers requests, SHAs, statuses and flakiness, not how long anything took."""
    fast = [execution("a", "passed", duration=0.1), execution("b", "failed", duration=0.2)]
    slow = [execution("b", "failed", duration=9.0), execution("a", "passed", duration=7.0)]
    assert report_hash("partial_success", fast) == report_hash("partial_success", slow)
    flipped = [execution("a", "passed", duration=0.1), execution("b", "passed", duration=0.2)]
    assert report_hash("complete", flipped) != report_hash("partial_success", fast)
    flaky = [execution("a", "passed", duration=0.1, flaky=True), fast[1]]
    assert report_hash("partial_success", flaky) != report_hash("partial_success", fast)


def sample_report() -> ParallelTestReport:
    tests = (
        result("unit::ok", "passed"),
        result("unit::flaky", "passed", flaky=True),
        result("lint::ruff", "failed", category="lint"),
    )
    return ParallelTestReport(
        session_id="abc123",
        status="partial_success",
        started_at=datetime(2026, 1, 1, tzinfo=UTC),
        completed_at=datetime(2026, 1, 1, 0, 0, 3, tzinfo=UTC),
        duration_seconds=3.0,
        total_tests=3,
        tests_passed=2,
        tests_failed=1,
        tests_timed_out=0,
        tests_errored=0,
        tests_skipped=0,
        tests_cancelled=0,
        tests_flaky=1,
        success_rate=0.6667,
        num_workers=2,
        categories={
            "unit": count_statuses([t for t in tests if t.category == "unit"]),
            "lint": count_statuses([t for t in tests if t.category == "lint"]),
        },
        completed_tests=tests,
        failed_tests=("lint::ruff",),
        report_hash="0" * 64,
    )


def test_json_renderer_round_trips() -> None:
    """The JSON output parses back into an equal report."""
    report = sample_report()
    rendered = json_renderer.render(report)
    assert rendered.endswith("\n")
    assert ParallelTestReport.model_validate_json(rendered) == report


def test_text_renderer_shows_what_needs_a_look_and_the_totals() -> None:
    """The terminal report lists failed and flaky tests, categories and the summary line."""
    rendered = text_renderer.render(sample_report())
    assert "Failed (1)\n  FAILED      lint::ruff" in rendered
    assert "Flaky (1): passed after failing\n  PASSED      unit::flaky" in rendered
    assert "unit::ok" not in rendered  # clean tests are not listed
    assert "By category" in rendered
    assert "session abc123: partial_success" in rendered
    assert "2 of 3 tests passed; 1 failed; 1 flaky" in rendered


def test_report_is_frozen() -> None:
    """A report cannot be modified after it is built."""
    report = sample_report()
    with pytest.raises(ValueError, match="frozen"):
        report.status = "complete"
