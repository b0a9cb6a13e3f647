"""The orchestrator's lifecycle: waiting for work, and the executor seam behind the workers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.abc import TaskGroup

from parallel_orch import (
    ExecutionStatus,
    ParallelTestConfig,
    ParallelTestOrchestrator,
    RetryPolicy,
    SessionStatus,
    TestRequest,
)
from parallel_orch.executors.local import LocalExecutor
from parallel_orch.executors.protocol import (
    AttemptHooks,
    AttemptResult,
    AttemptSpec,
    Executor,
    LeftoverAttempt,
    Placement,
)
from parallel_orch.store import open_store, utcnow
from tests.helpers import WAIT_SECONDS, GitRepo, make_fifo, orchestrator


def with_executor(config: ParallelTestConfig, executor: Executor) -> ParallelTestOrchestrator:
    """An orchestrator whose attempts go to ``executor``, retrying at once."""
    return ParallelTestOrchestrator(config, retry_policy=RetryPolicy.zero_wait(), executor=executor)


async def test_a_waiter_wakes_when_sessions_created_after_it_began_end(
    config: ParallelTestConfig, tmp_path: Path
) -> None:
    """wait_for_completion() wakes once every session ends, those created while it waited too."""
    gate = make_fifo(tmp_path / "gate")
    async with orchestrator(config) as orch:
        first = await orch.create_session([TestRequest(id="held", command=f"cat {gate}")])
        woke = anyio.Event()

        async def wait() -> None:
            await orch.wait_for_completion()
            woke.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(wait)
            await anyio.wait_all_tasks_blocked()
            second = await orch.create_session([TestRequest(id="quick", command="true")])
            assert (await orch.wait_for_session(second)).status == SessionStatus.COMPLETE
            assert not woke.is_set()  # the first session still runs
            await anyio.to_thread.run_sync(gate.write_text, "go")
            with anyio.fail_after(WAIT_SECONDS):
                await woke.wait()
        assert (await orch.report(first)).status == SessionStatus.COMPLETE


@dataclass
class RecordingExecutor:
    """The local executor, with every spec it was handed and every hook it called recorded."""

    inner: LocalExecutor
    specs: list[AttemptSpec] = field(default_factory=list)
    placements: list[Placement] = field(default_factory=list)

    async def open(self) -> None:
        await self.inner.open()

    def work_in(self, tg: TaskGroup | None) -> None:
        self.inner.work_in(tg)

    async def close(self) -> None:
        await self.inner.close()

    def status(self) -> dict[str, Any]:
        return self.inner.status()

    async def kill_leftovers(
        self, session_id: str, attempts: Sequence[LeftoverAttempt]
    ) -> set[int]:
        return await self.inner.kill_leftovers(session_id, attempts)

    def width(self) -> int:
        return self.inner.width()

    def slots(self) -> int:
        return self.inner.slots()

    async def wait_slot(self, index: int) -> None:
        await self.inner.wait_slot(index)

    def when_lost(self, callback: Callable[[str], Awaitable[None]]) -> None:
        self.inner.when_lost(callback)

    async def run(self, spec: AttemptSpec, hooks: AttemptHooks) -> AttemptResult:
        self.specs.append(spec)
        executor = self

        class Seen:
            async def placed(self, placement: Placement) -> None:
                executor.placements.append(placement)
                await hooks.placed(placement)

            async def spawned(self, pid: int, pgid: int) -> None:
                await hooks.spawned(pid, pgid)

            async def stopped(self, result: AttemptResult) -> None:
                await hooks.stopped(result)

        return await self.inner.run(spec, Seen())


async def test_the_worker_hands_the_executor_the_request_its_sha_and_the_worktree_to_avoid(
    config: ParallelTestConfig, repo: GitRepo, tmp_path: Path
) -> None:
    """A retry's spec names attempt 2, the same SHA and the worktree attempt 1 failed in."""
    marker = tmp_path / "failed-once"
    executor = RecordingExecutor(LocalExecutor(config))
    request = TestRequest(
        id="flaky", command=f"test -e {marker} || {{ touch {marker}; exit 1; }}", retries=1
    )
    async with with_executor(config, executor) as orch:
        report = await orch.run_tests([request])
    assert report.tests_flaky == 1
    first, second = executor.specs
    assert (first.attempt, second.attempt) == (1, 2)
    assert first.sha == second.sha == repo.head()
    assert first.request == second.request == request
    assert first.avoid_worktree is None
    assert second.avoid_worktree == Path(executor.placements[0].worktree).name
    attempts = report.completed_tests[0].attempts
    assert [a.worktree for a in attempts] == [p.worktree for p in executor.placements]


