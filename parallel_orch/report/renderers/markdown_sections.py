"""The detail sections of the Markdown report: categories, gates, failed, flaky and
quarantined tests, notes, the comparison, the slowest tests, coverage.

Each is bounded by construction, in rows and in bytes, whatever the user text, and
its list ends in "and N more" for what it left out; each is "" when it has nothing
to say.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from parallel_orch.models import ExecutionStatus
from parallel_orch.report.model import Changes, ParallelTestReport, TestResult
from parallel_orch.report.renderers import markdown_text as md
from parallel_orch.report.renderers.words import gate_value

# Rows and bytes per section, at most: under 900 KB in all whatever the user text.
CATEGORY_LIMITS = (50, 50_000)
GATE_LIMITS = (50, 50_000)
FAILED_LIMITS = (100, 300_000)
FLAKY_LIMITS = (50, 60_000)
QUARANTINED_LIMITS = (50, 60_000)
NOTES_LIMITS = (50, 60_000)
CHANGE_LIMITS = (50, 20_000)  # per list of a comparison: 7 lists for tests, 7 for cases
SLOWEST_LIMITS = (10, 20_000)
COVERAGE_LIMITS = (20, 20_000)

_FAILING = frozenset(
    {
        ExecutionStatus.FAILED,
        ExecutionStatus.TIMED_OUT,
        ExecutionStatus.ERROR,
        ExecutionStatus.INTERRUPTED,
    }
)
_CHANGES = (  # Changes' fields, and their labels
    ("new_failures", "New failures"),
    ("fixed", "Fixed"),
    ("still_failing", "Still failing"),
    ("newly_flaky", "Newly flaky"),
    ("slower", "Slower"),
    ("added", "Added"),
    ("removed", "Removed"),
)


def _table(
    head: Sequence[str],
    make: Callable[[TestResult], str],
    items: Sequence[TestResult],
    what: str,
    limits: tuple[int, int],
) -> str:
    rows, size = limits
    lines = md.bounded(head, map(make, items), len(items), what, max_lines=rows, max_bytes=size)
    return "\n".join(lines)


def categories(report: ParallelTestReport) -> str:
    """Counts per category, and the verdict of the category's pass-rate gate; "" for a
    single category without a gate, whose counts are the session's."""
    gates = {g.name: g for g in report.gates}
    gated = any(f"min_pass_rate[{name}]" in gates for name in report.categories)
    if len(report.categories) < 2 and not gated:
        return ""
    columns = ("category", "tests", "passed", "failed", "timed out", "errors", "flaky")
    head = [
        "### Categories",
        "",
        *md.table_head(*columns, "pass rate", "gate", right=range(1, len(columns) + 1)),
    ]

    def line(name: str) -> str:
        c = report.categories[name]
        gate = gates.get(f"min_pass_rate[{name}]")
        verdict = "-"
        if gate is not None:
            held = "held" if gate.passed else "FAILED"
            verdict = f"{held} (target {gate_value(gate.name, gate.target)})"
        counts = (c.total, c.passed, c.failed, c.timed_out, c.errored, c.flaky)
        return md.row(md.code(name), *map(str, counts), f"{c.success_rate:.1%}", verdict)

    rows, size = CATEGORY_LIMITS
    names = list(report.categories)
    lines = md.bounded(
        head, map(line, names), len(names), "categories", max_lines=rows, max_bytes=size
    )
    return "\n".join(lines)


def gates(report: ParallelTestReport) -> str:
    """Each gate: target, actual, passed or not, and why."""
    if not report.gates:
        return ""
    failed = sum(not g.passed for g in report.gates)
    title = f"{failed} of {len(report.gates)} failed" if failed else "all held"
    head = [
        f"### Gates: {title}",
        "",
        *md.table_head("gate", "target", "actual", "result", "reason"),
    ]
    lines = (
        md.row(
            md.code(g.name),
            gate_value(g.name, g.target),
            gate_value(g.name, g.actual),
            "passed" if g.passed else "FAILED",
            md.text(g.reason),
        )
        for g in report.gates
    )
    rows, size = GATE_LIMITS
    total = len(report.gates)
    return "\n".join(md.bounded(head, lines, total, "gates", max_lines=rows, max_bytes=size))


def _log(test: TestResult) -> str:
    final = test.attempts[-1] if test.attempts else None
    return md.code(final.log_path, md.PATH_CHARS) if final and final.log_path else "-"


def failed(report: ParallelTestReport) -> str:
    """Tests that failed, timed out, errored or were interrupted (quarantined ones aside)."""
    tests = [t for t in report.completed_tests if t.status in _FAILING and not t.quarantine]
    if not tests:
        return ""
    columns = ("test", "status", "attempts", "time", "first error", "log")
    head = [f"### Failed tests ({len(tests)})", "", *md.table_head(*columns, right=(2, 3))]

    def line(t: TestResult) -> str:
        return md.row(
            md.code(t.test_id),
            t.status,
            str(len(t.attempts)),
            md.seconds(t.duration_seconds),
            md.text(t.first_error or "-"),
            _log(t),
        )

    return _table(head, line, tests, "failed tests", FAILED_LIMITS)


