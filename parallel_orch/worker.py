"""ExecutionWorker: take a request, lease a worktree, run the attempt, record it."""

from __future__ import annotations

import contextlib
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
from parallel_orch.store import AttemptEnd, JUnitCounts
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
    pycache_dir: Path | None = None,
) -> dict[str, str]:
    """The inherited environment minus our own settings, the request's env, then ours.

    Python bytecode goes to ``pycache_dir`` (outside the worktree) unless the
    environment already says where: cleaning a worktree would otherwise throw
    every ``__pycache__`` away and each attempt would compile its imports again.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    env.update(request.env)
    if pycache_dir is not None:
        env.setdefault("PYTHONPYCACHEPREFIX", str(pycache_dir))
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
        self._finishing: anyio.Event | None = None  # the previous attempt's record

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
                self.current = None
                if not running.finishing:
                    self._done(running)

    def _done(self, running: Running) -> None:
        self.orch.running.discard(running)
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
                    await self.orch.attempt_done(item, state, end, finished, worktree)
                finally:
                    self._done(running)
                    done.set()

        self.orch.spawn(finish)

    async def run_item(self, item: QueueItem, state: SessionState, running: Running) -> None:
        orch = self.orch
        request = state.requests[item.execution_id]
        if item.first_started is None:
            item.first_started = time.monotonic()
        name = f"{safe_name(request.id)}.{item.attempt}"
        log_dir = orch.state_dir / "logs" / state.id
        junit_dir = orch.state_dir / "junit" / state.id
        if not state.dirs_ready:
            await anyio.to_thread.run_sync(_make_dirs, log_dir, junit_dir)
            state.dirs_ready = True
        await self._attempt(
            item, state, request, running, log_dir / f"{name}.log", junit_dir / f"{name}.xml"
        )

    async def _attempt(
        self,
        item: QueueItem,
        state: SessionState,
        request: TestRequest,
        running: Running,
        log_path: Path,
        junit_path: Path,
    ) -> None:
        orch = self.orch
        sha = state.shas[item.execution_id]
        wt: Worktree | None = None
        attempt_id: int | None = None
        outcome: runner.ProcessOutcome | None = None
        counts: JUnitCounts | None = None
        error: str | None = None
        started = time.monotonic()

        async def record_start() -> int:
            # Before the first process starts, so a crash right after leaves a trace.
            return await orch.store.start_attempt(
                item.execution_id,
                state.id,
                number=item.attempt,
                worker=self.index,
                worktree=str(wt.path) if wt else "",
                log_path=str(log_path),
            )

        async def record_process(pid: int, pgid: int) -> None:
            assert attempt_id is not None
            await orch.store.set_attempt_process(attempt_id, pid, pgid)

        log_file = log_path.open("a+b")  # appended to by the attempt, its tail read back
        try:
            with running.scope:
                try:
                    wt = await orch.pool.lease(
                        sha, keep=request.keep, setup=request.setup, avoid=item.avoid_worktree
                    )
                except WorktreeError as exc:
                    error = exc.message
                    log_file.write(f"parallel-orch: {error}\n".encode())
                attempt_id = await record_start()
                orch.publish(self._event(EventType.ATTEMPT_STARTED, item, state, wt, log_path))
                if wt is not None:
                    outcome = await self._run_in(
                        wt, request, state, item, sha, log_file, junit_path, record_process
                    )
                    if request.junit:
                        counts = await anyio.to_thread.run_sync(junit.parse_counts, junit_path)
        finally:
            with anyio.CancelScope(shield=True):
                tail = runner.read_tail(log_file, orch.config.log_tail_bytes)
                with contextlib.suppress(OSError):  # a full disk must not cost the record
                    log_file.close()
                status, exit_code = self._status(outcome, running, error)
                if wt is not None:  # first, so that its scrub overlaps what follows
                    preserve = None
                    if status.is_failure and orch.config.preserve_failed_worktrees:
                        preserve = (
                            f"parallel-orch: {request.id} attempt {item.attempt} "
                            f"{status.value} (session {state.id})"
                        )
                    await orch.pool.release(wt, preserve_reason=preserve)
                if attempt_id is None:
                    attempt_id = await record_start()
                error = outcome.error if outcome is not None and outcome.error else error
                duration = outcome.duration_seconds if outcome else time.monotonic() - started
                end = AttemptEnd(
                    attempt_id=attempt_id,
                    execution_id=item.execution_id,
                    status=status,
                    exit_code=exit_code,
                    duration_seconds=duration,
                    output_tail=tail,
                    error=error,
                    junit=counts,
                )
                finished = self._event(EventType.ATTEMPT_FINISHED, item, state, wt, log_path)
                finished = finished.model_copy(
                    update={
                        "status": status.value,
                        "exit_code": exit_code,
                        "duration_seconds": duration,
                        "error": error,
                    }
                )
                worktree = wt.name if wt else None
                if status is ExecutionStatus.PASSED:
                    self._finish_later(item, state, end, finished, worktree, running)
                else:  # retries and max_failures decide before this worker runs anything else
                    if self._finishing is not None:
                        await self._finishing.wait()
                    await orch.attempt_done(item, state, end, finished, worktree)

    def _event(
        self,
        kind: EventType,
        item: QueueItem,
        state: SessionState,
        wt: Worktree | None,
        log_path: Path,
    ) -> Event:
        return Event(
            type=kind,
            session_id=state.id,
            test_id=state.requests[item.execution_id].id,
            execution_id=item.execution_id,
            attempt=item.attempt,
            worker=self.index,
            worktree=str(wt.path) if wt else None,
            log_path=str(log_path),
        )

    async def _run_in(
        self,
        wt: Worktree,
        request: TestRequest,
        state: SessionState,
        item: QueueItem,
        sha: str,
        log_file: IO[bytes],
        junit_path: Path,
        on_spawn: runner.SpawnHook,
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
            pycache_dir=orch.state_dir / "pycache",
        )
        setup_key = (sha, request.setup, request.keep) if request.setup else None
        if request.setup and setup_key != wt.setup_key:
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
            wt.setup_key = setup_key
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
