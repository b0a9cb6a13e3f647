"""ParallelTestOrchestrator: owns the pool, queue, workers and store.

Use it as an async context manager::

    async with ParallelTestOrchestrator(config) as orch:
        report = await orch.run_tests(["plans/"])

Leaving the block normally waits for submitted work; leaving it by an
exception (or cancellation) stops running attempts and records the
unfinished sessions as ``cancelled``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import statistics
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
from anyio import AsyncContextManagerMixin
from anyio.streams.memory import MemoryObjectReceiveStream

from parallel_orch import procs, recovery
from parallel_orch.config import ParallelTestConfig
from parallel_orch.events import Event, EventBus, EventType
from parallel_orch.exceptions import OrchestratorClosedError, RefError
from parallel_orch.models import ExecutionStatus, SessionStatus, TestRequest, session_status_for
from parallel_orch.plans import load_plans
from parallel_orch.queue import QueueItem, TestQueue
from parallel_orch.report import ParallelTestReport, build_report
from parallel_orch.report.build import report_from
from parallel_orch.retry import RetryPolicy
from parallel_orch.sessions import Running, SessionState
from parallel_orch.store import (
    AttemptEnd,
    ExecutionEnd,
    NewExecution,
    Store,
    open_store,
    utcnow,
)
from parallel_orch.worker import ExecutionWorker
from parallel_orch.worktrees import WorktreePool, validate_worktree_dir

log = logging.getLogger(__name__)

FINAL_WRITE_SECONDS = 10.0  # shielded time for the last store writes on the way out
DEFAULT_EXPECTED_SECONDS = 1.0  # expected duration when the store has no history at all


def plan_key(plan_paths: Iterable[str], request_ids: Iterable[str]) -> str:
    """Groups sessions of the same plan set, for comparisons with the previous session."""
    material = json.dumps([sorted(plan_paths), sorted(request_ids)])
    return hashlib.sha256(material.encode()).hexdigest()[:16]


class ParallelTestOrchestrator(AsyncContextManagerMixin):
    """Runs TestRequests on N workers in pooled worktrees; see the module docstring."""

    def __init__(
        self,
        config: ParallelTestConfig | None = None,
        *,
        retry_policy: RetryPolicy | None = None,
        resume: bool = False,
    ) -> None:
        self.config = config or ParallelTestConfig()
        self.retry_policy = retry_policy or RetryPolicy(
            max_retries=self.config.max_retries_per_test
        )
        self.resume = resume
        self.repo = self.config.repo
        self.state_dir = self.config.resolved_state_dir
        self.queue = TestQueue(self.config.max_queue_size)
        self.bus = EventBus()
        self.running: set[Running] = set()
        self.workers: list[ExecutionWorker] = []
        self._sessions: dict[str, SessionState] = {}
        self._default: SessionState | None = None  # of submit_test / submit_batch
        self._default_lock = anyio.Lock()
        self._stack: AsyncExitStack | None = None
        self._tg: anyio.abc.TaskGroup | None = None
        self._store: Store | None = None
        self._pool: WorktreePool | None = None
        self._owner = procs.owner_token()
        self._accepting = False
        self._idle = anyio.Event()
        self._idle.set()

    # -- lifecycle ----------------------------------------------------------

    @asynccontextmanager
    async def __asynccontextmanager__(self) -> AsyncIterator[ParallelTestOrchestrator]:
        await self.initialize()
        try:
            await self.start()
            yield self
        except BaseException:
            await self.shutdown(drain=False, grace_seconds=0.0)
            raise
        await self.shutdown(drain=True)

    async def initialize(self) -> None:
        """Open the store and the pool; recover sessions a dead process left running."""
        if self._stack is not None:
            return
        stack = AsyncExitStack()
        await stack.__aenter__()
        try:
            # --repo may name a subdirectory: paths derive from the top level
            self.repo = await anyio.to_thread.run_sync(WorktreePool.check_repo, self.repo)
            self.config = self.config.model_copy(update={"repo": self.repo})
            self.state_dir = self.config.resolved_state_dir
            base_dir = self.config.resolved_worktree_dir
            validate_worktree_dir(self.repo, base_dir)
            await anyio.to_thread.run_sync(self._exclude_state_dir)
            self._store = await stack.enter_async_context(open_store(self.state_dir))
            self._pool = WorktreePool(
                self.repo, base_dir, self.config.num_workers + self.config.spare_worktrees
            )
            await self._pool.open()
            stack.push_async_callback(self._close_pool)
            stack.push_async_callback(self._close_leftovers)
            await self._recover()
        except BaseException:
            await stack.__aexit__(None, None, None)
            raise
        self._stack = stack

    async def start(self) -> None:
        """Start the workers; :meth:`initialize` first if needed."""
        await self.initialize()
        assert self._stack is not None
        if self._tg is not None:
            return
        self._tg = await self._stack.enter_async_context(anyio.create_task_group())
        self.pool.work_in(self._tg)
        self._accepting = True
        for index in range(self.config.num_workers):
            worker = ExecutionWorker(index, self)
            self.workers.append(worker)
            await self._tg.start(worker.run)
        for state in list(self._sessions.values()):  # resumed sessions
            self._tg.start_soon(self._enqueue, state, list(state.requests))

    async def shutdown(self, *, drain: bool = True, grace_seconds: float | None = None) -> None:
        """Stop. Idempotent.

        :param drain: run what is queued before stopping; otherwise cancel it at once.
        :param grace_seconds: how long running attempts may go on before they
            are cancelled (``None``: as long as they need when draining).
        """
        stack, self._stack = self._stack, None
        if stack is None:
            return
        self._accepting = False
        try:
            if not drain:
                with anyio.CancelScope(shield=True):
                    await self.cancel_all(
                        ExecutionStatus.CANCELLED, grace_seconds=grace_seconds or 0.0
                    )
            elif grace_seconds is not None:
                with anyio.move_on_after(grace_seconds):
                    await self.wait_for_completion()
                with anyio.CancelScope(shield=True):
                    await self.cancel_all(ExecutionStatus.CANCELLED)
            else:
                await self.wait_for_completion()
        finally:
            # Not under a shield: the task group in the stack must exit as the current
            # cancel scope. The stack's own callbacks shield their final writes.
            self.queue.close()
            try:
                await stack.__aexit__(None, None, None)
            finally:
                self.bus.close()
                self._tg = None

    async def _close_pool(self) -> None:
        if self._pool is not None:
            with anyio.CancelScope(shield=True):
                await self._pool.close(remove=self.config.cleanup_on_completion)

    def _exclude_state_dir(self) -> None:
        """Keep the state dir out of `git status` when it lives inside the repo."""
        try:
            rel = self.state_dir.relative_to(self.repo)
        except ValueError:
            return
        from git import Git

        exclude = Path(Git(str(self.repo)).rev_parse("--git-path", "info/exclude"))
        if not exclude.is_absolute():
            exclude = self.repo / exclude
        line = f"/{rel.as_posix()}/"
        text = exclude.read_text() if exclude.exists() else ""
        if line not in text.splitlines():
            exclude.parent.mkdir(parents=True, exist_ok=True)
            with exclude.open("a") as fh:
                fh.write(("" if text.endswith("\n") or not text else "\n") + line + "\n")

    @property
    def store(self) -> Store:
        if self._store is None:
            raise OrchestratorClosedError()
        return self._store

    @property
    def pool(self) -> WorktreePool:
        if self._pool is None:
            raise OrchestratorClosedError()
        return self._pool

    # -- recovery -----------------------------------------------------------

    async def _recover(self) -> None:
        """Sessions whose owner died: kill their groups, then mark them interrupted or resume."""
        for session in await recovery.orphaned_sessions(self.store):
            await recovery.kill_leftovers(self.store, session.id)
            if not self.resume:
                await recovery.mark_interrupted(self.store, session.id)
                await self._finish_session_record(session.id, SessionStatus.INTERRUPTED)
                continue
            state = await recovery.reopen(self.store, self.pool, session, self._owner)
            self._sessions[state.id] = state
            self._idle = anyio.Event()
            if state.outstanding == 0:
                await self._finish_session(state)

    # -- submitting ---------------------------------------------------------

    async def create_session(
        self,
        requests: Sequence[TestRequest],
        *,
        plan_paths: Sequence[str] = (),
        priority: int = 0,
        session_id: str | None = None,
        keep_open: bool = False,
    ) -> str:
        """Commit a session and all its requests (pending), then queue them.

        Returns once every request is committed and, as far as the queue has
        room, queued (so a session submitted after another is ordered against
        it at once); the rest are queued in the background as room frees up.
        Requests whose ref does not resolve are recorded ``error``.
        """
        if not self._accepting or self._tg is None:
            raise OrchestratorClosedError("the orchestrator is not accepting work (shutting down?)")
        session_id = session_id or uuid.uuid4().hex[:12]
        new = await self._resolve(requests)
        history = await self.store.history(r.id for r in requests)
        key = plan_key(plan_paths, [r.id for r in requests])
        ids = await self.store.create_session(
            session_id,
            num_workers=self.config.num_workers,
            repo=str(self.repo),
            plan_paths=plan_paths,
            plan_key=key,
            owner=self._owner,
            executions=new,
        )
        state = SessionState(id=session_id, plan_key=key, priority=priority, open=keep_open)
        self._sessions[session_id] = state
        self._idle = anyio.Event()
        self.publish(
            Event(type=EventType.SESSION_STARTED, session_id=session_id, total=len(requests))
        )
        items = self._items(state, self._track(state, ids, new), history)
        if state.outstanding == 0 and not state.open:
            await self._finish_session(state)
            return session_id
        room = self.queue.room
        for item in items[:room]:
            self.queue.put_nowait(item)
        if items[room:]:
            self._tg.start_soon(self._put_all, state, items[room:])
        return session_id

    async def _resolve(self, requests: Sequence[TestRequest]) -> list[NewExecution]:
        resolved = await anyio.to_thread.run_sync(self.pool.resolve_refs, [r.ref for r in requests])
        out = []
        for request in requests:
            sha = resolved[request.ref]
            if isinstance(sha, RefError):
                out.append(NewExecution(request=request, sha=None, error=sha.message))
            else:
                out.append(NewExecution(request=request, sha=sha))
        return out

    async def _commit(self, state: SessionState, requests: Sequence[TestRequest]) -> list[int]:
        """Add requests to an open session: committed pending, then tracked (not yet queued)."""
        if not self._accepting:
            raise OrchestratorClosedError("the orchestrator is not accepting work (shutting down?)")
        new = await self._resolve(requests)
        ids = await self.store.add_executions(state.id, new)
        return self._track(state, ids, new)

    def _track(self, state: SessionState, ids: list[int], new: list[NewExecution]) -> list[int]:
        """Remember resolved requests for the workers; publish the ones that failed to resolve."""
        queued = []
        for execution_id, item in zip(ids, new, strict=True):
            if item.sha is None:
                self.publish(
                    Event(
                        type=EventType.TEST_FINISHED,
                        session_id=state.id,
                        test_id=item.request.id,
                        execution_id=execution_id,
                        status=ExecutionStatus.ERROR.value,
                        error=item.error,
                    )
                )
                continue
            state.requests[execution_id] = item.request
            state.shas[execution_id] = item.sha
            queued.append(execution_id)
        state.outstanding += len(queued)
        return queued

    def _items(
        self, state: SessionState, execution_ids: list[int], history: dict[str, float]
    ) -> list[QueueItem]:
        """Queue items, expecting durations from ``history`` (unknown tests: its median)."""
        fallback = statistics.median(history.values()) if history else DEFAULT_EXPECTED_SECONDS
        items = []
        for execution_id in execution_ids:
            request = state.requests[execution_id]
            items.append(
                QueueItem(
                    execution_id=execution_id,
                    session_id=state.id,
                    test_id=request.id,
                    priority=request.priority + state.priority,
                    expected_seconds=history.get(request.id, fallback),
                    seq=execution_id,
                )
            )
        return items

    async def _enqueue(self, state: SessionState, execution_ids: list[int]) -> None:
        history = await self.store.history(state.requests[i].id for i in execution_ids)
        await self._put_all(state, self._items(state, execution_ids, history))

    async def _put_all(self, state: SessionState, items: list[QueueItem]) -> None:
        """Queue ``items``, waiting for room; stops when the session or the queue does."""
        for item in items:
            if state.stopping is not None:
                return
            try:
                await self.queue.put(item)
            except OrchestratorClosedError:
                return  # closed while waiting for room: cancel_all() records the rest

    async def submit_test(self, request: TestRequest) -> str:
        """Add one request to the default session; waits while the queue is full.

        Requests submitted with :meth:`submit_test` and :meth:`submit_batch`
        share one session, which ends after :meth:`wait_for_completion`.
        Returns that session's id.
        """
        return await self.submit_batch([request])

    async def submit_nowait(self, request: TestRequest) -> str:
        """Like :meth:`submit_test`, but never waits for room in the queue.

        :raises QueueFullError: if the queue is full; nothing is recorded then.
        """
        return await self.submit_batch([request], wait=False)

    async def submit_batch(self, requests: Sequence[TestRequest], *, wait: bool = True) -> str:
        """Add requests to the default session (see :meth:`submit_test`); returns its id.

        :param wait: wait for room in the queue; otherwise raise
            :class:`QueueFullError` before anything is recorded.
        """
        reserved = 0
        if not wait:
            self.queue.reserve(len(requests))  # held through the commit: no one takes it
            reserved = len(requests)
        try:
            async with self._default_lock:  # one default session; sealing waits for commits
                state = self._default
                if state is None or state.done.is_set():
                    session_id = await self.create_session([], keep_open=True)
                    state = self._default = self._sessions[session_id]
                ids = await self._commit(state, requests)
            if wait:
                await self._enqueue(state, ids)
            else:
                for item in self._items(state, ids, {}):
                    self.queue.put_reserved(item)
                    reserved -= 1
        finally:
            if reserved:
                self.queue.unreserve(reserved)
        return state.id

    async def run_tests(
        self,
        requests_or_paths: Sequence[TestRequest | str | Path] | str | Path,
        *,
        priority: int = 0,
    ) -> ParallelTestReport:
        """Run requests, or the plans in files and directories, as one session; its report."""
        if isinstance(requests_or_paths, str | Path):
            requests_or_paths = [requests_or_paths]
        paths = [p for p in requests_or_paths if isinstance(p, str | Path)]
        requests = [r for r in requests_or_paths if isinstance(r, TestRequest)]
        if paths:
            requests += await anyio.to_thread.run_sync(
                lambda: load_plans(paths, default_timeout=self.config.default_timeout)
            )
        session_id = await self.create_session(
            requests, plan_paths=[str(p) for p in paths], priority=priority
        )
        return await self.wait_for_session(session_id)

    async def wait_for_session(self, session_id: str) -> ParallelTestReport:
        """Wait until a session ends; its report."""
        state = self._sessions.get(session_id)
        if state is not None:
            await state.done.wait()
        return await self.report(session_id)

    async def wait_for_completion(self) -> ParallelTestReport | None:
        """Wait until every submitted session has ended; the default session's report, if any.

        Ends the default session of :meth:`submit_test` / :meth:`submit_batch`.
        """
        async with self._default_lock:  # not while a submit is committing to it
            state, self._default = self._default, None
        if state is not None:
            state.open = False
            if state.outstanding <= 0 and not state.done.is_set():
                await self._finish_session(state)
        await self._idle.wait()
        return await self.report(state.id) if state is not None else None

    async def report(self, session_id: str) -> ParallelTestReport:
        """The stored report of a session (built from the store if not stored yet)."""
        row = await self.store.get_session(session_id)
        if row.report_json:
            return ParallelTestReport.model_validate_json(row.report_json)
        return await build_report(self.store, row.id)

    # -- worker callbacks ---------------------------------------------------

    def spawn(self, fn: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run ``fn`` in the orchestrator's task group: its errors reach the owner."""
        if self._tg is None:
            raise OrchestratorClosedError()
        self._tg.start_soon(fn)

    def session_state(self, session_id: str) -> SessionState | None:
        return self._sessions.get(session_id)

    def publish(self, event: Event) -> None:
        self.bus.publish(event)

    async def attempt_done(
        self,
        item: QueueItem,
        state: SessionState,
        end: AttemptEnd,
        finished: Event,
        worktree: str | None,
    ) -> None:
        """Record an attempt's end with its execution's next state: a retry, or final."""
        request = state.requests[item.execution_id]
        delay = None
        if state.stopping is None:
            delay = self.retry_policy.decide(
                end.status,
                attempt=item.attempt,
                allowed_retries=request.retries,
                elapsed_seconds=time.monotonic() - (item.first_started or time.monotonic()),
            )
        flaky = end.status is ExecutionStatus.PASSED and item.attempt > 1
        outcome = (
            None
            if delay is not None
            else ExecutionEnd(
                status=end.status,
                flaky=flaky,
                error=end.error,
                duration_seconds=end.duration_seconds,
            )
        )
        await self.store.end_attempt(end, outcome)
        self.publish(finished)
        if delay is not None:
            self.publish(
                Event(
                    type=EventType.TEST_RETRYING,
                    session_id=state.id,
                    test_id=request.id,
                    execution_id=item.execution_id,
                    attempt=item.attempt + 1,
                    status=end.status.value,
                    delay_seconds=delay,
                    error=end.error,
                )
            )
            item.attempt += 1
            item.avoid_worktree = worktree
            self.queue.retry_later(item, delay)
            return
        self.publish(
            Event(
                type=EventType.TEST_FINISHED,
                session_id=state.id,
                test_id=request.id,
                execution_id=item.execution_id,
                attempt=item.attempt,
                status=end.status.value,
                duration_seconds=end.duration_seconds,
                error=end.error,
                flaky=flaky,
            )
        )
        await self._execution_final(state, end.status)

    async def _execution_final(
        self, state: SessionState, status: ExecutionStatus, count: int = 1
    ) -> None:
        state.outstanding -= count
        if status.is_failure:
            state.failures += count
            limit = self.config.max_failures
            if limit is not None and state.failures >= limit and state.stopping is None:
                log.warning(
                    "session %s: %d failures, stopping (max_failures)", state.id, state.failures
                )
                # Called by the worker whose attempt is still finishing, and cancel_session()
                # waits for every running attempt of the session: stop from a task of its own.
                state.stopping = ExecutionStatus.CANCELLED
                self.queue.remove_session(state.id)
                assert self._tg is not None
                self._tg.start_soon(
                    functools.partial(
                        self.cancel_session, state.id, grace_seconds=self.config.kill_grace_seconds
                    )
                )
                return
        if state.outstanding <= 0 and not state.open:
            await self._finish_session(state)

    # -- stopping -----------------------------------------------------------

    async def cancel_session(
        self,
        session_id: str,
        *,
        status: ExecutionStatus = ExecutionStatus.CANCELLED,
        grace_seconds: float = 0.0,
    ) -> bool:
        """Stop a session: drop its queued requests, stop its running attempts.

        Running attempts may go on for ``grace_seconds``, then are cancelled
        (SIGTERM, ``kill_grace_seconds``, SIGKILL). Returns False if the
        session is not running in this orchestrator.
        """
        state = self._sessions.get(session_id)
        if state is None or state.done.is_set():
            return False
        with anyio.CancelScope(shield=True):
            if state.stopping is None:
                state.stopping = status
            self.queue.remove_session(session_id)
            await self._stop_running(
                [r for r in self.running if r.session_id == session_id], status, grace_seconds
            )
            await self.store.close_unfinished(session_id, status)  # those that never started
            state.outstanding, state.open = 0, False
            await self._finish_session(state)
        return True

    async def _stop_running(
        self, targets: list[Running], status: ExecutionStatus, grace: float
    ) -> None:
        with anyio.move_on_after(grace):
            for target in targets:
                await target.done.wait()
        for target in targets:
            if not target.done.is_set():
                target.stop_reason = status
                target.scope.cancel()
        for target in targets:
            await target.done.wait()

    async def cancel_all(self, status: ExecutionStatus, *, grace_seconds: float = 0.0) -> None:
        """Stop every session (shutdown, Ctrl-C); running attempts get ``grace_seconds``."""
        self._accepting = False
        self.queue.close()
        states = list(self._sessions.values())
        for state in states:
            state.stopping = state.stopping or status
            self.queue.remove_session(state.id)
        await self._stop_running(list(self.running), status, grace_seconds)
        for state in states:
            await self.cancel_session(state.id, status=status)

    async def _close_leftovers(self) -> None:
        """After the workers are gone: record whatever a forced stop left unfinished."""
        with anyio.CancelScope(shield=True):
            for state in list(self._sessions.values()):
                state.stopping = state.stopping or ExecutionStatus.CANCELLED
                await self.store.close_unfinished(state.id, state.stopping)
                await self._finish_session(state)

    async def _finish_session(self, state: SessionState) -> None:
        if state.finishing:  # a concurrent caller (cancel vs. last attempt) records it
            with anyio.CancelScope(shield=True):
                await state.done.wait()
            return
        state.finishing = True
        with anyio.CancelScope(shield=True):
            try:
                report = await self._finish_session_record(state.id, stopping=state.stopping)
            finally:  # a failure to record still ends the session here: nobody waits for ever
                state.done.set()
                self._sessions.pop(state.id, None)
                if not any(not s.done.is_set() for s in self._sessions.values()):
                    self._idle.set()
            self.publish(
                Event(
                    type=EventType.SESSION_FINISHED,
                    session_id=state.id,
                    status=report.status,
                    total=report.total_tests,
                    duration_seconds=report.duration_seconds,
                )
            )

    async def _finish_session_record(
        self,
        session_id: str,
        status: SessionStatus | None = None,
        *,
        stopping: ExecutionStatus | None = None,
    ) -> ParallelTestReport:
        """Record a session's end with its report: one read of the store, one write.

        :param status: the session's status; by default what its executions
            say, or cancelled/interrupted when it was ``stopping`` so.
        """
        session, executions, attempts = await self.store.session_snapshot(session_id)
        if status is None:
            status = session_status_for(Counter(e.status for e in executions))
            if stopping is not None and status not in (
                SessionStatus.CANCELLED,
                SessionStatus.INTERRUPTED,
            ):
                status = (
                    SessionStatus.CANCELLED
                    if stopping is ExecutionStatus.CANCELLED
                    else SessionStatus.INTERRUPTED
                )
        session.status = status.value  # a detached copy: the write below records it
        session.completed_at = utcnow()
        report = report_from(session, executions, attempts)
        await self.store.finish_session(
            session_id,
            status,
            completed_at=session.completed_at,
            report_json=report.model_dump_json(),
        )
        return report

    # -- observing ----------------------------------------------------------

    def events(self, session_id: str | None = None) -> AsyncIterator[Event]:
        """Events published from this call on; for one session, ends after its ``session.finished``.

        The subscription starts when this is called, not at the first iteration,
        so ``stream = orch.events(); await orch.create_session(...)`` misses nothing.
        """
        return self._events(self.bus.open(), session_id)

    async def _events(
        self, receive: MemoryObjectReceiveStream[Event], session_id: str | None
    ) -> AsyncIterator[Event]:
        async with receive:
            async for event in receive:
                if session_id is not None and event.session_id != session_id:
                    continue
                yield event
                if session_id is not None and event.type is EventType.SESSION_FINISHED:
                    return

    def get_status(self) -> dict[str, Any]:
        """A snapshot: workers, queue, pool and running sessions (from memory, no store reads)."""
        waiting = self.queue.waiting_counts()
        return {
            "accepting": self._accepting,
            "num_workers": self.config.num_workers,
            "queued": len(self.queue),
            "workers": [
                {
                    "worker": w.index,
                    "test_id": w.current.test_id if w.current else None,
                    "session_id": w.current.session_id if w.current else None,
                }
                for w in self.workers
            ],
            "pool": self._pool.status() if self._pool else {},
            "sessions": [
                {
                    "session_id": s.id,
                    "outstanding": s.outstanding,
                    "failures": s.failures,
                    "priority": s.priority,
                    "queued": waiting.get(s.id, 0),
                    "running": sum(r.session_id == s.id for r in self.running),
                }
                for s in self._sessions.values()
            ],
        }
