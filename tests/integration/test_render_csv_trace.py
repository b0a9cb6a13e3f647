"""CSV and Chrome trace out: a real session's report, read back as a spreadsheet and a viewer would.

One session on two workers: tests with a worktree setup, a flaky test, a test
whose error line reads like a spreadsheet formula, and one with a JUnit file
whose case name and message do too.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import shlex
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import pytest

from parallel_orch import ParallelTestReport, TestRequest
from parallel_orch.report.renderers.csv import CASE_COLUMNS, EXECUTION_COLUMNS
from tests.helpers import MakeConfig, orchestrator

FORMULA = '=HYPERLINK("http://evil.example","click")'
HOSTILE_CASES = (
    '<?xml version="1.0"?><testsuite name="s" tests="3">'
    '<testcase classname="c" name="ok" time="0.25"/>'
    '<testcase classname="c" name="=1+2"><failure message="@SUM(A1:A9)"/></testcase>'
    '<testcase classname="c" name="-minus" file="t.py"><skipped message="+plus"/></testcase>'
    "</testsuite>"
)

# A sharded suite: each shard reports its own case.
SPLIT = (
    'touch "$TEST_SHARD_STATUS_FILE"; printf \'<testsuite><testcase classname="s" name="%s"/>'
    '</testsuite>\' "part$TEST_SHARD_INDEX" > "$PARALLEL_ORCH_JUNIT"'
)


@dataclass(frozen=True)
class Rendered:
    report: ParallelTestReport

    def rows(self, fmt: str) -> list[dict[str, str]]:
        return list(csv.DictReader(io.StringIO(self.report.render(fmt), newline="")))

    def row(self, test_id: str) -> dict[str, str]:
        (found,) = [r for r in self.rows("csv") if r["test_id"] == test_id]
        return found

    def result(self, test_id: str) -> Any:
        return next(t for t in self.report.completed_tests if t.test_id == test_id)


@pytest.fixture
async def rendered(make_config: MakeConfig) -> Rendered:
    """A finished session of nine tests (one in two shards) on two workers."""
    config = make_config(num_workers=2)
    write_junit = f'printf %s {shlex.quote(HOSTILE_CASES)} > "$PARALLEL_ORCH_JUNIT"; exit 1'
    requests = [
        *(
            TestRequest(id=f"quick{n}", command="sleep 0.05", setup="sleep 0.1", priority=5)
            for n in range(4)
        ),
        TestRequest(id="flaky", command='test "$PARALLEL_ORCH_ATTEMPT" -ge 2', retries=1),
        TestRequest(id="formula", command=f"echo {shlex.quote(FORMULA)}; exit 1"),
        TestRequest(id="cases", command=write_junit, junit=True),
        TestRequest(id="fine", command="true", category="other"),
        TestRequest(id="split", command=SPLIT, shards=2, junit=True),
    ]
    async with orchestrator(config) as orch:
        return Rendered(await orch.run_tests(requests))


def test_csv_has_one_row_per_execution_with_its_facts(rendered: Rendered) -> None:
    """Every execution is a row with the named columns, and the values the report has."""
    rows = rendered.rows("csv")
    assert tuple(rows[0]) == EXECUTION_COLUMNS
    assert len(rows) == rendered.report.total_tests == 9
    flaky = rendered.row("flaky")
    assert (flaky["status"], flaky["flaky"], flaky["attempts"]) == ("passed", "true", "2")
    result = rendered.result("flaky")
    assert float(flaky["duration_seconds"]) == result.duration_seconds
    final = result.attempts[-1]
    assert (flaky["worker"], flaky["worktree"]) == (str(final.worker), final.worktree)
    assert flaky["log_path"] == final.log_path
    cases = rendered.row("cases")
    assert [cases[f"cases_{k}"] for k in ("passed", "failed", "errors", "skipped")] == [
        "1",
        "1",
        "0",
        "1",
    ]
    assert rendered.row("fine")["cases_passed"] == ""  # no JUnit file: no counts
    assert rendered.row("fine")["category"] == "other"
    set_up = [r for r in rows if r["setup_seconds"]]
    assert set_up and all(float(r["setup_seconds"]) >= 0.1 for r in set_up)


def test_csv_cells_that_read_as_formulas_get_an_apostrophe(rendered: Rendered) -> None:
    """An error line, case name or message starting with = + - @ is text in a spreadsheet."""
    assert rendered.result("formula").first_error == FORMULA
    assert rendered.row("formula")["first_error"] == "'" + FORMULA
    cases = {r["name"]: r for r in rendered.rows("csv-cases") if r["test_id"] == "cases"}
    assert set(cases) == {"ok", "'=1+2", "'-minus"}
    assert cases["'=1+2"]["message"] == "'@SUM(A1:A9)"
    assert cases["'-minus"]["message"] == "'+plus"
    assert cases["ok"]["message"] == ""


def test_csv_cases_has_one_row_per_case_of_final_attempts(rendered: Rendered) -> None:
    """The case table: test id, class, name, file, status, time, message of each case, from
    each shard's final attempt too."""
    rows = rendered.rows("csv-cases")
    assert tuple(rows[0]) == CASE_COLUMNS
    assert len(rows) == 5  # three of one test, one of each shard of another
    split = sorted((r["test_id"], r["name"]) for r in rows if r["classname"] == "s")
    assert split == [("split", "part0"), ("split", "part1")]
    ok = next(r for r in rows if r["name"] == "ok")
    assert (ok["test_id"], ok["classname"], ok["status"], ok["time"]) == (
        "cases",
        "c",
        "passed",
        "0.25",
    )
    assert next(r for r in rows if r["name"] == "'-minus")["file"] == "t.py"


