"""The terminal report's sections about tests: failed, not run, flaky, leaky, quarantined,
and notes (a test's notes under its entry; a test with notes listed nowhere else under
Notes).

A test is listed once: a quarantined test under Quarantined whatever its
status, a flaky test that also leaked under Flaky, marked ``leaky`` (so is a
failed one). Each failed test shows what went wrong in one line and its whole
log path on a line of its own, so it can be copied.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from rich.text import Text

from parallel_orch.models import FAILURE_STATUSES, ExecutionStatus
from parallel_orch.report.model import AttemptResult, ParallelTestReport, TestResult
from parallel_orch.report.renderers.words import STATUS_STYLE, label, plural, seconds

MAX_LISTED = 50  # tests per section; the rest are counted ("and 12 more")
STATUS_WIDTH = 11  # len("INTERRUPTED"): the widest status label
DETAIL = " " * (2 + STATUS_WIDTH + 1)  # detail lines start under the test id

_FAILING = frozenset(s.value for s in FAILURE_STATUSES) | {ExecutionStatus.INTERRUPTED.value}
_NOT_RUN = frozenset({ExecutionStatus.CANCELLED.value, ExecutionStatus.SKIPPED.value})

Entry = Callable[[TestResult], list[Text]]


def sections(report: ParallelTestReport) -> list[list[Text]]:
    """Each non-empty section of tests, as lines: its title, then its tests."""
    quarantined = [t for t in report.completed_tests if t.quarantine is not None]
    rest = [t for t in report.completed_tests if t.quarantine is None]
    clean_but = [t for t in rest if t.status == ExecutionStatus.PASSED.value]
    found = [
        ("Failed ({n})", [t for t in rest if t.status in _FAILING], _failed_entry),
        ("Not run ({n})", [t for t in rest if t.status in _NOT_RUN], _not_run_entry),
        ("Flaky ({n}): passed after failing", [t for t in clean_but if t.flaky], _flaky_entry),
        (
            "Leaky ({n}): left processes running, killed after",
            [t for t in clean_but if t.leaky and not t.flaky],
            _leaky_entry,
        ),
        ("Quarantined ({n}): reported, but they gate nothing", quarantined, _quarantined_entry),
    ]
    listed = {id(t) for _, tests, _ in found for t in tests}
    noted = [t for t in report.completed_tests if t.notes and id(t) not in listed]
    found.append(("Notes ({n})", noted, _head_only))
    return [
        _section(title.format(n=len(tests)), tests, _with_notes(entry))
        for title, tests, entry in found
        if tests
    ]


def _with_notes(entry: Entry) -> Entry:
    """``entry``, then the test's notes, one a line."""
    return lambda test: [*entry(test), *(_detail(n, "yellow") for n in test.notes)]


def _head_only(test: TestResult) -> list[Text]:
    return [_head(test)]


def _section(title: str, tests: Sequence[TestResult], entry: Entry) -> list[Text]:
    lines = [Text(title, style="bold")]
    for test in tests[:MAX_LISTED]:
        lines.extend(entry(test))
    if len(tests) > MAX_LISTED:
        lines.append(Text(f"  and {len(tests) - MAX_LISTED} more (all of them in --report-json)"))
    return lines


def _head(test: TestResult, *notes: str) -> Text:
    """``  FAILED     unit::core  0.42s, 2 attempts, leaky``: status, id, then notes."""
    line = Text("  ")
    line.append(label(test.status).ljust(STATUS_WIDTH), style=STATUS_STYLE.get(test.status, ""))
    line.append(" ")
    line.append(test.test_id, style="bold")  # user text: a Text, never markup
    facts = [seconds(test.duration_seconds)] if test.duration_seconds is not None else []
    if len(test.attempts) > 1:
        facts.append(plural(len(test.attempts), "attempt"))
    facts += [flag for flag, on in (("flaky", test.flaky), ("leaky", test.leaky)) if on]
    facts += [n for n in notes if n]
    if facts:
        line.append("  " + ", ".join(facts), style="dim")
    return line


def _detail(text: str, style: str = "") -> Text:
    return Text(DETAIL + text, style=style)


def _log(attempt: AttemptResult | None) -> list[Text]:
    """The log's full path, alone on its line (never cut, so it can be copied); on a fleet,
    the worker it ran on before it."""
    if attempt is None or not attempt.log_path:
        return []
    where = [_detail(f"ran on {attempt.host}", "dim")] if attempt.host else []
    return [*where, _detail(f"log: {attempt.log_path}", "dim")]


def _what_went_wrong(test: TestResult) -> list[Text]:
    final = test.attempts[-1] if test.attempts else None
    lines = []
    if test.first_error:
        lines.append(_detail(test.first_error, STATUS_STYLE.get(test.status, "")))
    elif final is not None and final.exit_code is not None:
        lines.append(_detail(f"exit code {final.exit_code}"))
    if final is not None and final.junit_error:
        lines.append(_detail(f"JUnit file not read: {final.junit_error}", "yellow"))
    return lines + _log(final)


def _failed_entry(test: TestResult) -> list[Text]:
    return [_head(test), *_what_went_wrong(test)]


def _not_run_entry(test: TestResult) -> list[Text]:
    return [_head(test, test.first_error or test.error or "")]


def _quarantined_entry(test: TestResult) -> list[Text]:
    lines = [_head(test, f"quarantined: {test.quarantine}")]
    if test.status != ExecutionStatus.PASSED.value:
        lines += _what_went_wrong(test)
    return lines


def _flaky_entry(test: TestResult) -> list[Text]:
    failed = next((a for a in test.attempts if a.status != ExecutionStatus.PASSED.value), None)
    lines = [_head(test)]
    if failed is not None:
        lines.append(_detail(f"attempt {failed.number} {failed.status}: {_attempt_error(failed)}"))
        lines += _log(failed)
    return lines


def _attempt_error(attempt: AttemptResult) -> str:
    """What went wrong in one attempt: its error, a failing case's message, or its exit code."""
    if attempt.error:
        return attempt.error
    for case in attempt.cases:
        if case.status in ("failed", "error") and case.message:
            return (
                f"{case.classname}.{case.name}: {case.message}" if case.classname else case.message
            )
    return f"exit code {attempt.exit_code}" if attempt.exit_code is not None else "no detail"


def _leaky_entry(test: TestResult) -> list[Text]:
    leaked = [a for a in test.attempts if a.leaked]
    lines = [_head(test)]
    for attempt in leaked:
        lines.append(_detail(f"attempt {attempt.number} left {plural(attempt.leaked, 'process')}"))
        lines += _log(attempt)
    return lines