@dataclass
class HangingExecutor:
    """A stand-in for a remote executor: its attempts run until the awaited call is cancelled."""

    started: anyio.Event = field(default_factory=anyio.Event)
    cancelled: list[str] = field(default_factory=list)

    async def open(self) -> None:
        return None

    def work_in(self, tg: TaskGroup | None) -> None:
        return None

    async def close(self) -> None:
        return None

    def status(self) -> dict[str, Any]:
        return {}

    async def kill_leftovers(
        self, session_id: str, attempts: Sequence[LeftoverAttempt]
    ) -> set[int]:
        return set()

    def width(self) -> int:
        return 1

    def slots(self) -> int:
        return 1

    async def wait_slot(self, index: int) -> None:
        return None

    def when_lost(self, callback: Callable[[str], Awaitable[None]]) -> None:
        return None

    async def run(self, spec: AttemptSpec, hooks: AttemptHooks) -> AttemptResult:
        began = utcnow()
        await hooks.placed(Placement(worktree="/remote/wt-1", host="worker-a"))
        self.started.set()
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            self.cancelled.append(spec.test_id)
            with anyio.CancelScope(shield=True):
                await hooks.stopped(
                    AttemptResult(
                        status=ExecutionStatus.CANCELLED,
                        exit_code=None,
                        started_at=began,
                        duration_seconds=0.5,
                        output_tail="killed on worker-a\n",
                        placement=Placement(worktree="/remote/wt-1", host="worker-a"),
                    )
                )
            raise
        raise AssertionError("unreachable")


async def test_cancelling_a_session_cancels_the_executors_awaited_run(
    config: ParallelTestConfig,
) -> None:
    """cancel_session() stops an attempt by cancelling the executor's run; its tail is kept."""
    executor = HangingExecutor()
    async with with_executor(config, executor) as orch:
        session_id = await orch.create_session([TestRequest(id="remote", command="true")])
        with anyio.fail_after(WAIT_SECONDS):
            await executor.started.wait()
            assert await orch.cancel_session(session_id)
        report = await orch.wait_for_session(session_id)
    assert executor.cancelled == ["remote"]
    assert report.status == SessionStatus.CANCELLED
    (attempt,) = report.completed_tests[0].attempts
    assert (attempt.status, attempt.worktree) == ("cancelled", "/remote/wt-1")
    async with open_store(config.resolved_state_dir) as store:
        (stored,) = await store.attempts(session_id)
    assert stored.output_tail == "killed on worker-a\n"


@dataclass
class FailingStart(RecordingExecutor):
    """An executor that cannot start its background work."""

    closed: bool = False

    def work_in(self, tg: TaskGroup | None) -> None:
        if tg is not None:
            raise RuntimeError("no background work today")

    async def close(self) -> None:
        self.closed = True
        await super().close()


async def test_a_start_that_fails_inside_async_with_closes_what_was_opened(
    config: ParallelTestConfig,
) -> None:
    """The executor is closed and the caller's cancel scopes stay intact when start() fails."""
    executor = FailingStart(LocalExecutor(config))
    with anyio.fail_after(WAIT_SECONDS):  # an enclosing scope the failure must not corrupt
        with pytest.raises(RuntimeError, match="no background work today"):
            async with with_executor(config, executor):
                raise AssertionError("the block must not run")
    assert executor.closed


async def test_reports_can_be_read_after_the_orchestrator_closed(
    config: ParallelTestConfig,
) -> None:
    """report() and wait_for_session() after `async with` read the stored report."""
    async with orchestrator(config) as orch:
        session_id = await orch.create_session([TestRequest(id="t", command="true")])
    assert (await orch.report(session_id)).status == SessionStatus.COMPLETE
    assert (await orch.wait_for_session(session_id)).tests_passed == 1


@dataclass
class LosingExecutor(RecordingExecutor):
    """The local executor, but the first ``lose`` attempts come back ``interrupted``, as from
    a fleet worker that died under them."""

    lose: int = 0

    async def run(self, spec: AttemptSpec, hooks: AttemptHooks) -> AttemptResult:
        result = await super().run(spec, hooks)
        if len(self.specs) > self.lose:
            return result
        return replace(result, status=ExecutionStatus.INTERRUPTED, error="worker lost")


async def test_an_attempt_lost_with_its_machine_runs_again_without_counting_as_a_retry(
    config: ParallelTestConfig,
) -> None:
    """A lost attempt goes again at once (no retries needed); the test is not flaky."""
    executor = LosingExecutor(LocalExecutor(config), lose=1)
    async with with_executor(config, executor) as orch:
        report = await orch.run_tests([TestRequest(id="t", command="true", retries=0)])
    [test] = report.completed_tests
    assert [a.status for a in test.attempts] == ["interrupted", "passed"]
    assert (test.status, test.flaky) == ("passed", False)


async def test_a_test_whose_machines_keep_dying_ends_interrupted_after_max_lost(
    config: ParallelTestConfig,
) -> None:
    """Lost attempts go again ``max_lost`` times, then the test is ``interrupted``."""
    executor = LosingExecutor(LocalExecutor(config), lose=100)
    async with with_executor(config, executor) as orch:
        report = await orch.run_tests([TestRequest(id="t", command="true", retries=3)])
    [test] = report.completed_tests
    assert [a.status for a in test.attempts] == ["interrupted"] * (1 + RetryPolicy().max_lost)
    assert test.status == "interrupted"