def trace_events(report: ParallelTestReport) -> list[dict[str, Any]]:
    trace = json.loads(report.render("trace"))
    assert trace["displayTimeUnit"] == "ms"
    events: list[dict[str, Any]] = trace["traceEvents"]
    return events


def test_trace_has_one_slice_per_attempt_on_its_workers_track(rendered: Rendered) -> None:
    """One complete event per attempt, named by test id, on a track named after its worker."""
    events = trace_events(rendered.report)
    attempts = [e for e in events if e["ph"] == "X" and e["cat"] == "attempt"]
    expected = {
        (t.test_id, a.shard, a.number, a.status, a.worker)
        for t in rendered.report.completed_tests
        for a in t.attempts
    }
    names = {
        e["tid"]: e["args"]["name"] for e in events if e["ph"] == "M" and e["name"] == "thread_name"
    }
    worker = {tid: int(name.split()[-1]) for tid, name in names.items()}
    found = {
        (
            e["name"],
            e["args"].get("shard"),
            e["args"]["attempt"],
            e["args"]["status"],
            worker[e["tid"]],
        )
        for e in attempts
    }
    assert len(attempts) == len(expected) == 11
    assert sorted(e["args"]["shard"] for e in attempts if e["name"] == "split") == ["1/2", "2/2"]
    assert found == expected
    assert sorted(names.values()) == ["worker 0", "worker 1"]
    assert all(e["ts"] >= 0 and e["dur"] >= 0 for e in attempts)
    exit_codes = {e["name"]: e["args"]["exit_code"] for e in attempts if e["args"]["attempt"] == 1}
    assert (exit_codes["formula"], exit_codes["fine"]) == (1, 0)


def test_trace_shows_setups_before_their_attempts_and_no_overlap(rendered: Rendered) -> None:
    """A setup is a slice ending where its attempt starts; a worker's slices never overlap."""
    events = [e for e in trace_events(rendered.report) if e["ph"] == "X"]
    setups = [e for e in events if e["cat"] == "setup"]
    assert setups  # each worktree set up once for the quick tests
    for setup in setups:
        (attempt,) = [
            e
            for e in events
            if e["cat"] == "attempt"
            and e["tid"] == setup["tid"]
            and e["name"] == setup["args"]["test_id"]
            and e["args"]["attempt"] == setup["args"]["attempt"]
        ]
        assert attempt["ts"] == setup["ts"] + setup["dur"]
        assert setup["dur"] >= 100_000  # microseconds: the setup's sleep 0.1
    by_track: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for event in events:
        by_track[event["tid"]].append(event)
    for slices in by_track.values():
        slices.sort(key=lambda e: e["ts"])
        for before, after in itertools.pairwise(slices):
            assert before["ts"] + before["dur"] <= after["ts"], (before, after)
