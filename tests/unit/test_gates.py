"""Gates: each verdict over a synthetic report, the exit code, gate specs, the hash."""

from __future__ import annotations

import pytest

from parallel_orch.cli.outputs import gates_from_flags, warn_unknown_categories
from parallel_orch.exceptions import ConfigError
from parallel_orch.report.finish import judged
from parallel_orch.report.gates import exit_code, judge
from parallel_orch.report.model import Changes, CommitCoverage, Comparison, GateResult
from parallel_orch.report.options import Gates
from tests.report_factory import make_report, result


def verdict(verdicts: tuple[GateResult, ...], name: str) -> GateResult:
    found = [v for v in verdicts if v.name == name]
    assert len(found) == 1, [v.name for v in verdicts]
    return found[0]


# -- quarantine -------------------------------------------------------------------------


def test_a_quarantined_failure_gates_nothing_and_exits_zero() -> None:
    """A failing quarantined test fails neither the pass rate nor the exit code."""
    report = make_report(
        result("unit::ok"), result("unit::wobbly", "failed", quarantine="issue #12")
    )
    gates = Gates(min_pass_rate=1.0, categories={"unit": 1.0})
    verdicts = judge(report, gates)
    assert [v.passed for v in verdicts] == [True, True]
    assert verdict(verdicts, "min_pass_rate").reason == "tests: 1/1 passed (100.0%) >= 100%"
    assert exit_code(judged(report, gates, None)) == 0


def test_the_same_failure_unquarantined_fails_the_gate_and_the_exit_code() -> None:
    """Without its quarantine the failure counts: the gate fails and the exit code is 1."""
    report = make_report(result("unit::ok"), result("unit::wobbly", "failed"))
    final = judged(report, Gates(min_pass_rate=1.0), None)
    assert not final.gates_passed
    assert final.gates[0].reason == "tests: 1/2 passed (50.0%) < 100%"
    assert exit_code(final) == 1
    assert exit_code(judged(report, Gates(), None)) == 1  # no gate: the failure alone


def test_a_session_whose_only_failures_are_quarantined_exits_zero() -> None:
    """Quarantined timeouts and errors are reported, never the exit code's business."""
    report = make_report(
        result("unit::ok"),
        result("unit::slow", "timed_out", quarantine="slow on CI"),
        result("unit::infra", "error", quarantine="needs a GPU"),
    )
    assert report.quarantined_tests == ("unit::slow", "unit::infra")
    assert exit_code(judged(report, Gates(), None)) == 0


def test_quarantined_flaky_tests_do_not_count_against_max_flaky() -> None:
    """``max_flaky`` counts the flaky tests that are not quarantined."""
    report = make_report(
        result("a", flaky=True), result("b", flaky=True, quarantine="known"), result("c")
    )
    flaky = verdict(judge(report, Gates(max_flaky=1)), "max_flaky")
    assert (flaky.actual, flaky.passed) == (1, True)


# -- each gate --------------------------------------------------------------------------


def test_category_gates_judge_each_category_on_its_own() -> None:
    """``unit = 1.0`` fails on one unit failure while ``integration = 0.5`` holds."""
    report = make_report(
        result("unit::a"),
        result("unit::b", "failed"),
        result("integration::a", category="integration"),
        result("integration::b", "failed", category="integration"),
    )
    verdicts = judge(report, Gates(categories={"unit": 1.0, "integration": 0.5}))
    assert [v.name for v in verdicts] == ["min_pass_rate[integration]", "min_pass_rate[unit]"]
    integration, unit = verdicts
    assert (integration.passed, integration.actual) == (True, 0.5)
    assert (unit.passed, unit.actual, unit.target) == (False, 0.5, 1.0)
    assert unit.reason == "unit tests: 1/2 passed (50.0%) < 100%"


def test_a_pass_rate_just_below_its_target_does_not_read_as_equal() -> None:
    """1999 of 2000 against 100 % fails, and its reason does not read 100.0 % < 100 %."""
    report = make_report(*[result(f"t{i}") for i in range(1999)], result("bad", "failed"))
    rate = verdict(judge(report, Gates(min_pass_rate=1.0)), "min_pass_rate")
    assert not rate.passed
    assert rate.reason == "tests: 1999/2000 passed (99.95%) < 100%"


