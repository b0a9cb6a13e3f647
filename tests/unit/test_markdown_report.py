"""The Markdown report: a clear verdict, every section, escaped user text, never over 1 MiB.

Tables are read back with markdown-it-py (a CommonMark parser with GFM tables),
as GitHub would read them, not by searching the Markdown source.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from markdown_it import MarkdownIt
from markdown_it.token import Token

from parallel_orch.cli.outputs import Outputs
from parallel_orch.report.model import (
    AttemptResult,
    CaseCounts,
    Changes,
    CommitCoverage,
    Comparison,
    GateResult,
    ParallelTestReport,
    SlowerTest,
    SlowTest,
    StatusCounts,
    TestResult,
)
from parallel_orch.report.renderers import markdown
from parallel_orch.report.renderers.markdown_text import one_line

MIB = 1024 * 1024
NOW = datetime(2026, 1, 1, tzinfo=UTC)
HOSTILE_IDS = (
    "unit/pipe|in|id",
    "unit/<script>alert(1)</script>",
    "unit/`tick`` and \\| escaped",
    "unit/new\nline | # heading",
    "<img src=x onerror=alert(1)>",
)
HOSTILE_MESSAGE = "</td></tr><script>alert(2)</script> | [click](javascript:alert(3)) `x` &lt;"


def attempt(status: str, log_path: str, number: int = 1) -> AttemptResult:
    return AttemptResult(
        number=number,
        status=status,
        worker=0,
        worktree="/wt/0",
        exit_code=0 if status == "passed" else 1,
        started_at=NOW,
        completed_at=NOW,
        duration_seconds=1.5,
        log_path=log_path,
    )


def execution(
    test_id: str,
    status: str = "failed",
    *,
    category: str = "unit",
    first_error: str | None = None,
    log_path: str = "/state/logs/s/t.1.log",
    **extra: Any,
) -> TestResult:
    attempts = extra.pop("attempts", None) or (attempt(status, log_path),)
    return TestResult(
        test_id=test_id,
        status=status,
        flaky=extra.pop("flaky", False),
        category=category,
        ref="HEAD",
        sha="a" * 40,
        duration_seconds=1.5,
        first_error=first_error if status != "passed" else None,
        attempts=attempts,
        **extra,
    )


def report_of(tests: Sequence[TestResult], **extra: Any) -> ParallelTestReport:
    """A report over ``tests`` with their counts; ``extra`` sets any other field."""
    statuses = [t.status for t in tests]
    passed = statuses.count("passed")
    categories: dict[str, StatusCounts] = {}
    for name in sorted({t.category for t in tests}):
        mine = [t for t in tests if t.category == name]
        ok = sum(t.status == "passed" for t in mine)
        categories[name] = StatusCounts(
            total=len(mine), passed=ok, failed=len(mine) - ok, success_rate=ok / len(mine)
        )
    fields: dict[str, Any] = {
        "session_id": "s-now",
        "status": "complete" if passed == len(tests) else "partial_success",
        "started_at": NOW,
        "completed_at": NOW,
        "duration_seconds": 12.0,
        "total_tests": len(tests),
        "tests_passed": passed,
        "tests_failed": statuses.count("failed"),
        "tests_timed_out": 0,
        "tests_errored": 0,
        "tests_skipped": 0,
        "tests_cancelled": 0,
        "tests_flaky": sum(t.flaky for t in tests),
        "success_rate": passed / len(tests) if tests else 0.0,
        "num_workers": 4,
        "categories": categories,
        "completed_tests": tuple(tests),
        "failed_tests": tuple(t.test_id for t in tests if t.status == "failed"),
        "tests_quarantined": sum(bool(t.quarantine) for t in tests),
        "quarantined_tests": tuple(t.test_id for t in tests if t.quarantine),
        "report_hash": "h",
    }
    fields.update(extra)
    return ParallelTestReport(**fields)


def tables(text: str) -> dict[str, list[list[list[Token]]]]:
    """Each table under a heading, by the heading's text: its body rows, as cells' tokens."""
    found: dict[str, list[list[list[Token]]]] = {}
    heading = ""
    rows: list[list[list[Token]]] = []
    tokens = MarkdownIt("commonmark", {"html": True}).enable("table").parse(text)
    for index, token in enumerate(tokens):
        if token.type == "heading_open":
            heading = tokens[index + 1].content
        elif token.type == "tbody_open":
            rows = found.setdefault(heading, [])
        elif token.type == "tr_open" and tokens[index - 1].type != "thead_open":
            rows.append([])
        elif token.type == "inline" and tokens[index - 1].type == "td_open":
            rows[-1].append(token.children or [])
    return found


def cell_text(cell: list[Token]) -> str:
    """What a reader sees in a cell: its text and code, markup and HTML aside."""
    return "".join(t.content for t in cell if t.type in ("text", "code_inline"))


def html_of(text: str) -> str:
    """The HTML a renderer that lets raw HTML through (as GitHub does, sanitised) makes."""
    page: str = MarkdownIt("commonmark", {"html": True}).enable("table").render(text)
    return page


def huge_report(tests: int) -> ParallelTestReport:
    """``tests`` failing tests with long, hostile messages and long paths, all compared."""
    message = ("AssertionError: expected | got <b>" + "x" * 200 + " ") * 50
    results = [
        execution(
            f"suite/part{i // 1000}::test_{i}_" + "n" * 80,
            first_error=message,
            log_path=f"/state/logs/{'d' * 200}/test_{i}.1.log",
        )
        for i in range(tests)
    ]
    ids = tuple(t.test_id for t in results)
    slower = tuple(SlowerTest(test_id=i, before_seconds=1, after_seconds=9) for i in ids)
    changes = Changes(
        new_failures=ids, still_failing=ids, slower=slower, added=ids, removed=ids, fixed=ids
    )
    return report_of(
        results,
        status="failed",
        comparison=Comparison(baseline_session_id="s-before", tests=changes, cases=changes),
        slowest_tests=tuple(SlowTest(test_id=i, duration_seconds=1.5) for i in ids[:10]),
        coverage=tuple(
            CommitCoverage(sha=f"{n:040x}", percent=50.0, statements=10, missing=5)
            for n in range(500)
        ),
    )


def test_a_huge_failing_session_stays_under_a_mebibyte_and_says_how_many_more() -> None:
    """20,000 failing tests with long messages: under 1 MiB, every long list ends in
    "and N more", and shown + N is everything."""
    text = markdown.render(huge_report(20_000))
    assert len(text.encode()) <= MIB
    failed = tables(text)["Failed tests (20000)"]
    more = re.search(r"^and (\d+) more failed tests$", text, re.M)
    assert more is not None and len(failed) + int(more[1]) == 20_000
    assert all(len(row) == 6 for row in failed)
    for label in ("New failures", "Still failing", "Slower", "Added", "Removed", "Fixed"):
        counts = re.findall(
            rf"^\*\*{label}\*\* \(20000\): .*, and (\d+) more (tests|cases)$", text, re.M
        )
        assert [kind for _, kind in counts] == ["tests", "cases"], label
    assert re.search(r"^and \d+ more commits$", text, re.M)


def test_hostile_test_names_and_messages_stay_inside_their_cells() -> None:
    """Pipes, backticks, newlines and HTML in ids and messages neither add a cell nor
    reach the page as HTML: each cell reads back as the text it was given."""
    tests = [
        execution(i, first_error=HOSTILE_MESSAGE, log_path=f"/logs/{i}.log") for i in HOSTILE_IDS
    ]
    text = markdown.render(report_of(tests))
    rows = tables(text)["Failed tests (5)"]
    assert [len(row) for row in rows] == [6] * 5
    assert [cell_text(row[0]) for row in rows] == [one_line(i, 300) for i in HOSTILE_IDS]
    assert {cell_text(row[4]) for row in rows} == {HOSTILE_MESSAGE}
    assert [cell_text(row[5]) for row in rows] == [
        one_line(f"/logs/{i}.log", 1000) for i in HOSTILE_IDS
    ]
    page = html_of(text)
    assert not re.search(r"<(script|img|a)\b", page), page


@pytest.mark.parametrize("fraction", [0.99, 0.6, 0.3])
def test_the_final_check_drops_whole_sections_and_never_cuts_a_line(fraction: float) -> None:
    """Asked for less room than the report needs, whole sections go, least useful first,
    and a last line says which; every line left is a line of the whole report."""
    report = huge_report(300)
    full = markdown.render(report)
    limit = int(len(full.encode()) * fraction)
    short = markdown.render(report, limit_bytes=limit)
    assert len(short.encode()) <= limit
    *lines, note = short.splitlines()
    assert set(lines) <= set(full.splitlines())
    assert lines[0] == "## parallel-orch: FAILED"
    prefix = "Left out to stay within GitHub's 1 MiB limit: "
    assert note.startswith(prefix)
    dropped = note.removeprefix(prefix).removesuffix(".").split(", ")
    present = ["coverage", "slowest", "case changes", "comparison", "failed"]
    assert dropped == present[: len(dropped)]
    headings = {
        "coverage": "### Coverage",
        "slowest": "### Slowest tests",
        "case changes": "### Cases compared",
        "comparison": "### Compared with session `s-before`",
        "failed": "### Failed tests (300)",
    }
    assert {n for n, h in headings.items() if h in lines} == set(present) - set(dropped)


def test_no_room_for_the_status_line_renders_nothing() -> None:
    """Below the size of the verdict itself there is nothing to write, not half of it."""
    assert markdown.render(report_of([execution("a", "passed")]), limit_bytes=100) == ""


@pytest.mark.parametrize(
    ("tests", "extra", "verdict", "why"),
    [
        ([execution("a", "passed")], {}, "PASSED", "1 of 1 test passed."),
        (
            [execution("a", "passed"), execution("b", first_error="boom")],
            {},
            "FAILED",
            "1 of 2 tests passed.",
        ),
        (
            [execution("a", "passed")],
            {
                "gates": (
                    GateResult(
                        name="max_duration",
                        target=5.0,
                        actual=12.0,
                        passed=False,
                        reason="12.0s wall > 5s",
                    ),
                ),
                "gates_passed": False,
            },
            "FAILED",
            "1 of 1 test passed; 0 of 1 gate held (failed: `max_duration`).",
        ),
        (
            [execution("a", "passed"), execution("q", quarantine="flaky upstream")],
            {},
            "PASSED",
            "1 of 1 test passed; 1 quarantined test did not pass (quarantined tests gate nothing).",
        ),
        (
            [execution("a", "cancelled")],
            {"status": "cancelled"},
            "CANCELLED",
            "0 of 1 test passed.",
        ),
        (
            [execution("a", "running")],
            {"status": "running"},
            "RUNNING",
            "0 of 1 test passed; the session is still running: this is its report so far.",
        ),
    ],
)
def test_the_status_line_gives_a_plain_verdict_and_what_it_rests_on(
    tests: list[TestResult], extra: dict[str, Any], verdict: str, why: str
) -> None:
    """The first lines: a one-word verdict (exit code, gates and quarantine taken into
    account, no emoji) and the counts it rests on."""
    lines = markdown.render(report_of(tests, **extra)).splitlines()
    assert lines[:3] == [f"## parallel-orch: {verdict}", "", why]
    assert lines[4].startswith("Session `s-now`, status ")


def test_quarantined_failures_are_reported_in_their_own_section_only() -> None:
    """A quarantined failure is listed, with its reason and error, under quarantine, not
    under failed tests."""
    tests = [
        execution("unit/ok", "passed"),
        execution("unit/known", first_error="still broken", quarantine="bug 12 | upstream"),
    ]
    found = tables(markdown.render(report_of(tests)))
    assert not any(title.startswith("Failed tests") for title in found)
    [row] = found["Quarantined tests (1): reported, but they gate nothing"]
    assert [cell_text(c) for c in row[:4]] == [
        "unit/known",
        "failed",
        "bug 12 | upstream",
        "still broken",
    ]


def test_categories_show_their_gates_and_every_gate_is_listed() -> None:
    """The category table shows each category's pass-rate gate verdict; the gate table
    shows every gate's target, actual value, result and reason."""
    tests = [
        execution("u1", "passed"),
        execution("u2", first_error="x"),
        execution("e", "passed", category="e2e"),
    ]
    gates = (
        GateResult(
            name="min_pass_rate[unit]",
            target=0.98,
            actual=0.5,
            passed=False,
            reason="unit tests: 50.0% passed < 98.0% (2 tests)",
        ),
        GateResult(
            name="max_flaky", target=2, actual=0, passed=True, reason="0 flaky <= 2 allowed"
        ),
    )
    found = tables(markdown.render(report_of(tests, gates=gates, gates_passed=False)))
    assert [[cell_text(c) for c in row] for row in found["Categories"]] == [
        ["e2e", "1", "1", "0", "0", "0", "0", "100.0%", "-"],
        ["unit", "2", "1", "1", "0", "0", "0", "50.0%", "FAILED (target 98.0%)"],
    ]
    assert [[cell_text(c) for c in row] for row in found["Gates: 1 of 2 failed"]] == [
        [
            "min_pass_rate[unit]",
            "98.0%",
            "50.0%",
            "FAILED",
            "unit tests: 50.0% passed < 98.0% (2 tests)",
        ],
        ["max_flaky", "2", "0", "passed", "0 flaky <= 2 allowed"],
    ]