def flaky(report: ParallelTestReport) -> str:
    """Tests that failed, then passed on a retry; the log of their first failure."""
    tests = [t for t in report.completed_tests if t.flaky and not t.quarantine]
    if not tests:
        return ""
    columns = ("test", "attempts", "time", "log of the first failed attempt")
    head = [
        f"### Flaky tests ({len(tests)}): failed, then passed on a retry",
        "",
        *md.table_head(*columns, right=(1, 2)),
    ]

    def line(t: TestResult) -> str:
        first = next((a for a in t.attempts if a.status != ExecutionStatus.PASSED), None)
        log = md.code(first.log_path, md.PATH_CHARS) if first and first.log_path else "-"
        return md.row(md.code(t.test_id), str(len(t.attempts)), md.seconds(t.duration_seconds), log)

    return _table(head, line, tests, "flaky tests", FLAKY_LIMITS)


def quarantined(report: ParallelTestReport) -> str:
    """Quarantined tests, however they ended: reported, but they gate nothing."""
    tests = [t for t in report.completed_tests if t.quarantine]
    if not tests:
        return ""
    head = [
        f"### Quarantined tests ({len(tests)}): reported, but they gate nothing",
        "",
        *md.table_head("test", "status", "why quarantined", "first error", "log"),
    ]

    def line(t: TestResult) -> str:
        return md.row(
            md.code(t.test_id),
            t.status + (" (flaky)" if t.flaky else ""),
            md.text(t.quarantine or "-"),
            md.text(t.first_error or "-"),
            _log(t),
        )

    return _table(head, line, tests, "quarantined tests", QUARANTINED_LIMITS)


def notes(report: ParallelTestReport) -> str:
    """What a reader should know about a test whatever its status: a runner that ignored
    its shards, shards whose cases were not read."""
    tests = [t for t in report.completed_tests if t.notes]
    if not tests:
        return ""
    head = [f"### Notes ({len(tests)})", "", *md.table_head("test", "status", "note")]

    def line(t: TestResult) -> str:
        return md.row(md.code(t.test_id), t.status, md.text("; ".join(t.notes)))

    return _table(head, line, tests, "tests with notes", NOTES_LIMITS)


def comparison(report: ParallelTestReport) -> str:
    """How this session's tests differ from the baseline's."""
    cmp = report.comparison
    if cmp is None:
        return ""
    baseline = md.code(cmp.baseline_session_id, 100, cell=False)
    return _changes(f"Compared with session {baseline}", cmp.tests, "tests")


def case_changes(report: ParallelTestReport) -> str:
    """How the JUnit cases differ from the baseline's, where both sides parsed them."""
    cmp = report.comparison
    if cmp is None or cmp.cases is None:
        return ""
    return _changes("Cases compared", cmp.cases, "cases")


def _changes(title: str, changes: Changes, what: str) -> str:
    """One level of a comparison: how many changed which way, then which."""
    totals = [len(getattr(changes, key)) for key, _ in _CHANGES]
    lines = [f"### {title}", ""]
    if not any(totals):
        return "\n".join(
            [*lines, f"No {what} changed outcome or got slower; none were added or removed."]
        )
    lines += [
        *md.table_head(*(label.lower() for _, label in _CHANGES), right=range(len(_CHANGES))),
        md.row(*map(str, totals)),
    ]
    rows, size = CHANGE_LIMITS
    slower = [
        f"{md.code(s.test_id, cell=False)} ({s.before_seconds:.2f}s to {s.after_seconds:.2f}s)"
        for s in changes.slower[:rows]
    ]
    for (key, label), total in zip(_CHANGES, totals, strict=True):
        if total:
            items = slower if key == "slower" else getattr(changes, key)
            line = md.inline_list(
                label,
                items,
                what,
                total=total,
                max_items=rows,
                max_bytes=size,
                rendered=key == "slower",
            )
            lines += ["", line]
    return "\n".join(lines)


def slowest(report: ParallelTestReport) -> str:
    """The ten slowest tests."""
    if not report.slowest_tests:
        return ""
    head = ["### Slowest tests", "", *md.table_head("test", "time", right=(1,))]
    lines = (
        md.row(md.code(s.test_id), md.seconds(s.duration_seconds)) for s in report.slowest_tests
    )
    rows, size = SLOWEST_LIMITS
    total = len(report.slowest_tests)
    return "\n".join(md.bounded(head, lines, total, "tests", max_lines=rows, max_bytes=size))


def coverage(report: ParallelTestReport) -> str:
    """Coverage totals per commit."""
    if not report.coverage:
        return ""
    columns = ("commit", "coverage", "statements", "missing", "files")
    head = ["### Coverage", "", *md.table_head(*columns, right=(1, 2, 3, 4))]
    lines = (
        md.row(md.code(c.sha[:12]), "-", "-", "-", f"not combined: {md.text(c.error)}")
        if c.error is not None
        else md.row(
            md.code(c.sha[:12]),
            f"{c.percent:.1f}%",
            str(c.statements),
            str(c.missing),
            str(len(c.files)),
        )
        for c in report.coverage
    )
    rows, size = COVERAGE_LIMITS
    total = len(report.coverage)
    return "\n".join(md.bounded(head, lines, total, "commits", max_lines=rows, max_bytes=size))
