"""JUnit XML out: a real session's report, read back by parsers other than the one that wrote it.

One session runs a plan with every outcome a CI reporter must show (a pass, a
flaky test, a test failing every retry, a timeout, a bad ref, a quarantined
failure, a real pytest suite with its own JUnit file, a ref matrix with
repeats); junitparser counts the file, the standard library's ElementTree
reads its shape against Maven Surefire's conventions.
"""

from __future__ import annotations

import shlex
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import anyio
import pytest
from junitparser import Error, Failure, JUnitXml, Skipped

from parallel_orch import ParallelTestConfig, ParallelTestReport, TestRequest, load_plans
from tests.helpers import MakeConfig, make_git_repo, orchestrator

PYTEST_SUITE = """\
import os

import pytest


def test_ok():
    assert True


def test_flaky():
    assert os.environ["PARALLEL_ORCH_ATTEMPT"] != "1", "fails on the first attempt"


def test_broken():
    assert 1 + 1 == 3, "arithmetic is broken"


@pytest.mark.skip(reason="not on this platform")
def test_skipped():
    pass
"""

# The same two cases in every run of the matrix: their names must not collide in our file.
SAME_CASES = (
    '<?xml version="1.0"?><testsuite name="m" tests="2">'
    '<testcase classname="m.T" name="same"/><testcase classname="m.T" name="other"/>'
    "</testsuite>"
)

PLAN = """\
[[test]]
id = "ok"
run = "echo all good"

[[test]]
id = "flaky"
run = 'echo "attempt $PARALLEL_ORCH_ATTEMPT"; test "$PARALLEL_ORCH_ATTEMPT" -ge 2'
retries = 2

[[test]]
id = "always"
run = 'echo "boom on attempt $PARALLEL_ORCH_ATTEMPT"; printf "bell\\a esc\\033[31m red\\n"; exit 3'
retries = 2

[[test]]
id = "slow"
run = "sleep 30"
timeout = "1s"

[[test]]
id = "badref"
run = "true"
ref = "no-such-branch"

[[test]]
id = "known"
run = "echo still broken; exit 1"
quarantine = "known bug 12"

[[test]]
id = "pytest"
run = "{python} -m pytest -q -p no:cacheprovider tests --junitxml=$PARALLEL_ORCH_JUNIT"
env = { PYTEST_DISABLE_PLUGIN_AUTOLOAD = "1" }
junit = true
retries = 1

[[test]]
id = "copy"
run = 'cat junit/same.xml > "$PARALLEL_ORCH_JUNIT"'
junit = true

[[test]]
id = "again"
run = 'cat junit/same.xml > "$PARALLEL_ORCH_JUNIT"'
junit = true

[[test]]
id = "matrix"
run = 'cat junit/same.xml > "$PARALLEL_ORCH_JUNIT"'
junit = true
refs = ["main", "feature"]
repeat = 2
"""


@dataclass(frozen=True)
class Session:
    report: ParallelTestReport
    path: Path  # the JUnit file rendered from the report

    def suite(self, test_id: str) -> ET.Element:
        """The ``<testsuite>`` of the execution whose id ends with ``test_id``."""
        (found,) = [s for s in ET.parse(self.path).getroot() if s.get("name", "").endswith(test_id)]
        return found


async def run_session(
    config: ParallelTestConfig, requests: list[TestRequest]
) -> ParallelTestReport:
    async with orchestrator(config) as orch:
        return await orch.run_tests(requests)


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Session:
    """The session's report and its JUnit file, run once for this module."""
    root = tmp_path_factory.mktemp("junit")
    repo = make_git_repo(
        root / "repo", {"tests/test_demo.py": PYTEST_SUITE, "junit/same.xml": SAME_CASES}
    )
    repo.branch("feature", {"feature.txt": "on the branch\n"})
    plan = root / "plans" / "ci.toml"
    plan.parent.mkdir()
    plan.write_text(PLAN.replace("{python}", shlex.quote(sys.executable)))
    config = ParallelTestConfig(
        repo=repo.path,
        num_workers=2,
        kill_grace_seconds=0.5,
        state_dir=root / "state",
        worktree_base_dir=root / "worktrees",
    )
    report = anyio.run(run_session, config, load_plans([plan.parent]))
    path = root / "report.xml"
    path.write_text(report.render("junit"), encoding="utf-8")
    return Session(report, path)


