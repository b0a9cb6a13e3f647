"""Gates: targets that turn a report into a verdict and an exit code (DESIGN §6, §8).

Quarantined tests are reported but gate nothing: pass rates are over the
other tests, and their failures fail neither a gate nor the exit code.
"""

from __future__ import annotations

from parallel_orch.models import ExecutionStatus, SessionStatus
from parallel_orch.report.model import GateResult, ParallelTestReport, TestResult
from parallel_orch.report.options import Gates

EXIT_OK, EXIT_FAILED, EXIT_INTERRUPTED = 0, 1, 130
_FINE = frozenset({ExecutionStatus.PASSED.value, ExecutionStatus.SKIPPED.value})


def _gated(report: ParallelTestReport, category: str | None = None) -> list[TestResult]:
    return [
        t
        for t in report.completed_tests
        if not t.quarantine and (category is None or t.category == category)
    ]


def _pass_rate(name: str, tests: list[TestResult], target: float, what: str) -> GateResult:
    if not tests:
        return GateResult(
            name=name, target=target, actual=None, passed=True, reason=f"no {what} ran"
        )
    passed_count = sum(t.status == ExecutionStatus.PASSED.value for t in tests)
    actual = passed_count / len(tests)
    passed = actual >= target
    reason = (
        f"{what}: {passed_count}/{len(tests)} passed ({_percent(actual, target)})"
        f" {'>=' if passed else '<'} {target * 100:g}%"
    )
    return GateResult(
        name=name, target=target, actual=round(actual, 4), passed=passed, reason=reason
    )


def _percent(rate: float, target: float) -> str:
    """``rate`` as a percentage with one decimal, or as many more (up to four) as it takes
    not to read as equal to ``target`` when it is not: 99.95 %, not 100.0 %."""
    for digits in range(1, 4):
        if (round(rate * 100, digits) == round(target * 100, digits)) == (rate == target):
            break
    else:
        digits = 4
    return f"{rate * 100:.{digits}f}%"


def judge(report: ParallelTestReport, gates: Gates) -> tuple[GateResult, ...]:
    """Each configured gate's verdict over ``report``, in a fixed order."""
    results: list[GateResult] = []
    if gates.min_pass_rate is not None:
        results.append(_pass_rate("min_pass_rate", _gated(report), gates.min_pass_rate, "tests"))
    for category, target in sorted(gates.categories.items()):
        tests = _gated(report, category)
        result = _pass_rate(f"min_pass_rate[{category}]", tests, target, f"{category} tests")
        if category not in report.categories:
            result = result.model_copy(update={"reason": f"no test of category {category!r} ran"})
        results.append(result)
    if gates.max_flaky is not None:
        flaky = sum(t.flaky for t in _gated(report))
        passed = flaky <= gates.max_flaky
        results.append(
            GateResult(
                name="max_flaky",
                target=gates.max_flaky,
                actual=flaky,
                passed=passed,
                reason=f"{flaky} flaky {'<=' if passed else '>'} {gates.max_flaky} allowed",
            )
        )
    if gates.max_duration is not None:
        wall = report.duration_seconds
        passed = wall <= gates.max_duration
        results.append(
            GateResult(
                name="max_duration",
                target=gates.max_duration,
                actual=round(wall, 3),
                passed=passed,
                reason=f"{wall:.1f}s wall {'<=' if passed else '>'} {gates.max_duration:g}s",
            )
        )
    if gates.min_coverage is not None:
        results.append(_coverage(report, gates.min_coverage))
    if gates.no_new_failures:
        results.append(_new_failures(report))
    return tuple(results)


def _coverage(report: ParallelTestReport, target: float) -> GateResult:
    measured = [c for c in report.coverage if c.error is None]
    if not measured:
        return GateResult(
            name="min_coverage",
            target=target,
            actual=None,
            passed=False,
            reason="no coverage was measured (give a plan `coverage = true`)",
        )
    lowest = min(measured, key=lambda c: c.percent)
    passed = lowest.percent >= target
    return GateResult(
        name="min_coverage",
        target=target,
        actual=lowest.percent,
        passed=passed,
        reason=(
            f"coverage {lowest.percent:.1f}% at {lowest.sha[:12]} "
            f"{'>=' if passed else '<'} {target:g}%"
        ),
    )


def _new_failures(report: ParallelTestReport) -> GateResult:
    if report.comparison is None:
        return GateResult(
            name="no_new_failures",
            target=True,
            actual=None,
            passed=True,
            reason="no earlier session of these plans to compare with",
        )
    quarantined = set(report.quarantined_tests)
    new = [t for t in report.comparison.tests.new_failures if t not in quarantined]
    shown = ", ".join(new[:3]) + (f" and {len(new) - 3} more" if len(new) > 3 else "")
    return GateResult(
        name="no_new_failures",
        target=True,
        actual=not new,
        passed=not new,
        reason=(
            f"{len(new)} new failure(s) since {report.comparison.baseline_session_id}: {shown}"
            if new
            else f"no new failures since {report.comparison.baseline_session_id}"
        ),
    )


def exit_code(report: ParallelTestReport) -> int:
    """DESIGN §8: 130 stopped; 1 a test failed (quarantined ones aside) or a gate did; else 0."""
    if SessionStatus(report.status) in (SessionStatus.CANCELLED, SessionStatus.INTERRUPTED):
        return EXIT_INTERRUPTED
    failing = any(t.status not in _FINE for t in _gated(report))
    return EXIT_FAILED if failing or not report.gates_passed else EXIT_OK
