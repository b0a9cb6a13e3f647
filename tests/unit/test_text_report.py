"""The terminal report as a user reads it: what failed and why, where its log is, the verdicts."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from typing import Any

from rich.console import Console

from parallel_orch import ParallelTestReport
from parallel_orch.report.model import (
    AttemptResult,
    CaseCounts,
    CaseResult,
    Changes,
    Comparison,
    GateResult,
    SlowerTest,
    TestResult,
)
from parallel_orch.report.renderers import text
from parallel_orch.report.renderers.text_tests import MAX_LISTED
from parallel_orch.report.renderers.words import columns, eta, plural, seconds

T0 = datetime(2026, 1, 1, tzinfo=UTC)
LONG_LOG = "/var/tmp/" + "deeply/nested/" * 12 + "state/logs/0a1b2c3d4e5f/unit_core-9f8e7d6c.2.log"


def attempt(number: int, status: str, **fields: Any) -> AttemptResult:
    values: dict[str, Any] = {
        "number": number,
        "status": status,
        "worker": 0,
        "worktree": "/wt/0",
        "exit_code": 0 if status == "passed" else 1,
        "started_at": T0,
        "completed_at": T0,
        "duration_seconds": 0.5,
        "log_path": f"/logs/{number}.log",
    }
    values.update(fields)
    return AttemptResult(**values)


def execution(test_id: str, status: str, **fields: Any) -> TestResult:
    values: dict[str, Any] = {
        "test_id": test_id,
        "status": status,
        "flaky": False,
        "category": "unit",
        "ref": "HEAD",
        "sha": "a" * 40,
        "duration_seconds": 0.5,
        "attempts": (attempt(1, status),),
    }
    values.update(fields)
    return TestResult(**values)


def report(*tests: TestResult, **fields: Any) -> ParallelTestReport:
    def count(status: str) -> int:
        return sum(t.status == status for t in tests)

    values: dict[str, Any] = {
        "session_id": "abc123def456",
        "status": "partial_success",
        "started_at": T0,
        "completed_at": T0,
        "duration_seconds": 3.0,
        "total_tests": len(tests),
        "tests_passed": count("passed"),
        "tests_failed": count("failed"),
        "tests_timed_out": count("timed_out"),
        "tests_errored": count("error"),
        "tests_skipped": count("skipped"),
        "tests_cancelled": count("cancelled"),
        "tests_flaky": sum(t.flaky for t in tests),
        "tests_leaky": sum(t.leaky for t in tests),
        "success_rate": 0.5,
        "num_workers": 1,
        "completed_tests": tests,
        "report_hash": "0" * 64,
    }
    values.update(fields)
    return ParallelTestReport(**values)


def printed(value: ParallelTestReport, *, terminal: bool, width: int = 60) -> str:
    out = io.StringIO()
    console = Console(file=out, force_terminal=terminal, width=width, color_system=None)
    text.print_report(value, console)
    return out.getvalue()


def test_a_failed_test_shows_its_first_error_and_its_whole_log_path() -> None:
    """Each failed test: its status and id, what went wrong in one line, its log path uncut."""
    failed = execution(
        "unit/core::all",
        "failed",
        first_error="test_core.CoreTest.test_add: AssertionError: 4 != 5",
        attempts=(attempt(1, "failed"), attempt(2, "failed", log_path=LONG_LOG)),
    )
    lines = text.render(report(failed, execution("unit/core::ok", "passed"))).splitlines()
    head = next(i for i, line in enumerate(lines) if "unit/core::all" in line)
    assert lines[head].split() == ["FAILED", "unit/core::all", "0.50s,", "2", "attempts"]
    assert lines[head + 1].strip() == "test_core.CoreTest.test_add: AssertionError: 4 != 5"
    assert lines[head + 2].strip() == f"log: {LONG_LOG}"  # the final attempt's, alone
    assert "unit/core::ok" not in "\n".join(lines)  # a clean test is not listed
    assert "Not clean" not in "\n".join(lines)


def test_in_a_pipe_lines_are_plain_and_never_padded_nor_cut() -> None:
    """Off a terminal: no colour codes, no trailing spaces, no '…', whatever the width."""
    failed = execution(
        "unit::bad",
        "failed",
        first_error="boom",
        attempts=(attempt(1, "failed", log_path=LONG_LOG),),
    )
    out = printed(report(failed), terminal=False, width=40)
    assert "\x1b[" not in out and "…" not in out
    assert all(line == line.rstrip() for line in out.splitlines())
    assert f"log: {LONG_LOG}" in out  # longer than the width, and whole


def test_on_a_narrow_terminal_a_long_log_path_wraps_rather_than_being_cut() -> None:
    """On a terminal the path is never replaced by an ellipsis: all of it can be copied."""
    failed = execution("unit::bad", "failed", attempts=(attempt(1, "failed", log_path=LONG_LOG),))
    out = printed(report(failed), terminal=True, width=40)
    assert "…" not in out
    assert LONG_LOG in out.replace("\n", "")


def test_counts_read_in_correct_plurals_and_zero_counts_are_left_out() -> None:
    """'1 error', '1 test', '1 worker'; never '1 errors' or '0 timed out'."""
    one = report(
        execution("a::b", "error", first_error="ref 'x' does not resolve"), status="failed"
    )
    out = text.render(one)
    assert "0 of 1 test passed; 1 error" in out
    assert "on 1 worker," in out
    assert "errors" not in out and "timed out" not in out and "tests" not in out
    two = report(
        execution("a::b", "error"),
        execution("a::c", "error"),
        execution("a::d", "passed"),
        num_workers=2,
    )
    assert "1 of 3 tests passed; 2 errors" in text.render(two)
    assert "on 2 workers," in text.render(two)


def test_flaky_and_leaky_tests_are_marked_with_the_attempt_that_failed() -> None:
    """A flaky test shows its failed attempt's error and log; a leaky one what it left."""
    flaky = execution(
        "unit::flaky",
        "passed",
        flaky=True,
        attempts=(
            attempt(
                1,
                "failed",
                cases=(CaseResult(classname="T", name="t", status="failed", message="race"),),
            ),
            attempt(2, "passed"),
        ),
    )
    leaky = execution(
        "unit::leaky", "passed", leaky=True, attempts=(attempt(1, "passed", leaked=2),)
    )
    failed_and_leaky = execution(
        "unit::both", "failed", leaky=True, attempts=(attempt(1, "failed", leaked=1),)
    )
    out = text.render(report(flaky, leaky, failed_and_leaky, tests_leaky=2))
    assert "Flaky (1): passed after failing" in out
    assert "attempt 1 failed: T.t: race\n" in out and "log: /logs/1.log" in out
    assert "Leaky (1)" in out and "attempt 1 left 2 processes" in out
    failed_section = out[out.index("Failed (1)") : out.index("Flaky")]
    assert "unit::both" in failed_section and "leaky" in failed_section
    assert "1 flaky, 2 leaky" in out


