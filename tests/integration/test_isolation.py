"""Attempts cannot leak: timeouts kill the whole process group, worktrees come back clean."""

from __future__ import annotations

import shlex
import time
from pathlib import Path

import anyio

from parallel_orch import ExecutionStatus, ParallelTestConfig, SessionStatus, TestRequest
from tests.helpers import GitRepo, MakeConfig, orchestrator, process_alive


def q(path: Path) -> str:
    return shlex.quote(str(path))


async def test_timeout_kills_a_term_ignoring_command_and_its_grandchild(
    make_config: MakeConfig, outside: Path
) -> None:
    """On timeout the whole group dies, even a SIGTERM-ignoring child; the retry starts clean."""
    config = make_config(num_workers=1, spare_worktrees=0, kill_grace_seconds=0.3)
    parent, grandchild = outside / "parent.pid", outside / "grandchild.pid"
    hang = (
        "trap '' TERM\n"
        "touch left-behind.txt\n"
        f"sleep 300 & echo $! > {q(grandchild)}\n"
        f"echo $$ > {q(parent)}\n"
        "while :; do sleep 1; done\n"
    )
    check = 'test ! -e left-behind.txt && test -z "$(git status --porcelain --ignored)"'
    command = f'if [ "$PARALLEL_ORCH_ATTEMPT" = 1 ]; then\n{hang}else\n{check}\nfi'
    request = TestRequest(id="hang", command=command, timeout_seconds=1.0, retries=1)

    started = time.monotonic()
    async with orchestrator(config) as orch:
        report = await orch.run_tests([request])
    elapsed = time.monotonic() - started

    (result,) = report.completed_tests
    first, second = result.attempts
    assert first.status == ExecutionStatus.TIMED_OUT
    assert "timed out" in (first.error or "")
    assert second.worktree == first.worktree  # one worker: the same worktree, cleaned
    assert second.status == ExecutionStatus.PASSED, await anyio.Path(second.log_path).read_text()
    assert result.status == ExecutionStatus.PASSED
    assert result.flaky is True
    for pid_file in (parent, grandchild):
        pid = int(pid_file.read_text())
        assert not process_alive(pid), f"{pid_file.name} {pid} survived the timeout"
    assert "timed out after 1s" in await anyio.Path(first.log_path).read_text()
    assert elapsed < 10


async def test_timed_out_test_without_retries_ends_timed_out(config: ParallelTestConfig) -> None:
    """A timeout with no retries left is the execution's final status; the session failed."""
    request = TestRequest(id="slow", command="sleep 30", timeout_seconds=0.2)
    async with orchestrator(config) as orch:
        report = await orch.run_tests([request])
    assert report.completed_tests[0].status == ExecutionStatus.TIMED_OUT
    assert report.tests_timed_out == 1
    assert report.status == SessionStatus.FAILED
    assert report.failed_tests == ("slow",)


async def test_background_children_do_not_outlive_a_passing_attempt(
    config: ParallelTestConfig, outside: Path
) -> None:
    """A daemonised child left behind by a command that exits 0 is killed with its group."""
    pid_file = outside / "bg.pid"
    request = TestRequest(id="bg", command=f"sleep 300 & echo $! > {q(pid_file)}; exit 0")
    async with orchestrator(config) as orch:
        report = await orch.run_tests([request])
    assert report.status == SessionStatus.COMPLETE
    assert not process_alive(int(pid_file.read_text()))


async def test_next_attempt_sees_a_clean_checkout_at_its_own_commit(
    repo: GitRepo, make_config: MakeConfig, outside: Path
) -> None:
    """After a test trashes its worktree, the next one there gets a clean checkout plus `keep`."""
    other = repo.branch("other", {"other-only.txt": "other\n", "README.md": "# other\n"})
    main = repo.head("main")
    assert other != main
    trash = (
        "set -e\n"
        "git checkout -q other\n"
        "rm README.md\n"
        "echo changed >> src/app.py\n"
        "git rm -q --cached src/app.py\n"  # a staged deletion in the index too
        "echo scribble > other-only.txt\n"
        "echo junk > untracked.txt\n"
        "mkdir -p build && echo obj > build/out.o\n"  # ignored by .gitignore
        "echo log > debug.log\n"  # ignored by .gitignore
        "mkdir -p cache && echo warm > cache/data\n"  # kept by the next test
    )
    inspect = (
        f"git rev-parse HEAD > {q(outside / 'head')}\n"
        f"git status --porcelain --ignored > {q(outside / 'status')}\n"
        f"cat README.md src/app.py > {q(outside / 'content')}\n"
        f"ls -A > {q(outside / 'ls')}\n"
        f"cat cache/data > {q(outside / 'cache')} 2>&1 || true\n"
    )
    requests = [
        TestRequest(id="trash", command=trash, keep=("cache/",), priority=1),
        TestRequest(id="inspect", command=inspect, keep=("cache/",)),
    ]
    async with orchestrator(make_config(num_workers=1)) as orch:
        report = await orch.run_tests(requests)

    results = {t.test_id: t for t in report.completed_tests}
    assert report.status == SessionStatus.COMPLETE, report.completed_tests
    assert results["trash"].attempts[0].worktree == results["inspect"].attempts[0].worktree
    assert (outside / "head").read_text().strip() == main
    assert (outside / "status").read_text() == "?? cache/\n"
    assert (outside / "content").read_text() == "# demo\nprint('hello')\n"
    assert sorted((outside / "ls").read_text().split()) == [
        ".git",
        ".gitignore",
        "README.md",
        "cache",
        "src",
    ]
    assert (outside / "cache").read_text() == "warm\n"


