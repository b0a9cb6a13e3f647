"""The terminal report: what needs a look first, then the verdicts, then the totals.

Plain lines, never padded nor cut: on a terminal they are coloured and a long
line (a log path) wraps rather than losing its end; in a pipe or a file they
are the same lines without colour.
"""

from __future__ import annotations

from rich.console import Console
from rich.text import Text

from parallel_orch.report.model import ParallelTestReport
from parallel_orch.report.renderers import text_tests, text_verdicts
from parallel_orch.report.renderers.words import STATUS_STYLE, plural, seconds

__all__ = ["STATUS_STYLE", "lines", "print_report", "render"]


def lines(report: ParallelTestReport) -> list[Text]:
    """The report as lines, sections separated by a blank line."""
    parts = [
        *text_tests.sections(report),
        text_verdicts.categories(report),
        text_verdicts.comparison(report.comparison),
        text_verdicts.gates(report.gates),
        summary(report),
    ]
    out: list[Text] = []
    for part in parts:
        if part:
            if out:
                out.append(Text())
            out.extend(part)
    return out


def summary(report: ParallelTestReport) -> list[Text]:
    """The session, its status, its counts, its coverage and its time, a line each."""
    head = Text(f"session {report.session_id}: ")
    head.append(report.status, style=STATUS_STYLE.get(report.status, "bold"))
    out = [head, Text(_tests_line(report))]
    cases = report.cases
    if cases.passed + cases.failed + cases.errors + cases.skipped:
        out.append(
            Text(
                f"cases: {cases.passed} passed, {cases.failed} failed, "
                f"{plural(cases.errors, 'error')}, {cases.skipped} skipped"
            )
        )
    out.extend(text_verdicts.coverage(report))
    out.append(
        Text(
            f"{seconds(report.duration_seconds)} wall on {plural(report.num_workers, 'worker')}"
            f", speedup {report.speedup:.2f}x, utilisation {report.worker_utilisation:.0%}"
        )
    )
    return out


def _tests_line(report: ParallelTestReport) -> str:
    """``12 of 16 tests passed; 2 failed, 1 timed out, 1 error; 1 flaky``: zero counts left out."""
    if not report.total_tests:
        return "no tests"
    line = f"{report.tests_passed} of {plural(report.total_tests, 'test')} passed"
    bad = [
        f"{report.tests_failed} failed" if report.tests_failed else "",
        f"{report.tests_timed_out} timed out" if report.tests_timed_out else "",
        plural(report.tests_errored, "error") if report.tests_errored else "",
        f"{report.tests_interrupted} interrupted" if report.tests_interrupted else "",
        f"{report.tests_cancelled} cancelled" if report.tests_cancelled else "",
        f"{report.tests_skipped} skipped" if report.tests_skipped else "",
        f"{_unfinished(report)} still to run" if _unfinished(report) else "",
    ]
    marks = [
        f"{report.tests_flaky} flaky" if report.tests_flaky else "",
        f"{report.tests_leaky} leaky" if report.tests_leaky else "",
        f"{report.tests_quarantined} quarantined" if report.tests_quarantined else "",
    ]
    for group in (bad, marks):
        if any(group):
            line += "; " + ", ".join(part for part in group if part)
    return line


def _unfinished(report: ParallelTestReport) -> int:
    """Tests not final yet (the report of a session still running)."""
    final = (
        report.tests_passed
        + report.tests_failed
        + report.tests_timed_out
        + report.tests_errored
        + report.tests_interrupted
        + report.tests_cancelled
        + report.tests_skipped
    )
    return max(0, report.total_tests - final)


def render(report: ParallelTestReport) -> str:
    """The terminal report as plain text (the ``text`` format)."""
    return "".join(line.plain + "\n" for line in lines(report))


def print_report(report: ParallelTestReport, console: Console) -> None:
    """Print the report; long lines wrap on a terminal, nothing is cut or padded."""
    for line in lines(report):
        console.print(line, soft_wrap=True, highlight=False)