def children(element: ET.Element) -> list[str]:
    return [child.tag for child in element]


def only_case(suite: ET.Element) -> ET.Element:
    (case,) = suite.iter("testcase")
    return case


def test_junitparser_finds_the_reports_totals(session: Session) -> None:
    """A second parser counts the same tests, failures, errors and skipped as the report."""
    report = session.report
    xml = JUnitXml.fromfile(str(session.path))
    counted = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for suite in xml:
        for case in suite:
            counted["tests"] += 1
            for result in case.result:
                kind = {Failure: "failures", Error: "errors", Skipped: "skipped"}[type(result)]
                counted[kind] += 1
    # Parsed executions count their cases; the others count once, a quarantined failure
    # as skipped (it gates nothing) and a cancelled or skipped test as skipped.
    parsed = [t for t in report.completed_tests if t.cases is not None]
    quarantined = [t for t in report.completed_tests if t.quarantine and t.status != "passed"]
    cases = report.cases
    expected = {
        "tests": report.total_tests
        - len(parsed)
        + cases.passed
        + cases.failed
        + cases.errors
        + cases.skipped,
        "failures": report.tests_failed
        + report.tests_timed_out
        - len(quarantined)
        - sum(t.status == "failed" for t in parsed)
        + cases.failed,
        "errors": report.tests_errored + report.tests_interrupted + cases.errors,
        "skipped": report.tests_skipped + report.tests_cancelled + len(quarantined) + cases.skipped,
    }
    assert counted == expected == {"tests": 22, "failures": 3, "errors": 1, "skipped": 2}
    root = ET.parse(session.path).getroot()
    assert {k: int(root.get(k, "-1")) for k in counted} == counted
    assert len(root) == report.total_tests == 13


def test_a_flaky_test_passes_with_one_flaky_failure_per_failed_attempt(session: Session) -> None:
    """Flaky: no failure, a flakyFailure (with a stackTrace naming attempt 1 and its log)."""
    suite = session.suite("::flaky")
    case = only_case(suite)
    assert children(case) == ["flakyFailure"]
    marker = case.find("flakyFailure")
    assert marker is not None and marker.get("type") == "failed"
    trace = marker.findtext("stackTrace") or ""
    assert trace.startswith("attempt 1: failed: exit code 1")
    (first, _) = next(
        t for t in session.report.completed_tests if t.test_id.endswith("::flaky")
    ).attempts
    assert f"log: {first.log_path}" in trace
    assert suite.get("failures") == suite.get("errors") == "0"
    assert children(only_case(session.suite("::ok"))) == []  # a pass: no log tail either


def test_a_test_failing_every_attempt_has_a_failure_then_a_rerun_failure_each(
    session: Session,
) -> None:
    """Three failed attempts: <failure> for the first, <rerunFailure> for each rerun, the tail."""
    case = only_case(session.suite("::always"))
    assert children(case) == ["failure", "rerunFailure", "rerunFailure", "system-out"]
    failure = case.find("failure")
    assert failure is not None and failure.get("type") == "failed"
    assert (failure.text or "").startswith("attempt 1: failed: exit code 3")
    reruns = case.findall("rerunFailure")
    assert [(r.findtext("stackTrace") or "").split(":")[0] for r in reruns] == [
        "attempt 2",
        "attempt 3",
    ]
    out = case.findtext("system-out") or ""
    assert "boom on attempt 3" in out
    assert "bell esc[31m red" in out  # the BEL and ESC that XML 1.0 forbids are gone
    assert "\x07" not in session.path.read_text(encoding="utf-8")


def test_a_timeout_is_a_failure_of_type_timeout(session: Session) -> None:
    """timed_out is <failure type="timeout">."""
    case = only_case(session.suite("::slow"))
    failure = case.find("failure")
    assert failure is not None and failure.get("type") == "timeout"
    assert session.suite("::slow").get("failures") == "1"


