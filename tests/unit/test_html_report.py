"""The HTML report: self-contained, escaped, readable without script, bounded at 20,000 tests."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import lxml.html

from parallel_orch.report.model import (
    AttemptResult,
    Changes,
    CommitCoverage,
    Comparison,
    FileCoverage,
    GateResult,
    ParallelTestReport,
    SlowerTest,
    StatusCounts,
    TestResult,
)
from parallel_orch.report.renderers import html, html_charts
from tests.reports import START, synthetic_report

TAIL = "boom\nE  KeyError: 'x'\n"
HOSTILE = "</script><script>alert(1)</script><!--"


def attempt(number: int, status: str, *, at: float, seconds: float, **extra: Any) -> AttemptResult:
    started = START + timedelta(seconds=at)
    return AttemptResult(
        number=number,
        status=status,
        worker=extra.pop("worker", 0),
        worktree="wt-0",
        exit_code=0 if status == "passed" else 1,
        started_at=started,
        completed_at=started + timedelta(seconds=seconds),
        duration_seconds=seconds,
        log_path=f"/state/logs/s/t.{number}.log",
        **extra,
    )


def result_of(test_id: str, status: str, *attempts: AttemptResult, **extra: Any) -> TestResult:
    return TestResult(
        test_id=test_id,
        status=status,
        flaky=extra.pop("flaky", False),
        category=extra.pop("category", "unit"),
        ref="main",
        sha="b" * 40,
        duration_seconds=sum(a.duration_seconds or 0.0 for a in attempts),
        attempts=attempts,
        **extra,
    )


def small_report(**changes: Any) -> ParallelTestReport:
    """Three tests: one failed twice after a setup, one flaky, one quarantined; gates,
    a comparison and coverage."""
    tests = (
        result_of(
            "api::broken",
            "failed",
            attempt(1, "failed", at=0.5, seconds=1.0, setup_seconds=2.0),
            attempt(2, "failed", at=4.0, seconds=1.0, worker=1, output_tail=TAIL),
            first_error="E  KeyError: 'x'",
        ),
        result_of(
            "api::flaky",
            "passed",
            attempt(1, "failed", at=0.0, seconds=0.2, worker=1),
            attempt(2, "passed", at=0.3, seconds=0.2, worker=1),
            flaky=True,
        ),
        result_of(
            "old::legacy",
            "failed",
            attempt(1, "failed", at=1.0, seconds=0.1, worker=1),
            quarantine="known broken, issue 123",
            category="legacy",
        ),
    )
    values: dict[str, Any] = {
        "session_id": "abc123",
        "status": "partial_success",
        "started_at": START,
        "completed_at": START + timedelta(seconds=6),
        "duration_seconds": 6.0,
        "total_tests": 3,
        "tests_passed": 1,
        "tests_failed": 2,
        "tests_timed_out": 0,
        "tests_errored": 0,
        "tests_skipped": 0,
        "tests_cancelled": 0,
        "tests_flaky": 1,
        "success_rate": 0.3333,
        "num_workers": 2,
        "categories": {"unit": StatusCounts(total=2, passed=1, failed=1, flaky=1)},
        "completed_tests": tests,
        "failed_tests": ("api::broken", "old::legacy"),
        "quarantined_tests": ("old::legacy",),
        "tests_quarantined": 1,
        "gates": (
            GateResult(
                name="min_pass_rate[unit]",
                target=1.0,
                actual=0.5,
                passed=False,
                reason="unit tests: 50.0% passed < 100.0% (2 tests)",
            ),
        ),
        "gates_passed": False,
        "comparison": Comparison(
            baseline_session_id="base99",
            tests=Changes(
                new_failures=("api::broken",),
                slower=(SlowerTest(test_id="api::slow", before_seconds=2.0, after_seconds=9.0),),
            ),
        ),
        "coverage": (
            CommitCoverage(
                sha="c" * 40,
                percent=87.5,
                statements=8,
                missing=1,
                files=(FileCoverage(path="src/app.py", statements=8, missing=1, percent=87.5),),
            ),
        ),
        "report_hash": "f" * 64,
    }
    values.update(changes)
    return ParallelTestReport(**values)


def embedded(page: str) -> dict[str, Any]:
    """The JSON the page embeds for its timeline."""
    tree = lxml.html.fromstring(page)
    [script] = tree.xpath('//script[@id="report-data"]')
    data: dict[str, Any] = json.loads(script.text)
    return data


def text_without_script(page: str) -> str:
    tree = lxml.html.fromstring(page)
    for script in tree.xpath("//script"):
        script.drop_tree()
    return " ".join(tree.text_content().split())


def test_page_of_20000_tests_is_under_10_mb_and_embeds_each_attempt_once() -> None:
    """At 20,000 tests the page stays under 10 MB: attempts as one JSON array, lists cut."""
    report = synthetic_report(20_000)
    page = html.render(report)
    assert len(page.encode()) < 10_000_000
    data = embedded(page)
    assert len(data["attempts"]) == sum(len(t.attempts) for t in report.completed_tests)
    assert data["tests"] == [t.test_id for t in report.completed_tests]
    assert page.count('<article class="failure"') == 400  # every failure: fewer than the cap
    assert page.count('<pre class="tail">') == html.MAX_TAILS
    assert "more failures" not in page


def test_long_lists_end_with_how_many_they_leave_out() -> None:
    """600 failures show the first 500 in full and say how many more there are."""
    broken, flaky, _ = small_report().completed_tests
    many = [broken.model_copy(update={"test_id": f"broken{n}"}) for n in range(600)]
    many += [flaky.model_copy(update={"test_id": f"flaky{n}"}) for n in range(300)]
    page = html.render(small_report(completed_tests=tuple(many)))
    assert page.count('<article class="failure"') == html.MAX_FAILURES
    assert "and 100 more failures" in page
    assert f"and {300 - html.MAX_LISTED:,} more (all" in page


def test_user_text_cannot_leave_its_element() -> None:
    """Test ids, errors, log tails and reasons with markup stay text: no script of theirs runs."""
    hostile = small_report(
        completed_tests=tuple(
            t.model_copy(
                update={
                    "test_id": t.test_id + HOSTILE,
                    "first_error": HOSTILE,
                    "quarantine": HOSTILE if t.quarantine else None,
                    "notes": (HOSTILE,),
                    "attempts": tuple(
                        a.model_copy(update={"output_tail": HOSTILE, "log_path": HOSTILE})
                        for a in t.attempts
                    ),
                }
            )
            for t in small_report().completed_tests
        )
    )
    page = html.render(hostile)
    tree = lxml.html.fromstring(page)
    assert len(tree.xpath("//script")) == 2  # the data and the timeline's: no injected one
    assert "alert(1)</script>" not in page
    assert embedded(page)["tests"][0] == "api::broken" + HOSTILE
    assert HOSTILE in text_without_script(page)  # shown as text, in full


def test_page_loads_nothing_from_the_network() -> None:
    """No stylesheet, script, image or font is fetched: every link is to the page itself."""
    tree = lxml.html.fromstring(html.render(small_report()))
    fetched = tree.xpath("//@src | //link/@href | //@srcset")
    links = tree.xpath("//a/@href")
    assert fetched == []
    assert links and all(href.startswith("#") for href in links)
    styles = " ".join(tree.xpath("//style/text()"))
    assert "@import" not in styles and "url(http" not in styles


def test_summary_parts_read_without_script() -> None:
    """Counts, gates, failures with first error and log path, flaky, quarantined, categories,
    comparison and coverage are in the page's text, not drawn by its script."""
    report = small_report()
    page = report.render("html")
    text = text_without_script(page)
    for shown in (
        "1 of 3 tests passed",
        "unit tests: 50.0% passed < 100.0% (2 tests)",
        "E KeyError: 'x'",  # whitespace collapsed by text_without_script
        "/state/logs/s/t.2.log",
        "api::flaky",
        "known broken, issue 123",
        "base99",
        "New failures (1)",
        "api::slow",
        "87.5 %",
        "src/app.py",
    ):
        assert shown in text, shown
    tree = lxml.html.fromstring(page)
    for table in tree.xpath("//table"):
        assert table.xpath("thead/tr/th[@scope='col']"), lxml.html.tostring(table)[:200]
    assert [h.text_content() for h in tree.xpath("//h1")] and tree.xpath("//h2")


