"""Markdown for ``$GITHUB_STEP_SUMMARY`` and ``--markdown FILE``: the verdict first.

GitHub refuses a step summary over 1 MiB, so this never writes more, whatever
the session's size. Every section is bounded by construction, in rows and in
bytes, and ends in "and N more" (the budgets below add up to well under the
limit); then a final check drops whole sections, least useful first, while the
document is over the limit asked for (a step summary may already hold text).
A line is never cut. User text goes through :mod:`markdown_text`: escaped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from parallel_orch.models import ExecutionStatus, SessionStatus
from parallel_orch.report.gates import EXIT_OK, exit_code
from parallel_orch.report.model import ParallelTestReport
from parallel_orch.report.renderers import markdown_sections as sections
from parallel_orch.report.renderers import markdown_text as md

MAX_BYTES = 1024 * 1024  # GitHub's limit on one step's summary

#: The sections the final check may drop, in the order it drops them.
DROP_ORDER = (
    "coverage",
    "slowest",
    "notes",
    "case changes",
    "flaky",
    "categories",
    "quarantined",
    "comparison",
    "failed",
    "gates",
)

_STOPPED = frozenset({SessionStatus.CANCELLED, SessionStatus.INTERRUPTED})


@dataclass(frozen=True, slots=True)
class Section:
    name: str
    text: str


def render(report: ParallelTestReport, *, limit_bytes: int = MAX_BYTES) -> str:
    """``report`` as Markdown of at most ``limit_bytes`` UTF-8 bytes (and never over
    :data:`MAX_BYTES`); "" if not even its status line fits."""
    details = (
        ("categories", sections.categories),
        ("gates", sections.gates),
        ("failed", sections.failed),
        ("flaky", sections.flaky),
        ("quarantined", sections.quarantined),
        ("notes", sections.notes),
        ("comparison", sections.comparison),
        ("case changes", sections.case_changes),
        ("slowest", sections.slowest),
        ("coverage", sections.coverage),
    )
    parts = [Section("status", _status(report)), Section("counts", _counts(report))]
    parts += [Section(name, text) for name, make in details if (text := make(report))]
    return fit(parts, min(limit_bytes, MAX_BYTES))


def fit(sections: Sequence[Section], limit: int) -> str:
    """The sections, blank-line separated, dropping whole ones in :data:`DROP_ORDER` until
    the document fits in ``limit`` bytes; a last line names those dropped."""
    sizes = {s.name: len(s.text.encode()) + 2 for s in sections}
    kept = [s.name for s in sections]
    dropped: list[str] = []
    order = [name for name in (*DROP_ORDER, "counts", "status") if name in sizes]
    while kept and sum(sizes[n] for n in kept) + _note_bytes(dropped) > limit:
        name = order.pop(0)
        kept.remove(name)
        dropped.append(name)
    if "status" not in kept:
        return ""
    texts = [s.text for s in sections if s.name in kept]
    if dropped:
        texts.append(_note(dropped))
    return "\n\n".join(texts) + "\n"


def _note(dropped: Sequence[str]) -> str:
    return f"Left out to stay within GitHub's 1 MiB limit: {', '.join(dropped)}."


def _note_bytes(dropped: Sequence[str]) -> int:
    return len(_note(dropped).encode()) + 2 if dropped else 0


def verdict(report: ParallelTestReport) -> str:
    """One word or two: PASSED, FAILED, RUNNING, CANCELLED, INTERRUPTED, NO TESTS."""
    status = report.status
    if status == SessionStatus.RUNNING or status in _STOPPED:
        return status.upper()
    if status == SessionStatus.NO_TESTS:
        return "NO TESTS"
    return "PASSED" if exit_code(report) == EXIT_OK else "FAILED"


def _status(report: ParallelTestReport) -> str:
    return (
        f"## parallel-orch: {verdict(report)}\n\n"
        f"{'; '.join(_reasons(report))}.\n\n"
        f"Session {md.code(report.session_id, 100, cell=False)}, status `{report.status}`: "
        f"{report.duration_seconds:.1f}s wall on {md.count(report.num_workers, 'worker')}, "
        f"speedup {report.speedup:.2f}x, utilisation {report.worker_utilisation:.0%}."
    )


def _reasons(report: ParallelTestReport) -> list[str]:
    """What the verdict rests on: tests, gates, quarantined tests."""
    gated = [t for t in report.completed_tests if not t.quarantine]
    passed = sum(t.status == ExecutionStatus.PASSED for t in gated)
    skipped = sum(t.status == ExecutionStatus.SKIPPED for t in gated)
    reasons = [
        f"{passed} of {md.count(len(gated), 'test')} passed"
        + (f", {skipped} skipped" if skipped else "")
    ]
    if report.gates:
        failed = [g.name for g in report.gates if not g.passed]
        held = f"{len(report.gates) - len(failed)} of {md.count(len(report.gates), 'gate')} held"
        if failed:
            names = ", ".join(md.code(name, cell=False) for name in failed[:3])
            more = f" and {len(failed) - 3} more" if len(failed) > 3 else ""
            held += f" (failed: {names}{more})"
        reasons.append(held)
    quarantined = [t for t in report.completed_tests if t.quarantine]
    bad = sum(
        t.status not in (ExecutionStatus.PASSED, ExecutionStatus.SKIPPED) for t in quarantined
    )
    if bad:
        reasons.append(
            f"{md.count(bad, 'quarantined test')} did not pass (quarantined tests gate nothing)"
        )
    if report.status == SessionStatus.RUNNING:
        reasons.append("the session is still running: this is its report so far")
    return reasons


def _counts(report: ParallelTestReport) -> str:
    columns = (
        *("tests", "passed", "failed", "timed out", "errors", "skipped", "cancelled"),
        *("interrupted", "flaky", "quarantined", "pass rate"),
    )
    values = (
        report.total_tests,
        report.tests_passed,
        report.tests_failed,
        report.tests_timed_out,
        report.tests_errored,
        report.tests_skipped,
        report.tests_cancelled,
        report.tests_interrupted,
        report.tests_flaky,
        report.tests_quarantined,
    )
    lines = [
        *md.table_head(*columns, right=range(len(columns))),
        md.row(*(str(v) for v in values), f"{report.success_rate:.1%}"),
    ]
    cases = report.cases
    if cases.passed + cases.failed + cases.errors + cases.skipped:
        lines += [
            "",
            f"JUnit cases: {cases.passed} passed, {cases.failed} failed, "
            f"{md.count(cases.errors, 'error')}, {cases.skipped} skipped.",
        ]
    stats = report.duration_stats
    if stats.sum:
        lines += [
            "",
            f"Test durations: mean {md.seconds(stats.mean)}, p50 {md.seconds(stats.p50)}, "
            f"p95 {md.seconds(stats.p95)}, p99 {md.seconds(stats.p99)}, "
            f"max {md.seconds(stats.max)}; {md.seconds(stats.sum)} in all.",
        ]
    return "\n".join(lines)
