"""ParallelTestOrchestrator: the public API, and one lifecycle for the parts behind it.

Use it as an async context manager::

    async with ParallelTestOrchestrator(config) as orch:
        report = await orch.run_tests(["plans/"])

Leaving the block normally waits for submitted work; leaving it by an
exception (or cancellation) stops running attempts and records the
unfinished sessions as ``cancelled``.

The parts behind it are wired in :mod:`~parallel_orch.engine`, whose docstring
traces a request's path through them.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio
from anyio import AsyncContextManagerMixin
from anyio.abc import TaskGroup

from parallel_orch import events, gitrepo, procs
from parallel_orch.admission import PlainSession
from parallel_orch.config import ParallelTestConfig
from parallel_orch.engine import Engine
from parallel_orch.events import Event, EventBus
from parallel_orch.exceptions import OrchestratorClosedError
from parallel_orch.executors.choose import executor_for
from parallel_orch.executors.protocol import Executor
from parallel_orch.models import ExecutionStatus, TestRequest
from parallel_orch.notify import NotifyPolicy
from parallel_orch.plans import load_plans, quarantined
from parallel_orch.queue import TestQueue
from parallel_orch.report import ParallelTestReport
from parallel_orch.report.finish import stored_or_rejudged
from parallel_orch.report.options import ReportOptions
from parallel_orch.retry import RetryPolicy
from parallel_orch.store import Store, open_store
from parallel_orch.worker import ExecutionWorker


class ParallelTestOrchestrator(AsyncContextManagerMixin):
    """Runs TestRequests on N workers in pooled worktrees; see the module docstring.

    :param executor: where attempts run; by default in this machine's worktree pool.
    :param notify_policy: how hard a webhook delivery tries (``notify_url``).
    """

    def __init__(
        self,
        config: ParallelTestConfig | None = None,
        *,
        retry_policy: RetryPolicy | None = None,
        resume: bool = False,
        executor: Executor | None = None,
        notify_policy: NotifyPolicy | None = None,
    ) -> None:
        self.config = config or ParallelTestConfig()
        self.notify_policy = notify_policy
        self.retry_policy = retry_policy or RetryPolicy(
            max_retries=self.config.max_retries_per_test
        )
        self.resume = resume
        self.repo = self.config.repo
        self.state_dir = self.config.resolved_state_dir
        self.queue = TestQueue(self.config.max_queue_size)
        self.bus = EventBus()
        self.workers: list[ExecutionWorker] = []
        self._executor = executor
        self._owner = procs.owner_token()
        self._stack: AsyncExitStack | None = None
        self._tg: TaskGroup | None = None
        self._engine: Engine | None = None
        self._closed = False  # shut down: the store is closed, reports are read anew
        self.executor_lost: str | None = None  # why it stopped running anything mid-session

    # -- lifecycle: one exit stack, entered by `async with` or by the calls below ----

    @asynccontextmanager
    async def __asynccontextmanager__(self) -> AsyncIterator[ParallelTestOrchestrator]:
        await self.initialize()
        try:
            await self.start()  # inside: a start that fails or is cancelled closes the stack
            yield self
        except BaseException:
            await self.shutdown(drain=False, grace_seconds=0.0)
            raise
        await self.shutdown(drain=True)

    async def initialize(self) -> None:
        """Open the store and the executor; recover sessions a dead process left running."""
        if self._stack is not None:
            return
        async with AsyncExitStack() as stack:
            await self._open(stack)
            self._stack = stack.pop_all()
        self._closed = False

    async def _open(self, stack: AsyncExitStack) -> None:
        # --repo may name a subdirectory: paths derive from the top level
        self.repo = await anyio.to_thread.run_sync(gitrepo.check_repo, self.repo)
        self.config = self.config.model_copy(update={"repo": self.repo})
        self.state_dir = self.config.resolved_state_dir
        executor = self._executor or executor_for(self.config)  # checks its paths first
        await anyio.to_thread.run_sync(gitrepo.exclude_from_status, self.repo, self.state_dir)
        self._engine = await Engine.open(
            stack,
            self.config,
            queue=self.queue,
            bus=self.bus,
            executor=executor,
            owner=self._owner,
            retry_policy=self.retry_policy,
            spawn=self._spawn,
            resume=self.resume,
            notify_policy=self.notify_policy,
        )

    async def start(self) -> None:
        """Start the workers; :meth:`initialize` first if needed."""
        await self.initialize()
        assert self._stack is not None and self._engine is not None
        if self._tg is not None:
            return
        engine = self._engine
        self._tg = await self._stack.enter_async_context(anyio.create_task_group())
        engine.executor.work_in(self._tg)
        engine.executor.when_lost(functools.partial(_executor_lost, self))
        engine.admission.accepting = True
        for worker in engine.workers(self.queue, self._spawn, self.state_dir):
            self.workers.append(worker)
            await self._tg.start(worker.run)
        for state, admitted in engine.resumed:
            self._tg.start_soon(engine.admission.enqueue, state, admitted)

    async def shutdown(self, *, drain: bool = True, grace_seconds: float | None = None) -> None:
        """Stop. Idempotent.

        :param drain: run what is queued before stopping; otherwise cancel it at once.
        :param grace_seconds: how long running attempts may go on before they
            are cancelled (``None``: as long as they need when draining).
        """
        stack, self._stack = self._stack, None
        if stack is None:
            return
        if self._engine is not None:
            self._engine.admission.accepting = False
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
                await stack.aclose()
            finally:
                self.bus.close()
                self._tg = None
                self._closed = True

    def _spawn(self, fn: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run ``fn`` in the orchestrator's task group: its errors reach the owner."""
        if self._tg is None:
            raise OrchestratorClosedError()
        self._tg.start_soon(fn)

    @property
    def _running(self) -> Engine:
        if self._engine is None or self._closed:
            raise OrchestratorClosedError()
        return self._engine

    @property
    def store(self) -> Store:
        """The SQLite store of sessions, executions and attempts (while running)."""
        return self._running.store

    @property
    def executor(self) -> Executor:
        """What runs the attempts: this machine's worktree pool, or a Dask fleet."""
        return self._running.executor

    # -- submitting ---------------------------------------------------------

    async def create_session(
        self,
        requests: Sequence[TestRequest],
        *,
        plan_paths: Sequence[str] = (),
        priority: int = 0,
        session_id: str | None = None,
        keep_open: bool = False,
        idempotency_key: str | None = None,
        options: ReportOptions | None = None,
        acked: Callable[[str, int], None] | None = None,
    ) -> str:
        """Commit a session and all its requests (pending), then queue them; its id.

        Returns once all are committed and as many queued as there is room for (the rest follow
        as room frees up); ``acked(id, total)`` is called at that moment, in the commit's own
        step (not for a session with nothing to run): a server answers from there. Requests
        whose ref does not resolve are ``error``. A second call with an ``idempotency_key`` gets
        the first's id. ``options`` (gates, baseline, webhook) are completed from the config's.
        ``plan_paths`` (absolute or from the cwd) and test ids name the plan set, however spelt."""
        if self._tg is None:
            raise OrchestratorClosedError("the orchestrator is not accepting work (shutting down?)")
        return await self._running.admission.create_session(
            quarantined(requests, self.config.quarantine),
            plan_paths=plan_paths,
            priority=priority,
            session_id=session_id,
            keep_open=keep_open,
            idempotency_key=idempotency_key,
            options=self.config.report_options(options),
            acked=acked,
        )

    async def create_sessions(self, sessions: Sequence[PlainSession]) -> list[str | Exception]:
        """Plain sessions (inline requests, none sharded, no idempotency key) committed
        together, each acknowledged by its ``acked``: each one's id, or why it was not."""
        return await self._running.admission.create_sessions(_completed(self.config, sessions))

    async def submit_test(self, request: TestRequest) -> str:
        """Add one request to the default session; waits while the queue is full.

        Requests submitted with :meth:`submit_test` and :meth:`submit_batch` share one
        session, which ends after :meth:`wait_for_completion`. Returns its id.
        """
        return await self.submit_batch([request])

    async def submit_nowait(self, request: TestRequest) -> str:
        """:meth:`submit_test` without waiting: :class:`QueueFullError`, nothing recorded."""
        return await self.submit_batch([request], wait=False)

    async def submit_batch(self, requests: Sequence[TestRequest], *, wait: bool = True) -> str:
        """Add requests to the default session (see :meth:`submit_test`); returns its id.

        :param wait: wait for room in the queue; otherwise raise
            :class:`QueueFullError` before anything is recorded.
        """
        return await self._running.admission.submit_batch(requests, wait=wait)

    async def run_tests(
        self,
        requests_or_paths: Sequence[TestRequest | str | Path] | str | Path,
        *,
        priority: int = 0,
    ) -> ParallelTestReport:
        """Run requests, or the plans in files and directories, as one session; its report."""
        requests, paths = _requests_and_paths(requests_or_paths)
        if paths:
            requests += await anyio.to_thread.run_sync(_load_plans, paths, self.config)
        session_id = await self.create_session(
            requests, plan_paths=[str(p) for p in paths], priority=priority
        )
        return await self.wait_for_session(session_id)

    # -- waiting and stopping -----------------------------------------------

    async def wait_for_session(self, session_id: str) -> ParallelTestReport:
        """Wait until a session ends; its report."""
        state = self._engine.registry.get(session_id) if self._engine else None
        if state is not None:
            await state.done.wait()
        return await self.report(session_id)

    async def wait_for_completion(self) -> ParallelTestReport | None:
        """Wait until every submitted session has ended; the default session's report, if any.

        Ends the default session of :meth:`submit_test` / :meth:`submit_batch`.
        """
        engine = self._running
        state = await engine.admission.seal_default()
        await engine.registry.wait_idle()
        return await self.report(state.id) if state is not None else None

    async def report(
        self, session_id: str, *, options: ReportOptions | None = None
    ) -> ParallelTestReport:
        """A session's stored report (built if not stored yet); with ``options``, judged
        again by those gates and baseline. Readable after the orchestrator has closed."""
        if self._engine is not None and not self._closed:
            return await stored_or_rejudged(self._engine.store, session_id, options)
        async with open_store(self.state_dir) as store:
            return await stored_or_rejudged(store, session_id, options)

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
        return await self._running.registry.cancel(
            session_id, status=status, grace_seconds=grace_seconds
        )

    async def cancel_all(self, status: ExecutionStatus, *, grace_seconds: float = 0.0) -> None:
        """Stop every session (shutdown, Ctrl-C); running attempts get ``grace_seconds``."""
        engine = self._running
        engine.admission.accepting = False
        self.queue.close()
        await engine.registry.cancel_all(status, grace_seconds=grace_seconds)

    # -- observing ----------------------------------------------------------

    def events(self, session_id: str | None = None) -> AsyncIterator[Event]:
        """Events published from this call on; for one session, ends after its ``session.finished``.

        The subscription starts when this is called, not at the first iteration,
        so ``stream = orch.events(); await orch.create_session(...)`` misses nothing.
        """
        return events.stream(self.bus.open(), session_id)

    def is_running(self, session_id: str) -> bool:
        """Whether the session runs in this orchestrator now."""
        return self._engine is not None and self._engine.registry.get(session_id) is not None

    def get_status(self) -> dict[str, Any]:
        """A snapshot: workers, queue, executor and running sessions (from memory)."""
        return _status(self, self._engine, closed=self._closed)