def test_log_tail_of_a_failure_is_shown_bounded() -> None:
    """A failure's log tail shows its last lines only, however long the log's tail is."""
    long_tail = "".join(f"line {n}\n" for n in range(1000))
    report = small_report()
    broken = report.completed_tests[0]
    final = broken.attempts[-1].model_copy(update={"output_tail": long_tail})
    report = report.model_copy(
        update={
            "completed_tests": (
                broken.model_copy(update={"attempts": (broken.attempts[0], final)}),
                *report.completed_tests[1:],
            )
        }
    )
    [tail] = lxml.html.fromstring(html.render(report)).xpath('//pre[@class="tail"]')
    lines = tail.text_content().splitlines()
    assert lines[-1] == "line 999" and len(lines) == html.TAIL_LINES


def test_timeline_rows_place_setup_before_the_command() -> None:
    """Each attempt is one row: its start from the session's start, its setup, its duration."""
    data = html.timeline_data(small_report())
    rows = {(data["tests"][r[0]], r[1]): r for r in data["attempts"]}
    assert len(rows) == 5
    _, number, worker, start, setup, duration, status, host = rows["api::broken", 1]
    assert (number, worker, start, setup, duration) == (1, 0, 0.5, 2.0, 1.0)
    assert data["statuses"][status] == "failed"
    assert data["hosts"][host] == ""  # this machine
    assert rows["api::broken", 2][2] == 1  # the retry ran on the other worker
    assert data["workers"] == [0, 1]
    assert data["span"] == 6.0


