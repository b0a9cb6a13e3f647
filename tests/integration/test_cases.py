"""A test's JUnit cases reach the store and the report; a file that cannot be read is said."""

from __future__ import annotations

import shlex
from pathlib import Path

from parallel_orch import ParallelTestConfig, TestRequest
from parallel_orch.store import open_store
from tests.helpers import orchestrator


def junit_writer(counter: Path) -> str:
    """Writes a JUnit file whose case ``b`` fails on the first run and passes after."""
    c = shlex.quote(str(counter))
    return (
        f"n=$(cat {c} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {c}; "
        'if [ $n -eq 1 ]; then B="<failure message=\\"b broke\\"/>"; else B=""; fi; '
        'printf \'<testsuite><testcase classname="m" name="a" time="0.5"/>'
        '<testcase classname="m" name="b">%s</testcase></testsuite>\' "$B" '
        '> "$PARALLEL_ORCH_JUNIT"; [ $n -ge 2 ]'
    )


async def test_cases_of_every_attempt_are_stored_and_reported(
    config: ParallelTestConfig, outside: Path
) -> None:
    """The final attempt reports all its cases; the failed one before it its failing case."""
    request = TestRequest(id="cases", command=junit_writer(outside / "n"), junit=True, retries=1)
    async with orchestrator(config) as orch:
        report = await orch.run_tests([request])

    (test,) = report.completed_tests
    first, final = test.attempts
    assert test.flaky and test.cases is not None and test.cases.passed == 2
    assert [(c.name, c.status) for c in final.cases] == [("a", "passed"), ("b", "passed")]
    assert final.cases[0].time == 0.5 and final.cases[0].classname == "m"
    assert [(c.name, c.status, c.message) for c in first.cases] == [("b", "failed", "b broke")]
    async with open_store(config.resolved_state_dir) as store:
        snapshot = await store.session_snapshot(report.session_id)
    assert len(snapshot.cases) == 4  # both attempts' cases, all of them, in the store


async def test_an_unreadable_junit_file_is_said_and_the_status_kept(
    config: ParallelTestConfig,
) -> None:
    """A malformed JUnit file: the attempt passes as its exit code says; the report says why."""
    requests = [
        TestRequest(
            id="bad", command="echo '<testsuite><testcase' > $PARALLEL_ORCH_JUNIT", junit=True
        ),
        TestRequest(id="none", command="true", junit=True),
    ]
    async with orchestrator(config) as orch:
        report = await orch.run_tests(requests)

    results = {t.test_id: t for t in report.completed_tests}
    assert {t.status for t in results.values()} == {"passed"}
    assert "not valid XML" in (results["bad"].attempts[0].junit_error or "")
    assert "wrote no JUnit file" in (results["none"].attempts[0].junit_error or "")
    assert results["bad"].cases is None


async def test_a_failed_test_names_its_first_failing_case(config: ParallelTestConfig) -> None:
    """first_error is the first failing case's message, class and name."""
    command = (
        'printf \'<testsuite><testcase classname="pkg.t" name="test_x">'
        '<failure message="assert 3 == 4"/></testcase></testsuite>\' > $PARALLEL_ORCH_JUNIT; exit 1'
    )
    async with orchestrator(config) as orch:
        report = await orch.run_tests([TestRequest(id="f", command=command, junit=True)])
    (test,) = report.completed_tests
    assert test.first_error == "pkg.t.test_x: assert 3 == 4"


async def test_without_junit_the_first_error_comes_from_the_log(config: ParallelTestConfig) -> None:
    """No JUnit: the last line of the log that reads like an error."""
    command = "echo starting; echo 'Error: the widget is missing' >&2; echo cleanup; exit 2"
    async with orchestrator(config) as orch:
        report = await orch.run_tests([TestRequest(id="f", command=command)])
    (test,) = report.completed_tests
    assert test.first_error == "Error: the widget is missing"