def test_an_infrastructure_error_is_an_error(session: Session) -> None:
    """A ref that does not resolve is <error>, with git's message."""
    case = only_case(session.suite("::badref"))
    error = case.find("error")
    assert error is not None and error.get("type") == "error"
    assert "no-such-branch" in (error.get("message") or "")
    assert case.find("failure") is None


def test_a_quarantined_failure_is_skipped_and_says_why(session: Session) -> None:
    """Quarantined: a property with the reason, and its failure written as skipped."""
    suite = session.suite("::known")
    case = only_case(suite)
    skipped = case.find("skipped")
    assert skipped is not None
    assert (skipped.get("message") or "").startswith("quarantined: known bug 12: ")
    assert case.find("failure") is None
    assert properties(suite)["quarantine"] == "known bug 12"


def test_pytest_cases_carry_their_own_retries(session: Session) -> None:
    """A parsed suite's cases: flaky, failing on every attempt, skipped, passed, each as such."""
    suite = session.suite("::pytest")
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    assert set(cases) == {"test_ok", "test_flaky", "test_broken", "test_skipped"}
    assert {c.get("classname") for c in cases.values()} == {"tests.test_demo"}
    assert children(cases["test_ok"]) == []
    assert children(cases["test_flaky"]) == ["flakyFailure"]
    flaky = cases["test_flaky"].find("flakyFailure")
    assert flaky is not None and "fails on the first attempt" in (flaky.get("message") or "")
    assert children(cases["test_broken"]) == ["failure", "rerunFailure"]
    broken = cases["test_broken"].find("failure")
    assert broken is not None and "arithmetic is broken" in (broken.get("message") or "")
    skipped = cases["test_skipped"].find("skipped")
    assert skipped is not None and "not on this platform" in (skipped.get("message") or "")
    assert "failed" in (suite.findtext("system-out") or "")  # pytest's summary, from the tail


def test_a_matrix_with_repeats_keeps_every_case_name_distinct(session: Session) -> None:
    """Four runs of the same two cases: eight distinct names, each naming its ref and run."""
    root = ET.parse(session.path).getroot()
    pairs = [(c.get("classname"), c.get("name")) for c in root.iter("testcase")]
    assert len(pairs) == len(set(pairs)) == 22
    matrix = sorted(name or "" for cls, name in pairs if cls == "m.T" and "@" in (name or ""))
    assert matrix == sorted(
        f"{case}@{ref}#{n}"
        for case in ("same", "other")
        for ref in ("main", "feature")
        for n in (1, 2)
    )


def test_the_same_cases_in_two_tests_get_distinct_names(session: Session) -> None:
    """Two tests reporting the same cases: the second's names say which test they are from."""
    names = {
        test_id: sorted(c.get("name") or "" for c in session.suite(test_id).iter("testcase"))
        for test_id in ("::copy", "::again")
    }
    plain, renamed = sorted(names.values(), key=lambda n: "[" in n[0])
    assert plain == ["other", "same"]
    (test_id,) = [t for t, n in names.items() if n == renamed]
    full_id = next(t.test_id for t in session.report.completed_tests if t.test_id.endswith(test_id))
    assert renamed == [f"other [{full_id}]", f"same [{full_id}]"]


def properties(suite: ET.Element) -> dict[str, str]:
    return {p.get("name", ""): p.get("value", "") for p in suite.iter("property")}


def test_properties_say_where_each_test_ran(session: Session) -> None:
    """Each suite has the session id, ref, SHA, worker and worktree of its final attempt."""
    for test in session.report.completed_tests:
        found = properties(session.suite(test.test_id))
        assert found["session_id"] == session.report.session_id
        assert found["ref"] == test.ref
        assert found.get("sha") == test.sha
        if test.attempts:
            final = test.attempts[-1]
            assert (found["worker"], found["worktree"]) == (str(final.worker), final.worktree)
    feature = properties(session.suite("::matrix@feature#1"))
    assert feature["ref"] == "feature"


