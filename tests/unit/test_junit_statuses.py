"""JUnit XML for what a short real session does not reach: interrupted, skipped, quarantined
cases, and text that XML 1.0 forbids."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from typing import Any

from parallel_orch import ParallelTestReport
from parallel_orch.report.model import AttemptResult, CaseCounts, CaseResult, TestResult

STARTED = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def attempt(number: int, status: str, *, tail: str = "") -> AttemptResult:
    start = STARTED + timedelta(seconds=10 * number)
    return AttemptResult(
        number=number,
        status=status,
        worker=0,
        worktree="/wt/0",
        exit_code=None if status == "interrupted" else 1,
        started_at=start,
        completed_at=start + timedelta(seconds=1),
        duration_seconds=1.0,
        log_path=f"/logs/t.{number}.log",
        output_tail=tail,
    )


def execution(test_id: str, status: str, *attempts: AttemptResult, **extra: Any) -> TestResult:
    return TestResult(
        test_id=test_id,
        status=status,
        flaky=False,
        category="unit",
        ref="HEAD",
        sha="a" * 40,
        duration_seconds=float(len(attempts)),
        attempts=attempts,
        **extra,
    )


def render(*tests: TestResult) -> ET.Element:
    report = ParallelTestReport(
        session_id="s1",
        status="interrupted",
        started_at=STARTED,
        completed_at=STARTED + timedelta(minutes=1),
        duration_seconds=60.0,
        total_tests=len(tests),
        tests_passed=0,
        tests_failed=0,
        tests_timed_out=0,
        tests_errored=0,
        tests_skipped=0,
        tests_cancelled=0,
        tests_flaky=0,
        success_rate=0.0,
        num_workers=1,
        completed_tests=tests,
        report_hash="h",
    )
    return ET.fromstring(report.render("junit"))


def test_interrupted_is_an_error_with_each_rerun_of_its_own_kind_in_surefires_order() -> None:
    """Attempts error, failed, interrupted: <error> for the verdict and a rerun element per
    rerun by its kind, in the schema's order (rerunFailure before error before rerunError)."""
    root = render(
        execution(
            "t",
            "interrupted",
            attempt(1, "error"),
            attempt(2, "failed"),
            attempt(3, "interrupted", tail="last\n"),
        )
    )
    (case,) = root.iter("testcase")
    assert [c.tag for c in case] == ["rerunFailure", "error", "rerunError", "system-out"]
    error = case.find("error")
    assert error is not None and error.get("type") == "interrupted"
    assert (error.text or "").startswith("attempt 1: error")
    assert (root.get("errors"), root.get("failures")) == ("1", "0")


def test_skipped_is_skipped_and_a_quarantined_pass_is_a_pass() -> None:
    """skipped counts as skipped; quarantine changes nothing for a test that passed."""
    root = render(
        execution("s", "skipped", error="not on this platform"),
        execution("q", "passed", attempt(1, "passed"), quarantine="flaky on arm"),
    )
    skipped, passed = (next(s.iter("testcase")) for s in root)
    assert [(c.tag, c.get("message")) for c in skipped] == [
        ("skipped", "skipped: not on this platform")
    ]
    assert list(passed) == []
    assert (root.get("tests"), root.get("skipped"), root.get("failures")) == ("2", "1", "0")


def test_forbidden_characters_are_removed_from_every_text() -> None:
    """NUL, escape, a lone surrogate and U+FFFE never reach the file; tabs and newlines do."""
    dirty = "a\x00b\x1bc\ud800d\ufffee\tf\ng"
    root = render(execution("t", "failed", attempt(1, "failed", tail=dirty), first_error=dirty))
    (case,) = root.iter("testcase")
    assert case.findtext("system-out") == "abcde\tf\ng"
    failure = case.find("failure")
    assert failure is not None and failure.get("message") == "abcde\tf\ng"


def test_a_quarantined_suites_failing_cases_are_skipped_once() -> None:
    """Quarantined with parsed cases: the failing case is skipped with the reason, and no
    testcase of the execution's own repeats it."""
    final = attempt(1, "failed").model_copy(
        update={
            "cases": (
                CaseResult(classname="k", name="good", status="passed"),
                CaseResult(classname="k", name="bad", status="failed", message="boom"),
            )
        }
    )
    root = render(
        execution("q", "failed", final, quarantine="tracked in #7", cases=CaseCounts(passed=1))
    )
    cases = {c.get("name"): [(e.tag, e.get("message")) for e in c] for c in root.iter("testcase")}
    assert cases == {"good": [], "bad": [("skipped", "quarantined: tracked in #7: boom")]}
    assert (root.get("tests"), root.get("failures"), root.get("skipped")) == ("2", "0", "1")