async def test_keep_only_protects_what_the_next_request_keeps(
    make_config: MakeConfig, outside: Path
) -> None:
    """Paths not in the next request's `keep` are cleaned, even if an earlier request kept them."""
    requests = [
        TestRequest(
            id="warm", command="mkdir -p .venv && touch .venv/ok", keep=(".venv/",), priority=2
        ),
        TestRequest(
            id="keeps",
            command=f"test -e .venv/ok && echo yes > {q(outside / 'kept')}",
            keep=(".venv/",),
            priority=1,
        ),
        TestRequest(id="cleans", command="test ! -e .venv"),
    ]
    async with orchestrator(make_config(num_workers=1)) as orch:
        report = await orch.run_tests(requests)
    assert {t.test_id: t.status for t in report.completed_tests} == {
        "warm": "passed",
        "keeps": "passed",
        "cleans": "passed",
    }
    assert (outside / "kept").read_text() == "yes\n"


async def test_setup_runs_once_per_worktree_and_commit(
    repo: GitRepo, make_config: MakeConfig, outside: Path
) -> None:
    """`setup` runs once per worktree per (commit, setup) pair, before the command."""
    log = q(outside / "setups")
    setup = f'echo "$PARALLEL_ORCH_SHA" >> {log}; touch .venv-ready'
    old = repo.head()
    repo.commit({"v2.txt": "2\n"})
    requests = [
        TestRequest(
            id=f"t{n}",
            command="test -e .venv-ready",
            setup=setup,
            keep=(".venv-ready",),
            priority=-n,
        )
        for n in range(3)
    ]
    requests.append(
        TestRequest(id="old", command="test -e .venv-ready", setup=setup, ref=old, priority=-9)
    )
    async with orchestrator(make_config(num_workers=1)) as orch:
        report = await orch.run_tests(requests)
    assert report.status == SessionStatus.COMPLETE, [t.error for t in report.completed_tests]
    assert (outside / "setups").read_text().split() == [repo.head(), old]


async def test_failing_setup_is_an_error_not_a_failure(config: ParallelTestConfig) -> None:
    """A setup that fails ends the attempt as `error` (infrastructure), naming the setup."""
    request = TestRequest(id="t", command="true", setup="exit 4")
    async with orchestrator(config) as orch:
        report = await orch.run_tests([request])
    (result,) = report.completed_tests
    assert result.status == ExecutionStatus.ERROR
    assert "setup failed" in (result.attempts[0].error or "")
    assert report.tests_errored == 1


async def test_unstartable_command_is_an_error(config: ParallelTestConfig) -> None:
    """A command list naming a missing program ends `error` with the reason."""
    request = TestRequest(id="t", command=("/nonexistent/program",))
    async with orchestrator(config) as orch:
        report = await orch.run_tests([request])
    (result,) = report.completed_tests
    assert result.status == ExecutionStatus.ERROR
    assert "cannot start" in (result.attempts[0].error or "")


async def test_setup_runs_again_when_nothing_keeps_its_output(
    make_config: MakeConfig, outside: Path
) -> None:
    """Without `keep`, cleaning removes what setup made, so setup runs before every attempt."""
    counter = outside / "setups"
    request = TestRequest(
        id="s::needs-setup",
        command="test -f made-by-setup",
        setup=f"touch made-by-setup && echo x >> {counter}",
    )
    async with orchestrator(make_config(num_workers=1)) as orch:
        first = await orch.run_tests([request])
        second = await orch.run_tests([request])
    assert (first.status, second.status) == ("complete", "complete")
    assert counter.read_text().count("x") == 2
