"""CSV for spreadsheets: one row per execution (``render``), or per JUnit case (``render_cases``).

Written with the :mod:`csv` module (RFC 4180 quoting, CRLF line ends). A
spreadsheet runs a cell that starts with ``=``, ``+``, ``-`` or ``@`` (or a
tab or carriage return) as a formula, and these cells hold text that tests
wrote: error lines, case names, messages. Such a text cell gets a leading
apostrophe (OWASP's advice against CSV injection), which spreadsheets show as
text; numbers we format ourselves are left alone. Empty cells are absent
values; booleans are ``true`` / ``false``. Durations are in seconds over all
attempts (``setup_seconds``: the worktree setups, which ran before them);
worker, worktree, host and log are the final attempt's (a sharded test's last).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable

from parallel_orch.report.model import AttemptResult, ParallelTestReport, TestResult

EXECUTION_COLUMNS = (
    "test_id",
    "status",
    "flaky",
    "leaky",
    "quarantine",
    "category",
    "ref",
    "sha",
    "attempts",
    "duration_seconds",
    "setup_seconds",
    "worker",
    "worktree",
    "host",
    "cases_passed",
    "cases_failed",
    "cases_errors",
    "cases_skipped",
    "first_error",
    "log_path",
)
CASE_COLUMNS = ("test_id", "classname", "name", "file", "status", "time", "message")

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def text(value: str | None) -> str:
    """A text cell: empty for None, and never read as a formula."""
    if not value:
        return ""
    return "'" + value if value.startswith(_FORMULA_START) else value


def _number(value: int | float | None) -> str:
    return "" if value is None else str(value)


def _flag(value: bool) -> str:
    return "true" if value else "false"


def _table(columns: Iterable[str], rows: Iterable[Iterable[str]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(columns)
    writer.writerows(rows)
    return buffer.getvalue()


def _execution_row(test: TestResult) -> list[str]:
    final = test.attempts[-1] if test.attempts else None
    setups = [a.setup_seconds for a in test.attempts if a.setup_seconds is not None]
    cases = test.cases
    return [
        text(test.test_id),
        text(test.status),
        _flag(test.flaky),
        _flag(test.leaky),
        text(test.quarantine),
        text(test.category),
        text(test.ref),
        text(test.sha),
        _number(len(test.attempts)),
        _number(test.duration_seconds),
        _number(round(sum(setups), 6) if setups else None),
        _number(final.worker if final else None),
        text(final.worktree if final else None),
        text(final.host if final else None),
        _number(cases.passed if cases else None),
        _number(cases.failed if cases else None),
        _number(cases.errors if cases else None),
        _number(cases.skipped if cases else None),
        text(test.first_error),
        text(final.log_path if final else None),
    ]


def final_attempts(test: TestResult) -> list[AttemptResult]:
    """The last attempt of each execution: the test's own, or each of its shards'."""
    last: dict[str | None, AttemptResult] = {}
    for attempt in test.attempts:
        last[attempt.shard] = attempt
    return list(last.values())


def render(report: ParallelTestReport) -> str:
    """One row per execution: its verdict, where it ran (final attempt), its JUnit counts."""
    return _table(EXECUTION_COLUMNS, (_execution_row(t) for t in report.completed_tests))


def render_cases(report: ParallelTestReport) -> str:
    """One row per JUnit case of each execution's final attempt (each shard's, if sharded)."""
    rows = (
        [
            text(test.test_id),
            text(case.classname),
            text(case.name),
            text(case.file),
            text(case.status),
            _number(case.time),
            text(case.message),
        ]
        for test in report.completed_tests
        for final in final_attempts(test)
        for case in final.cases
    )
    return _table(CASE_COLUMNS, rows)
