"""A session against a baseline: what broke, what was fixed, what got slower (DESIGN §6).

At test level always; at case level where both sides parsed JUnit cases of
the same test (a case is ``<test id>::<classname>::<name>``).
"""

from __future__ import annotations

from collections.abc import Mapping

from parallel_orch.models import FAILURE_STATUSES, ExecutionStatus
from parallel_orch.report.model import (
    Changes,
    Comparison,
    ParallelTestReport,
    SlowerTest,
    TestResult,
)

SLOWER_RATIO = 1.2  # slower means more than 20 % ...
SLOWER_SECONDS = 1.0  # ... and more than a second
_FAILING = frozenset(s.value for s in FAILURE_STATUSES) | {ExecutionStatus.INTERRUPTED.value}
_CASE_FAILING = frozenset({"failed", "error"})


class _Outcome:
    __slots__ = ("failing", "flaky", "passed", "seconds")

    def __init__(self, *, failing: bool, passed: bool, flaky: bool, seconds: float | None) -> None:
        self.failing, self.passed, self.flaky, self.seconds = failing, passed, flaky, seconds


def _tests(report: ParallelTestReport) -> dict[str, _Outcome]:
    return {
        t.test_id: _Outcome(
            failing=t.status in _FAILING,
            passed=t.status == ExecutionStatus.PASSED.value,
            flaky=t.flaky,
            seconds=_final_seconds(t),
        )
        for t in report.completed_tests
    }


def _final_seconds(test: TestResult) -> float | None:
    final = test.attempts[-1] if test.attempts else None
    return final.duration_seconds if final else test.duration_seconds


def _cases(report: ParallelTestReport, tests: set[str]) -> dict[str, _Outcome]:
    found: dict[str, _Outcome] = {}
    for test in report.completed_tests:
        if test.test_id not in tests or not test.attempts:
            continue
        final = test.attempts[-1]
        failed_before = {
            (c.classname, c.name)
            for a in test.attempts[:-1]
            for c in a.cases
            if c.status in _CASE_FAILING
        }
        for case in final.cases:
            found[f"{test.test_id}::{case.classname}::{case.name}"] = _Outcome(
                failing=case.status in _CASE_FAILING,
                passed=case.status == "passed",
                flaky=case.status == "passed" and (case.classname, case.name) in failed_before,
                seconds=case.time,
            )
    return found


def changes(now: Mapping[str, _Outcome], before: Mapping[str, _Outcome]) -> Changes:
    """How ``now`` differs from ``before``, each list in id order."""
    ids = sorted(now)
    slower = []
    for key in ids:
        a, b = before.get(key), now[key]
        if a is None or not (a.passed and b.passed) or a.seconds is None or b.seconds is None:
            continue
        if b.seconds > a.seconds * SLOWER_RATIO and b.seconds - a.seconds > SLOWER_SECONDS:
            slower.append(
                SlowerTest(test_id=key, before_seconds=a.seconds, after_seconds=b.seconds)
            )
    return Changes(
        new_failures=tuple(
            k for k in ids if now[k].failing and (k not in before or not before[k].failing)
        ),
        fixed=tuple(k for k in ids if now[k].passed and k in before and before[k].failing),
        still_failing=tuple(k for k in ids if now[k].failing and k in before and before[k].failing),
        newly_flaky=tuple(
            k for k in ids if now[k].flaky and (k not in before or not before[k].flaky)
        ),
        slower=tuple(slower),
        added=tuple(k for k in ids if k not in before),
        removed=tuple(sorted(k for k in before if k not in now)),
    )


def compare(report: ParallelTestReport, baseline: ParallelTestReport) -> Comparison:
    """``report`` against ``baseline``; see the module docstring."""
    with_cases = {t.test_id for t in report.completed_tests if t.attempts and t.attempts[-1].cases}
    with_cases &= {
        t.test_id for t in baseline.completed_tests if t.attempts and t.attempts[-1].cases
    }
    return Comparison(
        baseline_session_id=baseline.session_id,
        tests=changes(_tests(report), _tests(baseline)),
        cases=changes(_cases(report, with_cases), _cases(baseline, with_cases))
        if with_cases
        else None,
    )
