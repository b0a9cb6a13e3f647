"""Sharding inside a suite: a real pytest suite split across worktrees, every case once."""

from __future__ import annotations

import sys
from pathlib import Path

import anyio
import pytest

from parallel_orch import ParallelTestConfig, TestRequest
from parallel_orch.exceptions import UsageError
from parallel_orch.report.renderers import markdown, text
from tests.helpers import GitRepo, orchestrator

CASES = {"tests/test_a.py": 9, "tests/test_b.py": 6}


def write_suite(repo: GitRepo, ran: Path, flaky_counter: Path | None = None) -> None:
    """A small pytest suite whose every case appends its node id to ``ran``."""
    files = {
        "tests/conftest.py": (
            "import os\n"
            "def pytest_runtest_call(item):\n"
            f"    with open({str(ran)!r}, 'a') as fh:\n"
            "        index = os.environ.get('TEST_SHARD_INDEX', '-')\n"
            "        fh.write(item.nodeid + ' ' + index + '\\n')\n"
        )
    }
    for path, count in CASES.items():
        body = "".join(f"def test_{n}():\n    pass\n\n" for n in range(count))
        files[path] = body
    if flaky_counter is not None:
        files["tests/test_b.py"] += (
            "def test_flaky():\n"
            "    import os\n"
            f"    p = {str(flaky_counter)!r}\n"
            "    n = int(open(p).read()) if os.path.exists(p) else 0\n"
            "    open(p, 'w').write(str(n + 1))\n"
            "    assert n > 0\n"
        )
    repo.commit(files, "suite")


def suite_request(**overrides: object) -> TestRequest:
    values: dict[str, object] = {
        "id": "suite",
        "command": f"{sys.executable} -m pytest -q -p no:cacheprovider tests"
        " --junitxml=$XML_OUTPUT_FILE",
        "junit": True,
        "shards": 2,
    }
    values.update(overrides)
    return TestRequest.model_validate(values)


def ran_once(ran: Path) -> dict[str, str]:
    lines = ran.read_text().splitlines()
    ids = [line.split()[0] for line in lines]
    assert len(ids) == len(set(ids)), f"a case ran twice: {sorted(ids)}"
    return dict(line.split() for line in lines)


async def test_every_case_runs_exactly_once_across_shards(
    repo: GitRepo, config: ParallelTestConfig, outside: Path
) -> None:
    """Two shards of one suite: each case once, in one of them, and the report shows one test."""
    ran = outside / "ran"
    write_suite(repo, ran)
    async with orchestrator(config) as orch:
        report = await orch.run_tests([suite_request()])

    shard_of = ran_once(ran)
    assert len(shard_of) == sum(CASES.values())
    assert set(shard_of.values()) == {"0", "1"}  # both shards did work
    (test,) = report.completed_tests
    assert test.test_id == "suite" and test.status == "passed" and test.shards == 2
    assert test.cases is not None and test.cases.passed == sum(CASES.values())
    assert sorted(a.shard or "" for a in test.attempts) == ["1/2", "2/2"]
    assert test.notes == ()
    assert report.total_tests == 1


async def test_a_failing_shard_is_retried_alone(
    repo: GitRepo, config: ParallelTestConfig, outside: Path
) -> None:
    """The shard with the case that fails once runs twice; the other shard once."""
    ran = outside / "ran"
    write_suite(repo, ran, flaky_counter=outside / "flaky")
    async with orchestrator(config) as orch:
        report = await orch.run_tests([suite_request(retries=1)])

    (test,) = report.completed_tests
    assert test.status == "passed" and test.flaky
    per_shard = sorted(sum(a.shard == s for a in test.attempts) for s in ("1/2", "2/2"))
    assert per_shard == [1, 2]


async def test_a_runner_that_ignores_sharding_is_flagged_not_failed(
    config: ParallelTestConfig,
) -> None:
    """A command that never touches TEST_SHARD_STATUS_FILE passes, and the report says it did
    not shard."""
    request = TestRequest(id="plain", command="true", shards=2)
    async with orchestrator(config) as orch:
        report = await orch.run_tests([request])
    (test,) = report.completed_tests
    assert test.status == "passed"
    assert test.notes == (
        "2 of 2 shards (plain[1/2], plain[2/2]): the runner never touched"
        " TEST_SHARD_STATUS_FILE, so it did not shard (every shard ran every case)",
    )


async def test_shards_auto_is_one_per_worker_and_gets_bazels_variables(
    config: ParallelTestConfig, outside: Path
) -> None:
    """shards = "auto" splits into num_workers shards told their part the Bazel way."""
    seen = outside / "env"
    command = (
        f"echo $TEST_SHARD_INDEX/$TEST_TOTAL_SHARDS $XML_OUTPUT_FILE $TEST_TMPDIR >> {seen}; "
        'test -d "$TEST_TMPDIR" && touch "$TEST_SHARD_STATUS_FILE"'
    )
    async with orchestrator(config) as orch:
        report = await orch.run_tests([TestRequest(id="t", command=command, shards="auto")])
    (test,) = report.completed_tests
    assert test.status == "passed" and test.shards == config.num_workers and test.notes == ()
    lines = sorted(seen.read_text().splitlines())
    assert [line.split()[0] for line in lines] == ["0/2", "1/2"]
    for line in lines:
        _, junit, tmp = line.split()
        assert junit.endswith(".xml") and "/logs/" in junit  # beside the log
        assert not tmp.startswith(str(config.resolved_worktree_dir))  # outside the worktree
        assert not await anyio.Path(tmp).exists()  # removed after the attempt