def test_timeline_rows_name_the_fleet_worker_each_attempt_ran_on() -> None:
    """On a fleet, each row points at its attempt's host: the Dask worker's address."""
    report = small_report()
    tests = tuple(
        t.model_copy(
            update={
                "attempts": tuple(
                    a.model_copy(update={"host": f"tcp://10.0.0.{a.worker + 1}:4000"})
                    for a in t.attempts
                )
            }
        )
        for t in report.completed_tests
    )
    data = html.timeline_data(report.model_copy(update={"completed_tests": tests}))
    rows = {(data["tests"][r[0]], r[1]): r for r in data["attempts"]}
    assert data["hosts"][rows["api::broken", 1][7]] == "tcp://10.0.0.1:4000"
    assert data["hosts"][rows["api::broken", 2][7]] == "tcp://10.0.0.2:4000"


def test_timeline_origin_is_the_earliest_start_in_utc() -> None:
    """A store's naive datetimes are UTC: offsets are the same as with aware ones."""
    naive = START.replace(tzinfo=None)
    report = small_report(started_at=naive + timedelta(seconds=1))
    data = html.timeline_data(report)
    assert data["origin"] == START.isoformat()
    assert min(row[3] for row in data["attempts"]) == 0.0
    assert datetime.fromisoformat(data["origin"]).tzinfo is UTC


def test_histogram_counts_every_timed_test_once() -> None:
    """The histogram's bars add up to the tests with a duration, stacked by outcome."""
    report = synthetic_report(2_000)
    chart = html_charts.histogram(report.completed_tests)
    assert sum(b.count for b in chart.bars) == chart.count == 2_000
    failing = sum(s.count for b in chart.bars for s in b.segments if s.group == "failing")
    assert failing == report.tests_failed
    assert chart.logarithmic  # log-normal durations span more than two orders of magnitude


def test_histogram_is_linear_when_durations_are_close() -> None:
    """Durations within a factor of 100 get linear bins from zero."""
    tests = [
        result_of(f"t{n}", "passed", attempt(1, "passed", at=0, seconds=1.0 + n)) for n in range(10)
    ]
    chart = html_charts.histogram(tests)
    assert not chart.logarithmic
    assert chart.bars[0].low == 0.0 and chart.bars[-1].high == 10.0
    assert chart.bars[-1].count == 2  # 9 s and 10 s: the longest is in the last bin, not past it


def test_histogram_axis_labels_sit_at_their_bin_edges() -> None:
    """Each duration on the x axis is drawn where the bin that starts (or ends) there is."""
    for size in (9, 30, 2_000):
        chart = html_charts.histogram(synthetic_report(size).completed_tests)
        slot = (chart.right - chart.left) / len(chart.bars)
        edges = [b.low for b in chart.bars] + [chart.bars[-1].high]
        for tick in chart.x_ticks:
            position = (tick.at - chart.left) / slot
            assert abs(position - round(position)) < 0.01, (size, position)
            assert tick.label == edges[round(position)]
        assert (chart.x_ticks[0].label, chart.x_ticks[-1].label) == (edges[0], edges[-1])


def test_empty_session_renders() -> None:
    """A session with no tests still renders, saying there is nothing to show."""
    page = small_report(
        completed_tests=(),
        total_tests=0,
        started_at=datetime.now(UTC),
        gates=(),
        comparison=None,
        coverage=(),
    ).render("html")
    assert "No durations recorded." in page
    assert embedded(page)["attempts"] == []


def test_a_tests_notes_have_a_section_of_their_own() -> None:
    """A passing sharded test whose runner ignored its shards: its notes are on the page,
    in a Notes section linked from the top; a page without notes has no such section."""
    flaky = small_report().completed_tests[1]
    note = "t[2/2]: the runner never touched TEST_SHARD_STATUS_FILE, so it did not shard"
    noted = flaky.model_copy(update={"test_id": "suite", "flaky": False, "notes": (note,)})
    tree = lxml.html.fromstring(html.render(small_report(completed_tests=(noted,))))
    (section,) = tree.xpath('//section[@id="notes"]')
    assert "Notes (1)" in section.text_content() and note in section.text_content()
    assert tree.xpath('//a[@href="#notes"]')
    assert not lxml.html.fromstring(html.render(small_report())).xpath('//section[@id="notes"]')
