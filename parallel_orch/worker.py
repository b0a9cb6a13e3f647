"""ExecutionWorker: take a request, lease a worktree, run the attempt, record it."""

from __future__ import annotations

import logging
import os
import re
import time
from hashlib import sha1
from pathlib import Path
from typing import IO, TYPE_CHECKING

import anyio

from parallel_orch import junit, runner
from parallel_orch.events import Event, EventType
from parallel_orch.exceptions import OrchestratorClosedError, WorktreeError
from parallel_orch.models import ExecutionStatus, TestRequest
from parallel_orch.queue import QueueItem
from parallel_orch.sessions import Running, SessionState
from parallel_orch.store import JUnitCounts
from parallel_orch.worktrees import Worktree

if TYPE_CHECKING:
    from parallel_orch.orchestrator import ParallelTestOrchestrator

log = logging.getLogger(__name__)

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
ENV_PREFIX = "PARALLEL_ORCH_"


def safe_name(test_id: str) -> str:
    """A file name for ``test_id`` that cannot leave its folder, unique per id."""
    digest = sha1(test_id.encode(), usedforsecurity=False).hexdigest()[:8]
    stem = _UNSAFE.sub("_", test_id).strip("._")[:80] or "test"
    return f"{stem}-{digest}"


def attempt_env(
    request: TestRequest,
    *,
    session_id: str,
    attempt: int,
    worker: int,
    worktree: Path,
    sha: str,
    junit_path: Path,
) -> dict[str, str]:
    """The inherited environment minus our own settings, the request's env, then ours."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    env.update(request.env)
    env.update(
        PARALLEL_ORCH_SESSION_ID=session_id,
        PARALLEL_ORCH_TEST_ID=request.id,
        PARALLEL_ORCH_ATTEMPT=str(attempt),
        PARALLEL_ORCH_WORKER=str(worker),
        PARALLEL_ORCH_WORKTREE=str(worktree),
        PARALLEL_ORCH_SHA=sha,
        PARALLEL_ORCH_JUNIT=str(junit_path),
    )
    return env


class ExecutionWorker:
    """Worker ``index`` (0..N-1): runs queue items one at a time until the queue closes."""

    def __init__(self, index: int, orch: ParallelTestOrchestrator) -> None:
        self.index = index
        self.orch = orch
        self.current: Running | None = None

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        task_status.started()
        while True:
            try:
                item = await self.orch.queue.get()
            except OrchestratorClosedError:
                return
            state = self.orch.session_state(item.session_id)
            if state is None or state.stopping is not None:
                continue  # its session was stopped while the item waited
            request = state.requests[item.execution_id]
            running = Running(
                session_id=state.id,
                execution_id=item.execution_id,
                test_id=request.id,
                attempt=item.attempt,
                worker=self.index,
                scope=anyio.CancelScope(),
            )
            # registered before any await, so a cancel_session() sees it
            self.current = running
            self.orch.running.add(running)
            try:
                await self.run_item(item, state, running)
            finally:
                self.orch.running.discard(running)
                self.current = None
                running.done.set()

    async def run_item(self, item: QueueItem, state: SessionState, running: Running) -> None:
        orch = self.orch
        request = state.requests[item.execution_id]
        sha = state.shas[item.execution_id]
        if item.first_started is None:
            item.first_started = time.monotonic()
        name = f"{safe_name(request.id)}.{item.attempt}"
        log_dir = orch.state_dir / "logs" / state.id
        log_path = log_dir / f"{name}.log"
        junit_path = orch.state_dir / "junit" / state.id / f"{name}.xml"
        await anyio.to_thread.run_sync(_make_dirs, log_dir, junit_path.parent)
        await self._attempt(item, state, request, sha, running, log_path, junit_path)

    async def _attempt(
        self,
        item: QueueItem,
        state: SessionState,
        request: TestRequest,
        sha: str,
        running: Running,
        log_path: Path,
        junit_path: Path,
    ) -> None:
        orch = self.orch
        wt: Worktree | None = None
        attempt_id: int | None = None
        outcome: runner.ProcessOutcome | None = None
        counts: JUnitCounts | None = None
        error: str | None = None
        started = time.monotonic()
        log_file = log_path.open("ab")
        try:
            with running.scope:
                try:
                    wt = await orch.pool.lease(sha, keep=request.keep, avoid=item.avoid_worktree)
                except WorktreeError as exc:
                    error = exc.message
                    log_file.write(f"parallel-orch: {error}\n".encode())
                attempt_id = await self._record_start(item, state, request, wt, log_path)
                if wt is not None:
                    outcome = await self._run_in(
                        wt, request, state, item, sha, log_file, junit_path, attempt_id
                    )
                    if request.junit:
                        counts = await anyio.to_thread.run_sync(junit.parse_counts, junit_path)
        finally:
            with anyio.CancelScope(shield=True):
                log_file.close()
                if attempt_id is None:
                    attempt_id = await self._record_start(item, state, request, wt, log_path)
                status, exit_code = self._status(outcome, running, error)
                error = outcome.error if outcome is not None and outcome.error else error
                duration = outcome.duration_seconds if outcome else time.monotonic() - started
                tail = await anyio.to_thread.run_sync(
                    runner.read_tail, log_path, orch.config.log_tail_bytes
                )
                await orch.store.finish_attempt(
                    attempt_id,
                    status=status,
                    exit_code=exit_code,
                    duration_seconds=duration,
                    output_tail=tail,
                    error=error,
                    junit=counts,
                )
                orch.publish(
                    Event(
                        type=EventType.ATTEMPT_FINISHED,
                        session_id=state.id,
                        test_id=request.id,
                        execution_id=item.execution_id,
                        attempt=item.attempt,
                        worker=self.index,
                        worktree=str(wt.path) if wt else None,
                        status=status.value,
                        exit_code=exit_code,
                        duration_seconds=duration,
                        error=error,
                        log_path=str(log_path),
                    )
                )
                if wt is not None:
                    preserve = None
                    if status.is_failure and orch.config.preserve_failed_worktrees:
                        preserve = (
                            f"parallel-orch: {request.id} attempt {item.attempt} "
                            f"{status.value} (session {state.id})"
                        )
                    await orch.pool.release(wt, preserve_reason=preserve)
                await orch.attempt_done(
                    item, state, status, duration, error, wt.name if wt else None
                )

    async def _record_start(
        self,
        item: QueueItem,
        state: SessionState,
        request: TestRequest,
        wt: Worktree | None,
        log_path: Path,
    ) -> int:
        attempt_id = await self.orch.store.start_attempt(
            item.execution_id,
            state.id,
            number=item.attempt,
            worker=self.index,
            worktree=str(wt.path) if wt else "",
            log_path=str(log_path),
        )
        self.orch.publish(
            Event(
                type=EventType.ATTEMPT_STARTED,
                session_id=state.id,
                test_id=request.id,
                execution_id=item.execution_id,
                attempt=item.attempt,
                worker=self.index,
                worktree=str(wt.path) if wt else None,
                log_path=str(log_path),
            )
        )
        return attempt_id

    async def _run_in(
        self,
        wt: Worktree,
        request: TestRequest,
        state: SessionState,
        item: QueueItem,
        sha: str,
        log_file: IO[bytes],
        junit_path: Path,
        attempt_id: int,
    ) -> runner.ProcessOutcome:
        orch = self.orch
        env = attempt_env(
            request,
            session_id=state.id,
            attempt=item.attempt,
            worker=self.index,
            worktree=wt.path,
            sha=sha,
            junit_path=junit_path,
        )
        await anyio.to_thread.run_sync(lambda: junit_path.unlink(missing_ok=True))

        async def on_spawn(pid: int, pgid: int) -> None:
            await orch.store.set_attempt_process(attempt_id, pid, pgid)

        if request.setup and wt.setup_key != (sha, request.setup):
            log_file.write(f"parallel-orch: setup: {request.setup}\n".encode())
            setup = await runner.run_process(
                runner.command_argv(request.setup),
                cwd=wt.path,
                env=env,
                timeout_seconds=request.timeout_seconds,
                grace_seconds=orch.config.kill_grace_seconds,
                log=log_file,
                on_spawn=on_spawn,
            )
            if setup.status is not ExecutionStatus.PASSED:
                wt.setup_key = None
                reason = setup.error or f"exit code {setup.exit_code}"
                return runner.ProcessOutcome(
                    ExecutionStatus.ERROR,
                    setup.exit_code,
                    setup.duration_seconds,
                    f"setup failed: {reason}",
                )
            wt.setup_key = (sha, request.setup)
            log_file.write(b"parallel-orch: setup done\n")
        return await runner.run_process(
            runner.command_argv(request.command),
            cwd=wt.path / request.cwd,
            env=env,
            timeout_seconds=request.timeout_seconds,
            grace_seconds=orch.config.kill_grace_seconds,
            log=log_file,
            on_spawn=on_spawn,
        )

    @staticmethod
    def _status(
        outcome: runner.ProcessOutcome | None, running: Running, error: str | None
    ) -> tuple[ExecutionStatus, int | None]:
        if running.stop_reason is not None and running.scope.cancelled_caught:
            return running.stop_reason, outcome.exit_code if outcome else None
        if outcome is not None:
            return outcome.status, outcome.exit_code
        return (ExecutionStatus.ERROR if error else ExecutionStatus.CANCELLED), None


def _make_dirs(*dirs: Path) -> None:
    for d in dirs:
        d.mkdir(parents=True, exist_ok=True)