async def test_a_shard_whose_junit_file_is_missing_says_so(
    config: ParallelTestConfig,
) -> None:
    """junit = true and a shard writes no file: its attempt says why, the test still reports."""
    command = 'touch "$TEST_SHARD_STATUS_FILE"'
    async with orchestrator(config) as orch:
        report = await orch.run_tests([TestRequest(id="t", command=command, shards=2, junit=True)])
    (test,) = report.completed_tests
    assert test.status == "passed" and test.cases is None
    assert all("wrote no JUnit file" in (a.junit_error or "") for a in test.attempts)


async def test_more_shards_than_cases_is_not_a_failure(
    repo: GitRepo, config: ParallelTestConfig
) -> None:
    """A shard whose share is empty passes (pytest would exit 5): the test passes once."""
    repo.commit({"tests/test_one.py": "def test_only():\n    pass\n"}, "one case")
    command = f"{sys.executable} -m pytest -q -p no:cacheprovider tests/test_one.py"
    async with orchestrator(config) as orch:
        report = await orch.run_tests([TestRequest(id="one", command=command, shards=3)])
    (test,) = report.completed_tests
    assert test.status == "passed", [a.error for a in test.attempts]
    assert len(test.attempts) == 3


async def test_one_shard_without_cases_leaves_the_totals_and_says_so(
    config: ParallelTestConfig,
) -> None:
    """Shard 1 writes two cases, shard 2 no JUnit file: the totals are shard 1's, and the
    terminal and Markdown reports say the other is left out."""
    two_cases = '<testsuite><testcase classname="c" name="a"/><testcase classname="c" name="b"/>'
    command = (
        'touch "$TEST_SHARD_STATUS_FILE"; if [ "$TEST_SHARD_INDEX" = 0 ]; then '
        f"echo '{two_cases}</testsuite>' > \"$XML_OUTPUT_FILE\"; fi"
    )
    async with orchestrator(config) as orch:
        report = await orch.run_tests([TestRequest(id="t", command=command, shards=2, junit=True)])
    (test,) = report.completed_tests
    assert test.status == "passed"
    assert test.cases is not None and test.cases.passed == 2
    note = "t[2/2]: no JUnit cases read, not counted in the case totals"
    assert test.notes == (note,)
    assert "Notes (1)" in text.render(report) and note in text.render(report)
    summary = markdown.render(report)
    assert "### Notes (1)" in summary and note.replace("[2/2]", "\\[2/2\\]") in summary


async def test_a_shard_whose_setup_failed_is_not_said_to_ignore_sharding(
    config: ParallelTestConfig,
) -> None:
    """Its runner never ran, so nothing is said of its sharding; and the setup's time is its
    own phase, not the test's duration."""
    request = TestRequest(
        id="t", command='touch "$TEST_SHARD_STATUS_FILE"', setup="sleep 0.2; exit 3", shards=2
    )
    async with orchestrator(config) as orch:
        report = await orch.run_tests([request])
    (test,) = report.completed_tests
    assert test.status == "error" and test.notes == ()
    for attempt in test.attempts:
        assert "setup failed" in (attempt.error or "")
        assert attempt.duration_seconds == 0.0
        assert attempt.setup_seconds is not None and attempt.setup_seconds >= 0.2


async def test_a_session_of_too_many_shards_is_refused_before_anything_is_recorded(
    config: ParallelTestConfig,
) -> None:
    """101 tests of 1,000 shards each would be 101,000 requests: a UsageError, no session."""
    requests = [TestRequest(id=f"t{n}", command="true", shards=1000) for n in range(101)]
    async with orchestrator(config) as orch:
        with pytest.raises(UsageError, match="101000 requests; at most 100000"):
            await orch.run_tests(requests)
        assert await orch.store.recent_sessions() == []


async def test_a_cancelled_shard_is_not_said_to_ignore_sharding(
    config: ParallelTestConfig, outside: Path
) -> None:
    """Shards cancelled before their runner got to the status file: nothing is said of their
    sharding (they never ran to their end)."""
    command = (
        f'touch {outside}/started.$TEST_SHARD_INDEX; sleep 30; touch "$TEST_SHARD_STATUS_FILE"'
    )
    async with orchestrator(config) as orch:
        session_id = await orch.create_session([TestRequest(id="t", command=command, shards=2)])
        started = [anyio.Path(outside / f"started.{index}") for index in (0, 1)]
        with anyio.fail_after(30):
            while not all([await path.exists() for path in started]):  # noqa: ASYNC110 (a file)
                await anyio.sleep(0.05)
        assert await orch.cancel_session(session_id)
        report = await orch.wait_for_session(session_id)
    (test,) = report.completed_tests
    assert test.status == "cancelled" and test.notes == ()