def test_a_gate_on_a_category_no_test_has_holds_and_says_so(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An unknown category in a gate is a warning (before the run) and a passing verdict."""
    report = make_report(result("unit::a"))
    gates = Gates(categories={"performance": 0.9})
    warn_unknown_categories(gates, {"unit"})
    assert capsys.readouterr().err == (
        "warning: gate on category 'performance', which no test has (categories: unit)\n"
    )
    perf = verdict(judge(report, gates), "min_pass_rate[performance]")
    assert (perf.passed, perf.actual) == (True, None)
    assert perf.reason == "no test of category 'performance' ran"
    assert exit_code(judged(report, gates, None)) == 0


def test_max_flaky_fails_above_its_limit() -> None:
    """Two flaky tests against ``max_flaky = 1`` fail the gate though every test passed."""
    report = make_report(result("a", flaky=True), result("b", flaky=True))
    flaky = verdict(judge(report, Gates(max_flaky=1)), "max_flaky")
    assert (flaky.passed, flaky.actual, flaky.reason) == (False, 2, "2 flaky > 1 allowed")
    assert verdict(judge(report, Gates(max_flaky=2)), "max_flaky").passed


def test_max_duration_judges_the_wall_time() -> None:
    """A 10 s session fails ``max_duration = 5`` and holds ``max_duration = 30``."""
    report = make_report(result("a"), wall=10.0)
    slow = verdict(judge(report, Gates(max_duration=5)), "max_duration")
    assert (slow.passed, slow.actual, slow.reason) == (False, 10.0, "10.0s wall > 5s")
    assert verdict(judge(report, Gates(max_duration=30)), "max_duration").passed


def test_min_coverage_without_coverage_fails_with_a_clear_reason() -> None:
    """No coverage measured is a failed ``min_coverage``, saying how to measure it."""
    report = make_report(result("a"))
    cov = verdict(judge(report, Gates(min_coverage=80)), "min_coverage")
    assert (cov.passed, cov.actual) == (False, None)
    assert cov.reason == "no coverage was measured (give a plan `coverage = true`)"


def test_min_coverage_judges_the_lowest_commit() -> None:
    """Over two commits the lower one decides: 85 % and 70 % against 80 % fails."""
    coverage = (
        CommitCoverage(sha="b" * 40, percent=85.0, statements=100, missing=15),
        CommitCoverage(sha="c" * 40, percent=70.0, statements=100, missing=30),
    )
    report = make_report(result("a"), coverage=coverage)
    cov = verdict(judge(report, Gates(min_coverage=80)), "min_coverage")
    assert (cov.passed, cov.actual) == (False, 70.0)
    assert cov.reason == f"coverage 70.0% at {'c' * 12} < 80%"
    assert verdict(judge(report, Gates(min_coverage=70)), "min_coverage").passed


def test_no_new_failures_fails_on_a_new_failure_of_the_comparison() -> None:
    """A test failing now that passed in the baseline fails ``no_new_failures``, named."""
    comparison = Comparison(baseline_session_id="before", tests=Changes(new_failures=("u::a",)))
    report = make_report(result("u::a", "failed"), comparison=comparison)
    new = verdict(judge(report, Gates(no_new_failures=True)), "no_new_failures")
    assert (new.passed, new.reason) == (False, "1 new failure(s) since before: u::a")


def test_no_new_failures_ignores_quarantined_tests_and_holds_without_a_baseline() -> None:
    """A quarantined new failure does not count; with nothing to compare the gate holds."""
    comparison = Comparison(baseline_session_id="before", tests=Changes(new_failures=("u::q",)))
    report = make_report(result("u::q", "failed", quarantine="known"), comparison=comparison)
    assert verdict(judge(report, Gates(no_new_failures=True)), "no_new_failures").passed
    alone = make_report(result("u::a", "failed"))
    first = verdict(judge(alone, Gates(no_new_failures=True)), "no_new_failures")
    assert first.passed
    assert first.reason == "no earlier session of these plans to compare with"


# -- the exit code ----------------------------------------------------------------------


def test_a_failed_gate_exits_one_even_when_every_test_passed() -> None:
    """All passed, gate failed: exit 1. All passed, gates held: exit 0."""
    report = make_report(result("a"), result("b", flaky=True))
    assert exit_code(judged(report, Gates(max_flaky=0), None)) == 1
    assert exit_code(judged(report, Gates(max_flaky=1), None)) == 0


@pytest.mark.parametrize("status", ["cancelled", "interrupted"])
def test_a_stopped_session_exits_130_whatever_its_gates(status: str) -> None:
    """A cancelled or interrupted session is 130, not a gate's 1."""
    report = make_report(result("a"), result("b", "cancelled"), status=status)
    assert exit_code(judged(report, Gates(min_pass_rate=1.0), None)) == 130


def test_skipped_tests_do_not_fail_the_exit_code() -> None:
    """A skipped test is not a failure."""
    assert exit_code(make_report(result("a"), result("b", "skipped"))) == 0


# -- gate specs -------------------------------------------------------------------------


def test_gate_flags_go_on_top_of_the_configured_gates() -> None:
    """Flags override the configuration's values and add categories; the rest is kept."""
    base = Gates(min_pass_rate=0.5, max_flaky=3, categories={"unit": 1.0})
    gates = gates_from_flags(
        base, min_pass_rate=0.9, gate=["integration=0.98", " perf = 0.9"], no_new_failures=True
    )
    assert gates == Gates(
        min_pass_rate=0.9,
        max_flaky=3,
        categories={"unit": 1.0, "integration": 0.98, "perf": 0.9},
        no_new_failures=True,
    )


def test_a_category_key_beside_the_named_gates_is_a_category_gate() -> None:
    """``unit = 1.0`` in a gates table is ``categories.unit``."""
    gates = Gates.model_validate({"min_pass_rate": 0.9, "unit": 1.0, "integration": "0.98"})
    assert gates.categories == {"unit": 1.0, "integration": 0.98}
    assert gates.min_pass_rate == 0.9


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"gate": ["unit=abc"]}, "--gate 'unit=abc': 'abc' is not a number; a pass rate is 0 to 1"),
        ({"gate": ["unit=1.5"]}, "bad gate: --gate unit=1.5: a pass rate is between 0 and 1"),
        ({"gate": ["unit=nan"]}, "bad gate: --gate unit=nan: a pass rate is between 0 and 1"),
        ({"gate": ["unit"]}, "--gate 'unit': expected CATEGORY=RATE, e.g. unit=1.0"),
        ({"gate": ["=1"]}, "--gate '=1': expected CATEGORY=RATE, e.g. unit=1.0"),
        ({"min_pass_rate": 2.0}, "bad gate: --min-pass-rate 2.0: a pass rate is between 0 and 1"),
        ({"max_flaky": -1}, "bad gate: --max-flaky -1: a number of flaky tests is 0 or more"),
        ({"max_duration": 0.0}, "bad gate: --max-duration 0.0: a wall time is more than 0 seconds"),
        (
            {"min_coverage": 101.0},
            "bad gate: --min-coverage 101.0: a coverage is 0 to 100 (percent)",
        ),
    ],
)
def test_a_bad_gate_spec_is_a_one_line_usage_error(flags: dict[str, object], message: str) -> None:
    """Each bad spec raises ConfigError (exit 2) with one line naming the flag and the fix."""
    with pytest.raises(ConfigError) as raised:
        gates_from_flags(Gates(), **flags)  # type: ignore[arg-type]
    assert raised.value.exit_code == 2
    assert raised.value.message == message


