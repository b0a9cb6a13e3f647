"""Terminal rendering with rich: what failed, then the totals."""

from __future__ import annotations

import io

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from parallel_orch.report.model import ParallelTestReport, TestResult

STATUS_STYLE = {
    "passed": "green",
    "failed": "red",
    "timed_out": "magenta",
    "error": "red",
    "skipped": "yellow",
    "cancelled": "yellow",
    "interrupted": "yellow",
    "complete": "bold green",
    "partial_success": "bold yellow",
    "no_tests": "yellow",
}


def renderable(report: ParallelTestReport) -> Group:
    parts: list[Table | Text] = []
    problems = [t for t in report.completed_tests if t.status != "passed" or t.flaky or t.leaky]
    if problems:
        table = Table(title="Not clean", title_justify="left", expand=False)
        for column in ("test", "status", "attempts", "time", "detail"):
            table.add_column(column)
        for test in problems:
            label = test.status + "".join(f" ({flag})" for flag in _flags(test))
            final = test.attempts[-1] if test.attempts else None
            detail = test.error or (final.log_path if final else "")
            table.add_row(
                Text(test.test_id),  # user text: never markup
                Text(label, style=STATUS_STYLE.get(test.status, "")),
                str(len(test.attempts)),
                f"{test.duration_seconds:.2f}s" if test.duration_seconds is not None else "-",
                Text(detail),
            )
        parts.append(table)
    if len(report.categories) > 1:
        parts.append(_categories(report))
    summary = Text()
    summary.append(f"session {report.session_id}: ")
    summary.append(report.status, style=STATUS_STYLE.get(report.status, "bold"))
    summary.append(
        f"  {report.tests_passed}/{report.total_tests} passed"
        f", {report.tests_failed} failed, {report.tests_timed_out} timed out"
        f", {report.tests_errored} errors, {report.tests_cancelled} cancelled"
        f", {report.tests_flaky} flaky"
    )
    if report.tests_leaky:
        summary.append(f", {report.tests_leaky} leaky", style="yellow")
    cases = report.cases
    if cases.passed + cases.failed + cases.errors + cases.skipped:
        summary.append(
            f"\ncases: {cases.passed} passed, {cases.failed} failed, "
            f"{cases.errors} errors, {cases.skipped} skipped"
        )
    for line, style in _coverage_lines(report):
        summary.append("\n")
        summary.append(line, style=style)
    summary.append(
        f"\n{report.duration_seconds:.2f}s wall on {report.num_workers} workers"
        f", speedup {report.speedup:.2f}x, utilisation {report.worker_utilisation:.0%}"
    )
    for verdict in report.gates:
        mark = ("gate ok", "green") if verdict.passed else ("gate failed", "bold red")
        summary.append("\n")
        summary.append(mark[0], style=mark[1])
        summary.append(f": {verdict.name}: {verdict.reason}")
    parts.append(summary)
    return Group(*parts)


def _categories(report: ParallelTestReport) -> Table:
    cats = Table(title="By category", title_justify="left")
    for column in ("category", "total", "passed", "failed", "timed out", "errors", "flaky"):
        cats.add_column(column, justify="right" if column != "category" else "left")
    for name, c in report.categories.items():
        cats.add_row(
            Text(name),
            str(c.total),
            str(c.passed),
            str(c.failed),
            str(c.timed_out),
            str(c.errored),
            str(c.flaky),
        )
    return cats


def _coverage_lines(report: ParallelTestReport) -> list[tuple[str, str]]:
    """One line per commit: its combined coverage, or why there is none."""
    lines = []
    for c in report.coverage:
        files = _count(c.data_files, "data file")
        if c.error is not None:
            lines.append((f"coverage at {c.sha[:12]}: none: {c.error} ({files})", "yellow"))
            continue
        warned = f", {_count(len(c.warnings), 'warning')}" if c.warnings else ""
        lines.append(
            (
                f"coverage {c.percent:.1f}% at {c.sha[:12]}: {c.statements} statements, "
                f"{c.missing} missed, {_count(len(c.files), 'file')} ({files}{warned})",
                "",
            )
        )
    return lines


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _flags(test: TestResult) -> list[str]:
    return [name for name, on in (("flaky", test.flaky), ("leaky", test.leaky)) if on]


def render(report: ParallelTestReport, *, width: int = 120) -> str:
    buffer = io.StringIO()
    Console(width=width, file=buffer, color_system=None).print(renderable(report))
    return buffer.getvalue()


def print_report(report: ParallelTestReport, console: Console) -> None:
    console.print(renderable(report))
