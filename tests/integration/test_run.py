"""End to end through the Python API: statuses, report, events, environment, store."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import anyio
import pytest

from parallel_orch import (
    EventType,
    ExecutionStatus,
    ParallelTestConfig,
    ParallelTestReport,
    PlanError,
    RepoError,
    SessionStatus,
    TestRequest,
)
from parallel_orch.store import open_store
from tests.helpers import REPORT_KEYS, GitRepo, MakeConfig, make_git_repo, orchestrator, recording


def counter_command(counter: Path, pass_from: int) -> str:
    """Fails until it has run ``pass_from`` times; the count lives outside the worktree."""
    c = shlex.quote(str(counter))
    return f"n=$(cat {c} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {c}; [ $n -ge {pass_from} ]"


def by_id(report: ParallelTestReport) -> dict[str, ExecutionStatus]:
    return {t.test_id: ExecutionStatus(t.status) for t in report.completed_tests}


async def test_passing_failing_and_flaky_tests_get_their_statuses(
    config: ParallelTestConfig, outside: Path
) -> None:
    """Passed, failed (after its retries) and flaky outcomes show in statuses and report counts."""
    requests = [
        TestRequest(id="pass", command="true"),
        TestRequest(id="fail", command="echo broken; exit 3", retries=1),
        TestRequest(id="flaky", command=counter_command(outside / "count", 2), retries=2),
    ]
    async with orchestrator(config) as orch:
        report = await orch.run_tests(requests)

    assert by_id(report) == {
        "pass": ExecutionStatus.PASSED,
        "fail": ExecutionStatus.FAILED,
        "flaky": ExecutionStatus.PASSED,
    }
    results = {t.test_id: t for t in report.completed_tests}
    assert [a.status for a in results["fail"].attempts] == ["failed", "failed"]
    assert [a.exit_code for a in results["fail"].attempts] == [3, 3]
    assert [a.status for a in results["flaky"].attempts] == ["failed", "passed"]
    assert results["flaky"].flaky is True
    assert results["pass"].flaky is False
    assert report.status == SessionStatus.PARTIAL_SUCCESS
    assert (report.total_tests, report.tests_passed, report.tests_failed) == (3, 2, 1)
    assert report.tests_flaky == 1
    assert report.success_rate == pytest.approx(2 / 3, abs=1e-3)
    assert report.failed_tests == ("fail",)
    assert (outside / "count").read_text().strip() == "2"


async def test_all_passing_is_complete_and_all_failing_is_failed(
    config: ParallelTestConfig,
) -> None:
    """A session is `complete` when every test passed and `failed` when none did."""
    async with orchestrator(config) as orch:
        good = await orch.run_tests([TestRequest(id="a", command="true")])
        bad = await orch.run_tests([TestRequest(id="a", command="false")])
        empty = await orch.run_tests([])
    assert (good.status, good.success_rate) == (SessionStatus.COMPLETE, 1.0)
    assert (bad.status, bad.tests_failed) == (SessionStatus.FAILED, 1)
    assert (empty.status, empty.total_tests) == (SessionStatus.NO_TESTS, 0)


async def test_unknown_ref_errors_that_request_and_the_rest_runs(
    repo: GitRepo, config: ParallelTestConfig
) -> None:
    """A ref that does not resolve ends `error` with git's message; other requests still run."""
    feature = repo.branch("feature/x", {"feature.txt": "x\n"})
    requests = [
        TestRequest(id="main", command="test ! -e feature.txt", ref="main"),
        TestRequest(id="feature", command="test -e feature.txt", ref="feature/x"),
        TestRequest(id="missing", command="true", ref="no-such-branch"),
    ]
    async with orchestrator(config) as orch:
        report = await orch.run_tests(requests)
    results = {t.test_id: t for t in report.completed_tests}
    assert by_id(report) == {
        "main": ExecutionStatus.PASSED,
        "feature": ExecutionStatus.PASSED,
        "missing": ExecutionStatus.ERROR,
    }
    assert results["feature"].sha == feature
    error = results["missing"].error or ""
    assert "no-such-branch" in error
    assert "fatal:" in error  # git's own words
    assert results["missing"].attempts == ()
    assert report.status == SessionStatus.PARTIAL_SUCCESS
    assert report.tests_errored == 1