# -- the hash ---------------------------------------------------------------------------


def test_the_hash_covers_gates_and_verdicts_but_not_timings() -> None:
    """Same outcomes and gates hash the same however long they took; other gates differ."""
    fast = make_report(result("a", seconds=0.1), result("b", seconds=0.2), wall=1.0)
    slow = make_report(result("a", seconds=9.0), result("b", seconds=7.0), wall=20.0)
    gates = Gates(min_pass_rate=0.9, max_duration=60)
    assert judged(fast, gates, None).report_hash == judged(slow, gates, None).report_hash
    assert judged(fast, Gates(), None).report_hash == fast.report_hash  # no gates: unchanged
    other = judged(fast, Gates(min_pass_rate=0.8, max_duration=60), None)
    assert other.report_hash != judged(fast, gates, None).report_hash
    assert other.report_hash != fast.report_hash


def test_the_hash_changes_when_a_verdict_does() -> None:
    """The same gate passing and failing (here on wall time) hash differently."""
    gates = Gates(max_duration=5)
    held = judged(make_report(result("a"), wall=1.0), gates, None)
    broke = judged(make_report(result("a"), wall=9.0), gates, None)
    assert (held.gates_passed, broke.gates_passed) == (True, False)
    assert held.report_hash != broke.report_hash


@pytest.mark.parametrize(
    ("name", "value", "shown"),
    [
        ("min_pass_rate[unit]", 0.985, "98.5%"),
        ("min_coverage", 80, "80.0%"),
        ("max_duration", 245.0, "4m 05s"),
        ("no_new_failures", True, "yes"),
        ("max_flaky", 2, "2"),
        ("max_flaky", None, "-"),
    ],
)
def test_every_renderer_shows_a_gate_value_in_its_unit(
    name: str, value: float | bool | None, shown: str
) -> None:
    """Markdown and HTML share one spelling of a gate's target and actual value."""
    from parallel_orch.report.renderers.words import gate_value

    assert gate_value(name, value) == shown