async def _executor_lost(orch: ParallelTestOrchestrator, reason: str) -> None:
    """The executor can run nothing more (a fleet's scheduler gone): interrupt everything."""
    orch.executor_lost = reason
    await orch.cancel_all(ExecutionStatus.INTERRUPTED)


def _status(
    orch: ParallelTestOrchestrator, opened: Engine | None, *, closed: bool
) -> dict[str, Any]:
    """:meth:`ParallelTestOrchestrator.get_status`; the pool's even once closed."""
    engine = None if closed else opened
    return {
        "accepting": engine is not None and engine.admission.accepting,
        "num_workers": orch.config.num_workers,
        "queued": len(orch.queue),
        "workers": [w.status() for w in orch.workers],
        "pool": opened.executor.status() if opened else {},
        "sessions": engine.registry.status(orch.queue.waiting_counts()) if engine else [],
    }


def _load_plans(paths: list[str | Path], config: ParallelTestConfig) -> list[TestRequest]:
    """Plans into requests, ids relative to the config's plans root."""
    return load_plans(
        paths, root=config.resolved_plans_root, default_timeout=config.default_timeout
    )


def _requests_and_paths(
    given: Sequence[TestRequest | str | Path] | str | Path,
) -> tuple[list[TestRequest], list[str | Path]]:
    """What :meth:`ParallelTestOrchestrator.run_tests` was given, requests apart from paths."""
    items = [given] if isinstance(given, str | Path) else list(given)
    return (
        [r for r in items if isinstance(r, TestRequest)],
        [p for p in items if isinstance(p, str | Path)],
    )


def _completed(config: ParallelTestConfig, sessions: Sequence[PlainSession]) -> list[PlainSession]:
    """Each session as :meth:`ParallelTestOrchestrator.create_session` completes one."""
    complete = config.report_options
    default = complete(None)  # one for all the sessions that give none
    return [
        replace(
            s,
            requests=quarantined(s.requests, config.quarantine),
            options=default if s.options is None else complete(s.options),
        )
        for s in sessions
    ]