async def test_plan_directory_runs_through_run_tests(
    repo: GitRepo, config: ParallelTestConfig, tmp_path: Path
) -> None:
    """run_tests accepts plan paths; ids, categories and refs come from the plans."""
    plans = tmp_path / "plans"
    (plans / "unit").mkdir(parents=True)
    (plans / "unit/core.toml").write_text(
        '[[test]]\nid = "readme"\nrun = "test -f README.md"\n\n'
        '[[test]]\nid = "matrix"\nrun = "true"\nrefs = ["main", "HEAD"]\n'
    )
    (plans / "unit/howto.md").write_text(
        "+++\n+++\nCheck the layout:\n\n```sh\ntest -f README.md\n```\n\n"
        "```bash\ntest -f src/app.py\n```\n"
    )
    async with orchestrator(config) as orch:
        report = await orch.run_tests(plans)
    assert sorted(by_id(report)) == [
        "unit/core::matrix@HEAD",
        "unit/core::matrix@main",
        "unit/core::readme",
        "unit/howto::howto",
    ]
    assert report.status == SessionStatus.COMPLETE
    assert set(report.categories) == {"unit"}
    assert report.categories["unit"].passed == 4


async def test_bad_plan_is_rejected_before_anything_runs(
    config: ParallelTestConfig, tmp_path: Path, outside: Path
) -> None:
    """A PlanError in one plan file means no session, no execution, nothing run."""
    plans = tmp_path / "plans"
    plans.mkdir()
    (plans / "a_good.toml").write_text(f'[[test]]\nid = "a"\nrun = "touch {outside}/ran"\n')
    (plans / "b_bad.toml").write_text('[[test]]\nid = "b"\nrun = "true"\nretries = "x"\n')
    async with orchestrator(config) as orch:
        with pytest.raises(PlanError, match=r"b_bad\.toml:4"):
            await orch.run_tests(plans)
        assert await orch.store.recent_sessions() == []
    assert not (outside / "ran").exists()