def test_flaky_and_slowest_tests_are_listed() -> None:
    """Flaky tests with the log of their failed attempt; the slowest ten with their times."""
    flaky = execution(
        "unit/flip",
        "passed",
        flaky=True,
        attempts=(attempt("failed", "/logs/flip.1.log"), attempt("passed", "/logs/flip.2.log", 2)),
    )
    slowest = tuple(SlowTest(test_id=f"t{n}", duration_seconds=20.0 - n) for n in range(12))
    found = tables(markdown.render(report_of([flaky], slowest_tests=slowest)))
    [row] = found["Flaky tests (1): failed, then passed on a retry"]
    assert [cell_text(c) for c in row] == ["unit/flip", "2", "1.50s", "/logs/flip.1.log"]
    assert [cell_text(r[0]) for r in found["Slowest tests"]] == [f"t{n}" for n in range(10)]


def test_the_comparison_lists_tests_and_cases_that_changed() -> None:
    """Against the baseline: counts of each change, then which tests and which cases."""
    comparison = Comparison(
        baseline_session_id="s-before",
        tests=Changes(
            new_failures=("unit/b",),
            fixed=("unit/c",),
            slower=(SlowerTest(test_id="unit/d", before_seconds=1.0, after_seconds=3.5),),
            removed=("unit/gone",),
        ),
        cases=Changes(still_failing=("unit/b::mod.Test::test_x",)),
    )
    tests = [execution("unit/b", first_error="x"), execution("unit/c", "passed")]
    text = markdown.render(report_of(tests, comparison=comparison))
    assert "### Compared with session `s-before`" in text
    assert "**New failures** (1): `unit/b`\n" in text
    assert "**Slower** (1): `unit/d` (1.00s to 3.50s)\n" in text
    assert "**Removed** (1): `unit/gone`\n" in text
    assert "### Cases compared\n" in text
    assert "**Still failing** (1): `unit/b::mod.Test::test_x`\n" in text
    assert "**Fixed**" not in text.split("### Cases compared")[1]


