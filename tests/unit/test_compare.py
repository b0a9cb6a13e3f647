"""The comparison of a report with its baseline, at test and at case level."""

from __future__ import annotations

from parallel_orch.report.compare import compare
from parallel_orch.report.model import AttemptResult, SlowerTest
from tests.report_factory import attempt, case, make_report, result


def test_new_failures_fixed_and_still_failing() -> None:
    """Failing now but not before is new; passing now after failing is fixed; both is still."""
    before = make_report(
        result("a"), result("b", "failed"), result("c", "failed"), session_id="before"
    )
    now = make_report(result("a", "failed"), result("b"), result("c", "timed_out"))
    changes = compare(now, before).tests
    assert changes.new_failures == ("a",)
    assert changes.fixed == ("b",)
    assert changes.still_failing == ("c",)
    assert compare(now, before).baseline_session_id == "before"


def test_an_error_or_an_interruption_is_a_failure_too() -> None:
    """An infrastructure error or an interrupted test where one passed before is new."""
    before = make_report(result("a"), result("b"), session_id="before")
    now = make_report(result("a", "error"), result("b", "interrupted"))
    assert compare(now, before).tests.new_failures == ("a", "b")


def test_a_skipped_or_cancelled_test_is_neither_new_failure_nor_fixed() -> None:
    """Skipped and cancelled are not failures: not new, not fixed, not still failing."""
    before = make_report(result("a"), result("b", "failed"), session_id="before")
    now = make_report(result("a", "skipped"), result("b", "cancelled"))
    changes = compare(now, before).tests
    assert (changes.new_failures, changes.fixed, changes.still_failing) == ((), (), ())


def test_newly_flaky_is_flaky_now_and_not_before() -> None:
    """A test flaky now and steady before is newly flaky; flaky both times is not."""
    before = make_report(result("a"), result("b", flaky=True), session_id="before")
    now = make_report(result("a", flaky=True), result("b", flaky=True), result("new", flaky=True))
    assert compare(now, before).tests.newly_flaky == ("a", "new")


def test_slower_means_more_than_twenty_percent_and_more_than_a_second() -> None:
    """10 s to 12.5 s is slower; 10 s to 11.9 s (19 %) is not; 1 s to 1.9 s (< 1 s) is not."""
    before = make_report(
        result("big", seconds=10.0),
        result("small", seconds=10.0),
        result("quick", seconds=1.0),
        session_id="before",
    )
    now = make_report(
        result("big", seconds=12.5),
        result("small", seconds=11.9),
        result("quick", seconds=1.9),
    )
    assert compare(now, before).tests.slower == (
        SlowerTest(test_id="big", before_seconds=10.0, after_seconds=12.5),
    )


def test_slower_compares_final_attempts_of_tests_that_passed_both_times() -> None:
    """A retry does not make a test slower, and a test failing on either side is not timed."""
    retried = (attempt(1, "failed", 30.0), attempt(2, "passed", 2.0))
    before = make_report(result("r", seconds=2.0), result("f", seconds=2.0), session_id="before")
    now = make_report(
        result("r", attempts=retried, flaky=True), result("f", "failed", seconds=20.0)
    )
    assert compare(now, before).tests.slower == ()


def test_added_and_removed_tests() -> None:
    """Tests only in the new session are added, only in the baseline removed, in id order."""
    before = make_report(result("kept"), result("gone-b"), result("gone-a"), session_id="before")
    now = make_report(result("kept"), result("new-b"), result("new-a", "failed"))
    changes = compare(now, before).tests
    assert changes.added == ("new-a", "new-b")
    assert changes.removed == ("gone-a", "gone-b")
    assert changes.new_failures == ("new-a",)  # a new test failing is a new failure


def _with_cases(*cases_: tuple[str, str, float]) -> AttemptResult:
    return attempt(1, "passed", 1.0, tuple(case(n, s, t) for n, s, t in cases_))


def test_cases_are_compared_where_both_sides_parsed_them() -> None:
    """Case-level changes carry ``<test>::<class>::<name>`` ids, like the test-level ones."""
    before = make_report(
        result(
            "u",
            attempts=(
                _with_cases(
                    ("ok", "passed", 0.1), ("breaks", "passed", 0.1), ("heals", "failed", 0.1)
                ),
            ),
        ),
        result("no-junit"),
        session_id="before",
    )
    now = make_report(
        result(
            "u",
            "failed",
            attempts=(
                _with_cases(
                    ("ok", "passed", 0.1), ("breaks", "failed", 0.1), ("heals", "passed", 0.1)
                ),
            ),
        ),
        result("no-junit", "failed"),
    )
    comparison = compare(now, before)
    assert comparison.cases is not None
    assert comparison.cases.new_failures == ("u::tests.m::breaks",)
    assert comparison.cases.fixed == ("u::tests.m::heals",)
    assert comparison.cases.added == comparison.cases.removed == ()
    assert comparison.tests.new_failures == ("no-junit", "u")


def test_case_level_added_removed_and_slower() -> None:
    """A case renamed is one added and one removed; a case 5 s slower is slower."""
    before = make_report(
        result("u", attempts=(_with_cases(("old", "passed", 0.1), ("slow", "passed", 1.0)),)),
        session_id="before",
    )
    now = make_report(
        result("u", attempts=(_with_cases(("new", "passed", 0.1), ("slow", "passed", 6.0)),)),
    )
    cases = compare(now, before).cases
    assert cases is not None
    assert (cases.added, cases.removed) == (("u::tests.m::new",), ("u::tests.m::old",))
    assert cases.slower == (
        SlowerTest(test_id="u::tests.m::slow", before_seconds=1.0, after_seconds=6.0),
    )


def test_a_case_that_failed_then_passed_on_retry_is_newly_flaky() -> None:
    """Within a retried test, a case failing in attempt 1 and passing in 2 is flaky."""
    retried = (
        attempt(1, "failed", 1.0, (case("wobbly", "failed"),)),
        attempt(2, "passed", 1.0, (case("wobbly"), case("steady"))),
    )
    before = make_report(
        result("u", attempts=(_with_cases(("wobbly", "passed", 0.1)),)), session_id="before"
    )
    now = make_report(result("u", flaky=True, attempts=retried))
    cases = compare(now, before).cases
    assert cases is not None
    assert cases.newly_flaky == ("u::tests.m::wobbly",)
    assert cases.added == ("u::tests.m::steady",)


def test_no_case_level_comparison_without_cases_on_both_sides() -> None:
    """When only one side parsed JUnit, ``cases`` is None rather than all added or removed."""
    before = make_report(result("u"), session_id="before")
    now = make_report(result("u", attempts=(_with_cases(("ok", "passed", 0.1)),)))
    assert compare(now, before).cases is None


def test_the_same_session_twice_changes_nothing() -> None:
    """A report compared with an identical one has empty changes."""
    report = make_report(result("a"), result("b", "failed"), result("c", flaky=True))
    changes = compare(report, report).tests
    assert changes.still_failing == ("b",)
    assert (changes.new_failures, changes.fixed, changes.newly_flaky) == ((), (), ())
    assert (changes.slower, changes.added, changes.removed) == ((), (), ())