def test_quarantined_tests_have_their_own_section_and_are_not_failures() -> None:
    """A quarantined failure is listed with its reason under Quarantined, not under Failed."""
    known = execution("unit::known", "failed", quarantine="bug #12", first_error="KeyError: 'x'")
    out = text.render(
        report(
            known,
            execution("unit::ok", "passed"),
            tests_quarantined=1,
            quarantined_tests=("unit::known",),
        )
    )
    assert "Failed (" not in out
    section = out[out.index("Quarantined (1): reported, but they gate nothing") :]
    assert "unit::known" in section and "quarantined: bug #12" in section
    assert "KeyError: 'x'" in section
    assert "1 quarantined" in out


def test_long_lists_end_in_a_count_of_the_rest() -> None:
    """A thousand failures list the first ones and say how many more there are."""
    many = [execution(f"unit::t{n:04d}", "failed") for n in range(1000)]
    out = text.render(report(*many))
    assert f"and {1000 - MAX_LISTED} more" in out
    assert "unit::t0999" not in out


def test_the_comparison_and_the_gates_are_shown_a_line_each() -> None:
    """New failures, fixed, slower (before -> after) against the baseline; each gate's verdict."""
    comparison = Comparison(
        baseline_session_id="0123456789ab",
        tests=Changes(
            new_failures=("unit::bad",),
            fixed=("unit::was_bad",),
            slower=(SlowerTest(test_id="unit::slow", before_seconds=1.0, after_seconds=3.5),),
        ),
        cases=Changes(new_failures=("unit::bad::T::t",)),
    )
    gates = (
        GateResult(
            name="min_pass_rate", target=0.9, actual=0.5, passed=False, reason="50.0% < 90.0%"
        ),
        GateResult(
            name="max_flaky", target=0, actual=0, passed=True, reason="0 flaky <= 0 allowed"
        ),
    )
    out = text.render(report(execution("unit::bad", "failed"), comparison=comparison, gates=gates))
    assert "Compared with session 0123456789ab: 1 new failure, 1 fixed, 1 slower" in out
    assert "  new failure    unit::bad\n" in out
    assert "  slower         unit::slow  1.00s -> 3.50s\n" in out
    assert "  cases: 1 new failure\n" in out and "unit::bad::T::t" in out
    assert "Gates: 1 of 2 failed\n  gate failed: min_pass_rate: 50.0% < 90.0%\n" in out
    assert "  gate ok: max_flaky: 0 flaky <= 0 allowed\n" in out
    unchanged = Comparison(baseline_session_id="0123456789ab")
    assert "Compared with session 0123456789ab: no changes" in text.render(
        report(comparison=unchanged)
    )


def test_the_summary_ends_the_report_with_cases_and_wall_time() -> None:
    """The last lines: session and status, tests, JUnit cases, wall time on N workers."""
    out = text.render(
        report(
            execution("a::b", "passed", cases=CaseCounts(passed=3)),
            status="complete",
            cases=CaseCounts(passed=3, errors=1),
            duration_seconds=75.0,
        )
    )
    assert out.splitlines()[-4:] == [
        "session abc123def456: complete",
        "1 of 1 test passed",
        "cases: 3 passed, 0 failed, 1 error, 0 skipped",
        "1m 15s wall on 1 worker, speedup 0.00x, utilisation 0%",
    ]


def test_words_for_counts_durations_and_etas() -> None:
    """Plurals, durations from fractions of a second to hours, an ETA in whole seconds."""
    assert [plural(n, "error") for n in (0, 1, 2)] == ["0 errors", "1 error", "2 errors"]
    assert plural(3, "process") == "3 processes"
    assert [seconds(s) for s in (0.4, 12.34, 65, 7325)] == ["0.40s", "12.3s", "1m 05s", "2h 02m"]
    assert [eta(s) for s in (0.2, 3.2, 59.5, 125)] == ["ETA <1s", "ETA 4s", "ETA 60s", "ETA 2m 05s"]
    assert columns([["id", "n"], ["long-name", "10"]], right=[1]) == [
        "id          n",
        "long-name  10",
    ]


def test_the_report_of_a_running_session_counts_the_tests_still_to_run() -> None:
    """`report SESSION` while it runs: what is not final yet is counted, not lost."""
    out = text.render(
        report(
            execution("a::b", "passed"),
            execution("a::c", "running"),
            execution("a::d", "pending"),
            status="running",
        )
    )
    assert "1 of 3 tests passed; 2 still to run" in out
    assert "a::c" not in out and "a::d" not in out
