"""The terminal report's verdicts: per category, against the baseline, and the gates."""

from __future__ import annotations

from rich.text import Text

from parallel_orch.report.model import Changes, Comparison, GateResult, ParallelTestReport
from parallel_orch.report.renderers.words import columns, plural, seconds

MAX_CHANGES = 10  # ids listed per kind of change; the rest are counted

_CATEGORY_COLUMNS = ("category", "tests", "passed", "failed", "timed out", "errors", "flaky")


def categories(report: ParallelTestReport) -> list[Text]:
    """A table of counts per category (only when there are several)."""
    if len(report.categories) < 2:
        return []
    rows = [list(_CATEGORY_COLUMNS)]
    for name, c in report.categories.items():
        counts = (c.total, c.passed, c.failed, c.timed_out, c.errored, c.flaky)
        rows.append([name, *(str(n) for n in counts)])
    table = columns(rows, right=range(1, len(_CATEGORY_COLUMNS)))
    return [
        Text("By category", style="bold"),
        Text("  " + table[0], style="dim"),
        *(Text("  " + line) for line in table[1:]),
    ]


# (field of Changes, singular noun, plural noun) in the order they are listed
_KINDS = (
    ("new_failures", "new failure", "new failures"),
    ("still_failing", "still failing", "still failing"),
    ("newly_flaky", "newly flaky", "newly flaky"),
    ("fixed", "fixed", "fixed"),
    ("slower", "slower", "slower"),
    ("added", "new test", "new tests"),
    ("removed", "removed test", "removed tests"),
)
_LABEL_WIDTH = max(len(kind[1]) for kind in _KINDS)


def comparison(found: Comparison | None) -> list[Text]:
    """What changed since the baseline session, tests then cases."""
    if found is None:
        return []
    head = Text(f"Compared with session {found.baseline_session_id}", style="bold")
    tests = _counts(found.tests)
    if not tests and not (found.cases and _counts(found.cases)):
        head.append(": no changes")
        return [head]
    head.append(f": {tests}" if tests else "")
    lines = [head, *_changes(found.tests)]
    if found.cases is not None and _counts(found.cases):
        lines.append(Text(f"  cases: {_counts(found.cases)}"))
        lines.extend(_changes(found.cases))
    return lines


def _counts(changes: Changes) -> str:
    parts = []
    for field, one, many in _KINDS:
        count = len(getattr(changes, field))
        if count:
            parts.append(f"{count} {one if count == 1 else many}")
    return ", ".join(parts)


def _changes(changes: Changes) -> list[Text]:
    lines = []
    for field, one, _ in _KINDS:
        items = getattr(changes, field)
        for item in items[:MAX_CHANGES]:
            style = "red" if field in ("new_failures", "still_failing") else ""
            line = Text("  " + one.ljust(_LABEL_WIDTH) + "  ")
            if field == "slower":
                line.append(item.test_id, style=style)
                line.append(f"  {seconds(item.before_seconds)} -> {seconds(item.after_seconds)}")
            else:
                line.append(item, style=style)  # user text: a Text, never markup
            if field == "fixed":
                line.stylize("green")
            lines.append(line)
        if len(items) > MAX_CHANGES:
            more = f"and {len(items) - MAX_CHANGES} more"
            lines.append(Text("  " + " " * _LABEL_WIDTH + "  " + more, style="dim"))
    return lines


def gates(verdicts: tuple[GateResult, ...]) -> list[Text]:
    """The gates' verdicts, one line each under a line that says whether they all held."""
    if not verdicts:
        return []
    failed = sum(not v.passed for v in verdicts)
    if failed:
        head = Text(f"Gates: {failed} of {len(verdicts)} failed", style="bold red")
    else:
        held = "held" if len(verdicts) == 1 else f"all {len(verdicts)} held"
        head = Text(f"Gates: {held}", style="bold green")
    lines = [head]
    for verdict in verdicts:
        line = Text("  ")
        if verdict.passed:
            line.append("gate ok", style="green")
        else:
            line.append("gate failed", style="bold red")
        line.append(f": {verdict.name}: {verdict.reason}")
        lines.append(line)
    return lines


def coverage(report: ParallelTestReport) -> list[Text]:
    """One line per commit: its combined coverage, or why there is none."""
    lines = []
    for c in report.coverage:
        files = plural(c.data_files, "data file")
        if c.error is not None:
            lines.append(Text(f"coverage at {c.sha[:12]}: none: {c.error} ({files})", "yellow"))
            continue
        warned = f", {plural(len(c.warnings), 'warning')}" if c.warnings else ""
        lines.append(
            Text(
                f"coverage {c.percent:.1f}% at {c.sha[:12]}: {c.statements} statements, "
                f"{c.missing} missed, {plural(len(c.files), 'file')} ({files}{warned})"
            )
        )
    return lines