def test_timestamps_are_iso_8601_in_utc(session: Session) -> None:
    """The root and each suite that ran have an ISO 8601 timestamp with its UTC offset."""
    root = ET.parse(session.path).getroot()
    stamps = [root.get("timestamp")] + [s.get("timestamp") for s in root if s.get("timestamp")]
    assert len(stamps) == 13  # the bad ref never ran: no timestamp of its own
    for stamp in stamps:
        assert stamp is not None
        assert datetime.fromisoformat(stamp).utcoffset() is not None


async def test_cancelled_tests_are_skipped_with_the_reason(make_config: MakeConfig) -> None:
    """max_failures cancels what has not run: each is <skipped message="cancelled...">."""
    config = make_config(num_workers=1, max_failures=1)
    requests = [
        TestRequest(id="first", command="exit 1", priority=10),
        TestRequest(id="later", command="true"),
    ]
    async with orchestrator(config) as orch:
        report = await orch.run_tests(requests)
    root = ET.fromstring(report.render("junit"))
    (later,) = [s for s in root if s.get("name") == "later"]
    skipped = only_case(later).find("skipped")
    assert skipped is not None and (skipped.get("message") or "").startswith("cancelled")
    assert (root.get("tests"), root.get("failures"), root.get("skipped")) == ("2", "1", "1")


async def test_an_outcome_no_case_shows_gets_a_testcase_of_its_own(make_config: MakeConfig) -> None:
    """Cases all passed but the test failed, or an attempt crashed before writing cases: the
    execution's own testcase says so beside the cases."""
    write = (  # one passing case, in a class named after the test
        """printf '<testsuite><testcase classname="%s" name="fine"/></testsuite>' """
        '"$PARALLEL_ORCH_TEST_ID" > "$PARALLEL_ORCH_JUNIT"'
    )
    requests = [
        TestRequest(id="exits", command=f"{write}; echo coverage too low; exit 2", junit=True),
        TestRequest(
            id="crash",
            command=f'[ "$PARALLEL_ORCH_ATTEMPT" = 1 ] && exit 9; {write}',
            junit=True,
            retries=1,
        ),
    ]
    async with orchestrator(make_config()) as orch:
        report = await orch.run_tests(requests)
    suites = {s.get("name"): s for s in ET.fromstring(report.render("junit"))}
    exits = [(c.get("name"), children(c)) for c in suites["exits"].iter("testcase")]
    assert exits == [("fine", []), ("exits", ["failure", "system-out"])]
    assert suites["exits"].get("failures") == "1"
    crash = [(c.get("name"), children(c)) for c in suites["crash"].iter("testcase")]
    assert crash == [("fine", []), ("crash", ["flakyFailure"])]
    (marker,) = suites["crash"].iter("flakyFailure")
    assert marker.get("message") == "failed: exit code 9"
    assert suites["crash"].get("failures") == "0"


SHARD_RUN = """\
touch "$TEST_SHARD_STATUS_FILE"
case="a$TEST_SHARD_INDEX"; result=""; code=0
if [ "$TEST_SHARD_INDEX" = 1 ] && [ "$PARALLEL_ORCH_ATTEMPT" = 1 ]; then
  result='<failure message="first try"/>'; code=1
fi
printf '<testsuite><testcase classname="s" name="%s">%s</testcase></testsuite>' \\
  "$case" "$result" > "$PARALLEL_ORCH_JUNIT"
exit $code
"""


async def test_a_sharded_test_is_one_suite_with_every_shards_cases(
    make_config: MakeConfig,
) -> None:
    """Two shards, the second flaky: one suite holding both shards' cases, the retried
    case with its flakyFailure, and the shard count as a property."""
    request = TestRequest(id="sharded", command=SHARD_RUN, shards=2, junit=True, retries=1)
    async with orchestrator(make_config()) as orch:
        report = await orch.run_tests([request])
    (suite,) = ET.fromstring(report.render("junit"))
    assert suite.get("name") == "sharded"
    cases = {c.get("name"): children(c) for c in suite.iter("testcase")}
    assert cases == {"a0": [], "a1": ["flakyFailure"]}
    (flaky,) = suite.iter("flakyFailure")
    assert flaky.get("message") == "first try"
    assert (suite.get("tests"), suite.get("failures")) == ("2", "0")
    assert properties(suite)["shards"] == "2"
