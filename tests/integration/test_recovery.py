"""A session whose owner died is recovered at the next start (DESIGN §5 Store)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import anyio

from parallel_orch import (
    ExecutionStatus,
    ParallelTestConfig,
    ParallelTestOrchestrator,
    RetryPolicy,
    SessionStatus,
    TestRequest,
)
from parallel_orch.procs import owner_alive, owner_token
from parallel_orch.store import NewExecution, open_store
from tests.helpers import GitRepo, MakeConfig, make_fifo, orchestrator, process_alive, read_fifo


def dead_owner_token() -> str:
    """The owner token of a process that has exited."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    token = owner_token(child.pid)
    child.wait()
    assert not owner_alive(token)
    return token


async def test_session_of_a_dead_owner_is_marked_interrupted_and_its_group_killed(
    repo: GitRepo, config: ParallelTestConfig
) -> None:
    """At start, a `running` session of a dead process becomes interrupted; its processes die."""
    state_dir = config.resolved_state_dir
    sha = repo.head()
    running = TestRequest(id="was-running", command="sleep 60")
    waiting = TestRequest(id="was-waiting", command="true")
    session_id = "deadbeef0001"
    # What the dead owner left: an attempt still running in its own process group.
    leftover = await anyio.open_process(
        ["sleep", "60"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env={**os.environ, "PARALLEL_ORCH_SESSION_ID": session_id},
    )
    try:
        async with open_store(state_dir) as store:
            running_id, _waiting_id = await store.create_session(
                session_id,
                num_workers=2,
                repo=str(repo.path),
                plan_paths=[],
                plan_key="k",
                owner=dead_owner_token(),
                executions=[NewExecution(running, sha), NewExecution(waiting, sha)],
            )
            attempt_id = await store.start_attempt(
                running_id, session_id, number=1, worker=0, worktree="", log_path=""
            )
            await store.set_attempt_process(attempt_id, leftover.pid, leftover.pid)

        async with orchestrator(config) as orch:
            report = await orch.report(session_id)
            fresh = await orch.run_tests([TestRequest(id="new", command="true")])

        with anyio.fail_after(10):
            assert await leftover.wait() == -signal.SIGKILL  # killed by the recovery
    finally:
        if leftover.returncode is None:
            leftover.kill()
        await leftover.aclose()

    assert report.status == SessionStatus.INTERRUPTED
    statuses = {t.test_id: t.status for t in report.completed_tests}
    assert statuses == {"was-running": "interrupted", "was-waiting": "interrupted"}
    assert report.tests_interrupted == 2
    assert fresh.status == SessionStatus.COMPLETE
    async with open_store(state_dir) as store:
        session = await store.get_session(session_id)
        (attempt,) = await store.attempts(session_id)
    assert session.status == SessionStatus.INTERRUPTED
    assert session.completed_at is not None
    assert attempt.status == ExecutionStatus.INTERRUPTED
    assert attempt.error is not None and "died" in attempt.error


async def test_session_of_a_live_owner_is_left_alone(
    repo: GitRepo, config: ParallelTestConfig
) -> None:
    """A `running` session whose owner is alive (another orchestrator) is not touched."""
    session_id = "alive0000001"
    async with open_store(config.resolved_state_dir) as store:
        await store.create_session(
            session_id,
            num_workers=1,
            repo=str(repo.path),
            plan_paths=[],
            plan_key="k",
            owner=owner_token(os.getpid()),
            executions=[NewExecution(TestRequest(id="t", command="true"), repo.head())],
        )
    async with orchestrator(config):
        pass
    async with open_store(config.resolved_state_dir) as store:
        session = await store.get_session(session_id)
        (execution,) = await store.executions(session_id)
    assert session.status == SessionStatus.RUNNING
    assert execution.status == ExecutionStatus.PENDING


async def test_resume_runs_what_a_dead_owner_left_unfinished(
    repo: GitRepo, config: ParallelTestConfig
) -> None:
    """With resume=True, a dead owner's unfinished requests run again; finished ones stay."""
    session_id = "resume000001"
    sha = repo.head()
    async with open_store(config.resolved_state_dir) as store:
        done_id, _pending_id = await store.create_session(
            session_id,
            num_workers=2,
            repo=str(repo.path),
            plan_paths=[],
            plan_key="k",
            owner=dead_owner_token(),
            executions=[
                NewExecution(TestRequest(id="done", command="false"), sha),
                NewExecution(TestRequest(id="pending", command="test -f README.md"), sha),
            ],
        )
        await store.finish_execution(done_id, ExecutionStatus.PASSED, duration_seconds=0.1)

    async with ParallelTestOrchestrator(
        config, retry_policy=RetryPolicy.zero_wait(), resume=True
    ) as orch:
        report = await orch.wait_for_session(session_id)
    assert {t.test_id: t.status for t in report.completed_tests} == {
        "done": "passed",
        "pending": "passed",
    }
    assert report.status == SessionStatus.COMPLETE


CRASHING_OWNER = """
import sys
from pathlib import Path

import anyio

from parallel_orch import ParallelTestConfig, ParallelTestOrchestrator, TestRequest

repo, state, worktrees, fifo = sys.argv[1:5]


async def main() -> None:
    config = ParallelTestConfig(
        repo=Path(repo), state_dir=Path(state), worktree_base_dir=Path(worktrees), num_workers=1
    )
    command = f"echo $$ > {fifo}; exec sleep 60"
    async with ParallelTestOrchestrator(config) as orch:
        await orch.run_tests([TestRequest(id="long", command=command)])


anyio.run(main)
"""


async def test_next_start_cleans_up_after_a_killed_orchestrator(
    repo: GitRepo, make_config: MakeConfig, outside: Path
) -> None:
    """After a SIGKILLed orchestrator, the next start kills its attempt and reuses its worktree."""
    config = make_config(num_workers=1)
    started = make_fifo(outside / "started")
    args = [repo.path, config.resolved_state_dir, config.resolved_worktree_dir, started]
    owner = await anyio.open_process(
        [sys.executable, "-c", CRASHING_OWNER, *map(str, args)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    async with owner:
        attempt_pid = int(await read_fifo(started))
        owner.kill()
        with anyio.fail_after(10):
            await owner.wait()
    assert process_alive(attempt_pid)  # its own process group outlived the owner

    async with orchestrator(config) as orch:
        (crashed,) = await orch.store.sessions_with_status(SessionStatus.INTERRUPTED)
        old = await orch.report(crashed.id)
        fresh = await orch.run_tests([TestRequest(id="next", command="true")])

    assert not process_alive(attempt_pid)
    assert old.completed_tests[0].status == ExecutionStatus.INTERRUPTED
    old_worktree = old.completed_tests[0].attempts[0].worktree
    assert fresh.completed_tests[0].attempts[0].worktree == old_worktree
    assert [e for e in repo.worktree_list() if "prunable" in e or "locked" in e] == []
