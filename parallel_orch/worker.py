"""ExecutionWorker: take a request from the queue, have the executor run it, settle it.

The worker knows its collaborators, not the orchestrator: the queue it takes
from, the registry of sessions (to skip a stopped session's requests and to
let a cancel find the attempt in flight), the executor that runs the attempt
and the settler that records it and decides what follows.
"""

from __future__ import annotations

import functools
import secrets
import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio

from parallel_orch import sharding
from parallel_orch.events import Event
from parallel_orch.exceptions import OrchError, OrchestratorClosedError
from parallel_orch.executors.protocol import AttemptResult, AttemptSpec, Executor
from parallel_orch.intake import Intake
from parallel_orch.models import ExecutionStatus
from parallel_orch.names import safe_name
from parallel_orch.queue import QueueItem, TestQueue
from parallel_orch.report import coverage
from parallel_orch.sessions import Running, SessionRegistry, SessionState, Spawn
from parallel_orch.settle import Settler
from parallel_orch.store import AttemptEnd, utcnow


class ExecutionWorker:
    """Worker ``index`` (0..N-1): runs queue items one at a time until the queue closes."""

    def __init__(
        self,
        index: int,
        *,
        queue: TestQueue,
        registry: SessionRegistry,
        executor: Executor,
        settler: Settler,
        spawn: Spawn,
        state_dir: Path,
        intake: Intake,
    ) -> None:
        """:param intake: admissions in progress, let finish before an attempt starts
        (for at most :data:`~parallel_orch.intake.YIELD_SECONDS`)."""
        self.index = index
        self.queue = queue
        self.registry = registry
        self.executor = executor
        self.settler = settler
        self.spawn = spawn
        self.state_dir = state_dir
        self.intake = intake
        self.current: Running | None = None
        self._finishing: anyio.Event | None = None  # the previous attempt's record
        # TEST_TMPDIR's parent for all its attempts, left empty by each (see attempt_files);
        # its own name, as another orchestrator may share the state dir
        self.scratch_dir = state_dir / "scratch" / f"w{index}-{secrets.token_hex(4)}"

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        task_status.started()
        try:
            await self._run()
        finally:
            with anyio.CancelScope(shield=True):
                remove = functools.partial(shutil.rmtree, self.scratch_dir, ignore_errors=True)
                await anyio.to_thread.run_sync(remove)

    async def _run(self) -> None:
        while True:
            with self.queue.until_closed():  # a fleet's worker loop waits for room there
                await self.executor.wait_slot(self.index)
            try:
                item = await self.queue.get()
            except OrchestratorClosedError:
                return
            # a burst of submits answered before this one's spawns; a session stopped
            # meanwhile has recorded this item with its others that never started
            await self.intake.quiet()
            state = self.registry.get(item.session_id)
            if state is None or state.stopping is not None:
                continue  # its session was stopped while the item waited
            running = Running(
                session_id=state.id,
                execution_id=item.execution_id,
                test_id=item.test_id,
                attempt=item.attempt,
                worker=self.index,
                scope=anyio.CancelScope(),
            )
            # registered before any await, so a cancel sees it
            self.current = running
            self.registry.running.add(running)
            try:
                await self._attempt(item, state, running)
            finally:
                self.current = None
                if not running.finishing:
                    self._done(running)

    def status(self) -> dict[str, Any]:
        """What this worker runs now, for ``status``."""
        current = self.current
        return {
            "worker": self.index,
            "test_id": current.test_id if current else None,
            "session_id": current.session_id if current else None,
        }

    def _spec(self, item: QueueItem) -> AttemptSpec:
        name = f"{safe_name(item.test_id)}.{item.attempt}"
        # the session's one folder holds its attempts' logs and JUnit files: a folder made
        # is an inode allocated, which costs up to 0.5 ms on some disks (bench/README)
        folder = self.state_dir / "logs" / item.session_id
        return AttemptSpec(
            session_id=item.session_id,
            execution_id=item.execution_id,
            request=item.request,
            sha=item.sha,
            attempt=item.attempt,
            worker=self.index,
            log_path=folder / f"{name}.log",
            junit_path=folder / f"{name}.xml",
            coverage_file=(
                coverage.data_file(self.state_dir, item.session_id, name)
                if item.request.coverage
                else None
            ),
            avoid_worktree=item.avoid_worktree,
            scratch_dir=self.scratch_dir,
            shard_durations=(
                sharding.durations_path(self.state_dir, item.session_id, item.request.base_id)
                if item.request.shard
                else None
            ),
        )

    async def _attempt(self, item: QueueItem, state: SessionState, running: Running) -> None:
        if item.first_started is None:
            item.first_started = time.monotonic()
        started = time.monotonic()
        spec = self._spec(item)
        recorder = self.settler.recorder(spec)
        result: AttemptResult | None = None
        failure: BaseException | None = None
        try:
            with running.scope:
                result = await self.executor.run(spec, recorder)
        except BaseException as exc:
            failure = exc  # recorded below, then on its way
            raise
        finally:
            with anyio.CancelScope(shield=True):
                result = _final(result, recorder.stopped_result, running, started, failure)
                end, finished = await recorder.end(result)
                if result.status is ExecutionStatus.PASSED:
                    self._finish_later(item, state, end, finished, result.worktree, running)
                else:  # retries and max_failures decide before this worker runs anything else
                    if self._finishing is not None:
                        await self._finishing.wait()
                    await self.settler.settle(item, state, end, finished, result.worktree)

    def _done(self, running: Running) -> None:
        self.registry.running.discard(running)
        running.done.set()

    def _finish_later(
        self,
        item: QueueItem,
        state: SessionState,
        end: AttemptEnd,
        finished: Event,
        worktree: str | None,
        running: Running,
    ) -> None:
        """Record a passed attempt's end while this worker leases for its next one.

        One finishing attempt per worker at a time, in order; ``running.done``
        is set only once it is recorded, so a cancel waits for the record.
        Other outcomes are recorded before the worker moves on, so that retries
        and ``max_failures`` are decided first.
        """
        previous, self._finishing = self._finishing, anyio.Event()
        done = self._finishing
        running.finishing = True

        async def finish() -> None:
            with anyio.CancelScope(shield=True):
                try:
                    if previous is not None:
                        await previous.wait()
                    await self.settler.settle(item, state, end, finished, worktree)
                finally:
                    self._done(running)
                    done.set()

        self.spawn(finish)


def _final(
    result: AttemptResult | None,
    stopped: AttemptResult | None,
    running: Running,
    started: float,
    failure: BaseException | None,
) -> AttemptResult:
    """The attempt's result as recorded: a stop on purpose records the reason for it, and
    an executor that failed before it could say anything records why."""
    if running.stop_reason is not None and running.scope.cancelled_caught:
        base = result or stopped
        if base is None:
            return _nothing(running.stop_reason, started)
        return replace(base, status=running.stop_reason)
    reported = result or stopped
    if reported is not None:
        return reported
    if isinstance(failure, OrchError):
        return _nothing(ExecutionStatus.ERROR, started, failure.message)
    return _nothing(ExecutionStatus.CANCELLED, started)


def _nothing(status: ExecutionStatus, started: float, error: str | None = None) -> AttemptResult:
    """The result of an attempt stopped before its executor could say anything."""
    return AttemptResult(
        status=status,
        exit_code=None,
        started_at=utcnow(),
        duration_seconds=time.monotonic() - started,
        error=error,
    )