def test_coverage_totals_are_shown_only_when_measured() -> None:
    """Coverage per commit when a plan measured it, with why a commit could not be combined;
    no coverage section otherwise."""
    tests = [execution("a", "passed")]
    assert "Coverage" not in markdown.render(report_of(tests))
    coverage = (
        CommitCoverage(sha="b" * 40, percent=87.5, statements=80, missing=10),
        CommitCoverage(sha="c" * 40, percent=0, statements=0, missing=0, error="no data <files>"),
    )
    found = tables(markdown.render(report_of(tests, coverage=coverage)))
    assert [[cell_text(c) for c in row] for row in found["Coverage"]] == [
        ["b" * 12, "87.5%", "80", "10", "0"],
        ["c" * 12, "-", "-", "-", "not combined: no data <files>"],
    ]


def test_junit_case_totals_are_counted() -> None:
    """Parsed JUnit cases are counted under the test counts."""
    report = report_of(
        [execution("a", "passed")], cases=CaseCounts(passed=40, failed=2, errors=1, skipped=3)
    )
    assert "JUnit cases: 40 passed, 2 failed, 1 error, 3 skipped." in markdown.render(report)


def test_the_step_summary_gets_what_the_limit_leaves(tmp_path: Path) -> None:
    """Appended to a step summary that already holds text, the whole stays within 1 MiB;
    with no room even for the verdict, the file is left as it was."""
    summary = tmp_path / "summary.md"
    before = "an earlier step's text, without a final newline " * 20_000
    summary.write_text(before)
    Outputs(step_summary=summary).write(huge_report(2000))
    after = summary.read_text()
    assert after.startswith(before + "\n## parallel-orch: FAILED\n")
    assert len(after.encode()) <= MIB
    assert after.splitlines()[-1].startswith("Left out to stay within GitHub's 1 MiB limit: ")
    full = tmp_path / "full.md"
    full.write_text("x" * (MIB - 200))
    Outputs(step_summary=full).write(huge_report(10))
    assert full.read_text() == "x" * (MIB - 200)


def test_a_tests_notes_are_listed_and_go_before_the_failures_when_room_is_short() -> None:
    """A Notes section lists a passing test's notes; at every size down to the verdict's,
    the summary renders, and Notes is dropped before Failed is."""
    noted = execution("suite", "passed", notes=("2 of 2 shards (s[1/2], s[2/2]): did not shard",))
    report = report_of([noted, execution("b", first_error="boom")])
    full = markdown.render(report)
    assert "### Notes (1)" in full and "did not shard" in full
    for limit in range(len(full.encode()), 0, -25):
        short = markdown.render(report, limit_bytes=limit)
        assert len(short.encode()) <= limit
        if "### Notes (1)" in short:
            assert "### Failed tests (1)" in short, limit