async def test_not_a_git_repo_raises_repo_error(
    tmp_path: Path, make_config: MakeConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pointing the orchestrator at a plain directory raises RepoError before anything runs."""
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(RepoError, match="not a git repository"):
        async with orchestrator(make_config(repo=plain)):
            raise AssertionError("entered an orchestrator on a non-repo")


async def test_repo_without_commits_raises_repo_error(
    tmp_path: Path, make_config: MakeConfig
) -> None:
    """A freshly initialised repo with no commit raises RepoError asking for a commit."""
    empty = tmp_path / "empty"
    empty.mkdir()
    GitRepo(empty).git("init", "--quiet")
    with pytest.raises(RepoError, match="no commits"):
        async with orchestrator(make_config(repo=empty)):
            raise AssertionError("entered an orchestrator on an empty repo")


async def test_attempt_environment_carries_the_parallel_orch_variables(
    repo: GitRepo, config: ParallelTestConfig, outside: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each attempt sees PARALLEL_ORCH_* (session, test, attempt, worker, worktree, SHA, JUnit)."""
    dump = outside / "env.json"
    script = f"import json, os; json.dump(dict(os.environ), open({str(dump)!r}, 'w'))"
    request = TestRequest(
        id="env/probe", command=(sys.executable, "-c", script), env={"MY_SETTING": "on"}
    )
    monkeypatch.setenv("PARALLEL_ORCH_TEST_ID", "an-outer-run")  # as when nested in a run
    monkeypatch.setenv("PARALLEL_ORCH_OUTER_ONLY", "1")
    async with orchestrator(config) as orch:
        report = await orch.run_tests([request])
    env = json.loads(dump.read_text())
    assert "PARALLEL_ORCH_OUTER_ONLY" not in env
    (result,) = report.completed_tests
    (attempt,) = result.attempts
    assert result.status == "passed"
    assert env["PARALLEL_ORCH_SESSION_ID"] == report.session_id
    assert env["PARALLEL_ORCH_TEST_ID"] == "env/probe"
    assert env["PARALLEL_ORCH_ATTEMPT"] == "1"
    assert env["PARALLEL_ORCH_WORKER"] == str(attempt.worker)
    assert env["PARALLEL_ORCH_WORKER"] in {"0", "1"}
    assert env["PARALLEL_ORCH_WORKTREE"] == attempt.worktree
    assert env["PARALLEL_ORCH_SHA"] == repo.head()
    junit = Path(env["PARALLEL_ORCH_JUNIT"])
    assert junit.suffix == ".xml"
    assert junit.is_relative_to(config.resolved_state_dir)
    assert env["MY_SETTING"] == "on"


async def test_attempt_numbers_count_up_across_retries(
    config: ParallelTestConfig, outside: Path
) -> None:
    """PARALLEL_ORCH_ATTEMPT is 1, then 2 on the retry."""
    seen = shlex.quote(str(outside / "attempts"))
    request = TestRequest(
        id="retry", command=f'echo "$PARALLEL_ORCH_ATTEMPT" >> {seen}; exit 1', retries=1
    )
    async with orchestrator(config) as orch:
        await orch.run_tests([request])
    assert (outside / "attempts").read_text().split() == ["1", "2"]


async def test_cwd_runs_the_command_in_that_subdirectory(
    config: ParallelTestConfig, outside: Path
) -> None:
    """A request's cwd is relative to its worktree."""
    out = shlex.quote(str(outside / "pwd"))
    request = TestRequest(id="cwd", command=f"pwd -P > {out}; test -f app.py", cwd="src")
    async with orchestrator(config) as orch:
        report = await orch.run_tests([request])
    (result,) = report.completed_tests
    assert result.status == "passed"
    worktree = await anyio.Path(result.attempts[0].worktree).resolve()
    assert (outside / "pwd").read_text().strip() == str(worktree / "src")


async def test_a_cwd_missing_at_the_commit_is_an_error_that_says_so(
    config: ParallelTestConfig, repo: GitRepo
) -> None:
    """A cwd the commit does not have ends `error` naming the directory and the commit."""
    request = TestRequest(id="cwd", command="true", cwd="no/such/dir")
    async with orchestrator(config) as orch:
        report = await orch.run_tests([request])
    (result,) = report.completed_tests
    assert result.status == "error"
    assert result.error == f"cwd 'no/such/dir' does not exist at commit {repo.head()[:12]}"
    assert result.error in await anyio.Path(result.attempts[0].log_path).read_text()


async def test_junit_results_are_counted_in_the_report(config: ParallelTestConfig) -> None:
    """junit=true parses $PARALLEL_ORCH_JUNIT into per-test and session case counts."""
    xml = (
        '<?xml version="1.0"?><testsuites><testsuite name="s" tests="5">'
        '<testcase classname="c" name="ok1"/><testcase classname="c" name="ok2"/>'
        '<testcase classname="c" name="bad"><failure message="no"/></testcase>'
        '<testcase classname="c" name="boom"><error message="e"/></testcase>'
        '<testcase classname="c" name="later"><skipped/></testcase>'
        "</testsuite></testsuites>"
    )
    write_junit = f"printf '%s' {shlex.quote(xml)} > \"$PARALLEL_ORCH_JUNIT\""
    requests = [
        TestRequest(id="with-junit", command=write_junit, junit=True),
        TestRequest(id="no-file", command="true", junit=True),
    ]
    async with orchestrator(config) as orch:
        report = await orch.run_tests(requests)
    results = {t.test_id: t for t in report.completed_tests}
    cases = results["with-junit"].cases
    assert cases is not None
    assert (cases.passed, cases.failed, cases.errors, cases.skipped) == (2, 1, 1, 1)
    assert results["no-file"].cases is None
    assert (report.cases.passed, report.cases.failed, report.cases.errors) == (2, 1, 1)
    assert report.cases.skipped == 1


async def test_report_json_has_the_design_keys(config: ParallelTestConfig) -> None:
    """The report serialises to JSON with every key DESIGN §6 names, and round-trips."""
    requests = [
        TestRequest(id="a", command="sleep 0.05", category="unit"),
        TestRequest(id="b", command="false", category="lint"),
    ]
    async with orchestrator(config) as orch:
        report = await orch.run_tests(requests)
    data = json.loads(report.model_dump_json())
    assert set(data) >= REPORT_KEYS
    assert data["num_workers"] == 2
    assert set(data["categories"]) == {"unit", "lint"}
    assert data["categories"]["lint"]["failed"] == 1
    assert set(data["duration_stats"]) >= {"sum", "mean", "p50", "p95", "p99", "max"}
    assert data["duration_stats"]["max"] >= 0.05
    assert data["duration_seconds"] > 0
    assert data["speedup"] > 0
    assert data["failed_tests"] == ["b"]
    assert ParallelTestReport.model_validate_json(report.model_dump_json()) == report


async def test_report_hash_is_stable_for_same_inputs_and_outcomes(
    repo: GitRepo, config: ParallelTestConfig
) -> None:
    """Same requests, commits and verdicts hash alike across sessions; another commit does not."""
    requests = [
        TestRequest(id="a", command="sleep 0.01"),
        TestRequest(id="b", command="sleep 0.02; false"),
    ]
    async with orchestrator(config) as orch:
        first = await orch.run_tests(requests)
        second = await orch.run_tests(requests)
        repo.commit({"new.txt": "changed\n"})
        moved = await orch.run_tests(requests)
    assert first.session_id != second.session_id
    assert first.report_hash == second.report_hash
    assert moved.report_hash != first.report_hash  # HEAD now names another commit


async def test_events_arrive_in_order_for_the_session(
    config: ParallelTestConfig, outside: Path
) -> None:
    """events() yields session.started, attempts, test.retrying, test.finished, session.finished."""
    requests = [
        TestRequest(id="ok", command="true"),
        TestRequest(id="flaky", command=counter_command(outside / "n", 2), retries=1),
    ]
    async with orchestrator(config) as orch, recording(orch) as recorder:
        report = await orch.run_tests(requests)
    mine = [e for e in recorder.events if e.session_id == report.session_id]
    types = [e.type for e in mine]
    assert types[0] is EventType.SESSION_STARTED
    assert mine[0].total == 2
    assert types[-1] is EventType.SESSION_FINISHED
    assert mine[-1].status == report.status == SessionStatus.COMPLETE
    assert types.count(EventType.SESSION_FINISHED) == 1

    flaky = [(e.type, e.attempt, e.status) for e in mine if e.test_id == "flaky"]
    assert flaky == [
        (EventType.ATTEMPT_STARTED, 1, None),
        (EventType.ATTEMPT_FINISHED, 1, "failed"),
        (EventType.TEST_RETRYING, 2, "failed"),
        (EventType.ATTEMPT_STARTED, 2, None),
        (EventType.ATTEMPT_FINISHED, 2, "passed"),
        (EventType.TEST_FINISHED, 2, "passed"),
    ]
    finished = next(e for e in mine if e.test_id == "flaky" and e.type is EventType.TEST_FINISHED)
    assert finished.flaky is True
    ok = [e.type for e in mine if e.test_id == "ok"]
    assert ok == [EventType.ATTEMPT_STARTED, EventType.ATTEMPT_FINISHED, EventType.TEST_FINISHED]


async def test_events_for_one_session_end_after_it_finishes(config: ParallelTestConfig) -> None:
    """events(session_id) stops by itself after that session's session.finished."""
    async with orchestrator(config) as orch:
        session_id = await orch.create_session([TestRequest(id="a", command="true")])
        seen = [e.type async for e in orch.events(session_id)]
        report = await orch.wait_for_session(session_id)
    assert seen[-1] is EventType.SESSION_FINISHED
    assert report.status == SessionStatus.COMPLETE


async def test_store_records_sessions_executions_and_attempts(
    repo: GitRepo, config: ParallelTestConfig
) -> None:
    """The SQLite store keeps each attempt's pid, process group, log path and exit code."""
    requests = [
        TestRequest(id="ok", command="echo out; echo err >&2"),
        TestRequest(id="bad", command="exit 7"),
    ]
    async with orchestrator(config) as orch:
        report = await orch.run_tests(requests)

    assert (config.resolved_state_dir / "orch.sqlite3").is_file()
    async with open_store(config.resolved_state_dir) as store:
        session = await store.get_session(report.session_id)
        executions = {e.test_id: e for e in await store.executions(report.session_id)}
        attempts = {a.execution_id: a for a in await store.attempts(report.session_id)}
    assert session.status == SessionStatus.PARTIAL_SUCCESS
    assert session.completed_at is not None
    assert session.num_workers == 2
    assert session.repo == str(repo.path.resolve())
    assert session.report_json is not None
    assert ParallelTestReport.model_validate_json(session.report_json) == report
    assert {k: e.status for k, e in executions.items()} == {"ok": "passed", "bad": "failed"}
    assert all(e.sha == repo.head() for e in executions.values())
    ok = attempts[executions["ok"].id or -1]
    bad = attempts[executions["bad"].id or -1]
    assert (ok.exit_code, bad.exit_code) == (0, 7)
    for attempt in (ok, bad):
        assert attempt.pid is not None
        assert attempt.pgid == attempt.pid  # the command leads its own process group
        assert attempt.completed_at is not None
        log_path = anyio.Path(attempt.log_path)
        assert await log_path.is_file()
        assert Path(attempt.log_path).is_relative_to(config.resolved_state_dir / "logs")
    assert (await anyio.Path(ok.log_path).read_text()).splitlines() == ["out", "err"]
    assert ok.output_tail.splitlines() == ["out", "err"]


async def test_ids_with_slashes_keep_logs_inside_the_log_folder(config: ParallelTestConfig) -> None:
    """Log paths derived from test ids never leave the session's log folder."""
    requests = [
        TestRequest(id="a/b/c", command="echo hi"),
        TestRequest(id="...", command="echo hi"),
        TestRequest(id="deep/x/y::z@feature/x#2", command="echo hi"),
    ]
    async with orchestrator(config) as orch:
        report = await orch.run_tests(requests)
    log_dir = config.resolved_state_dir / "logs" / report.session_id
    for result in report.completed_tests:
        path = anyio.Path(result.attempts[0].log_path)
        assert Path(path.parent) == log_dir
        assert await path.read_text() == "hi\n"


async def test_repo_subdirectory_works_as_repo(tmp_path: Path, make_config: MakeConfig) -> None:
    """A config pointing into a repo's subfolder runs at the repo's top level."""
    repo = make_git_repo(tmp_path / "nested-top")
    async with orchestrator(make_config(repo=repo.path / "src")) as orch:
        report = await orch.run_tests([TestRequest(id="a", command="test -f README.md")])
    assert report.status == SessionStatus.COMPLETE


async def test_report_hash_does_not_depend_on_where_the_plans_live(
    config: ParallelTestConfig, tmp_path: Path
) -> None:
    """The same plan content run from two directories (two CI workspaces) hashes the same."""
    plan = '[[test]]\nid = "a"\nrun = "true"\n\n[[test]]\nid = "b"\nrun = "false"\n'
    for where in ("ci-1", "ci-2"):
        (tmp_path / where / "plans").mkdir(parents=True)
        (tmp_path / where / "plans" / "suite.toml").write_text(plan)
    async with orchestrator(config) as orch:
        first = await orch.run_tests(tmp_path / "ci-1" / "plans")
        second = await orch.run_tests(tmp_path / "ci-2" / "plans")
    assert [t.test_id for t in first.completed_tests] == ["suite::a", "suite::b"]
    assert first.report_hash == second.report_hash
