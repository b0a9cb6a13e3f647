"""The sessions an orchestrator runs: their state, the attempts in flight, and their ends.

:class:`SessionRegistry` owns both: it counts a session's executions down to
its end, stops it on ``max_failures`` or when asked, records its end with its
report (then has the webhook told, when it has one), and tells whoever waits when no
session is left.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

import anyio

from parallel_orch import events
from parallel_orch.events import EventBus
from parallel_orch.models import ExecutionStatus, SessionStatus, session_status_for
from parallel_orch.queue import TestQueue
from parallel_orch.report import ParallelTestReport
from parallel_orch.report.finish import final_report, options_of
from parallel_orch.store import ExecutionRecord, Store, utcnow

log = logging.getLogger(__name__)

Spawn = Callable[[Callable[[], Coroutine[Any, Any, None]]], None]
Notify = Callable[[str, str, str], None]


@dataclass(eq=False)
class Running:
    """An attempt in flight: what a worker is doing, and how to stop it."""

    session_id: str
    execution_id: int
    test_id: str
    attempt: int
    worker: int
    scope: anyio.CancelScope
    started: float = field(default_factory=time.monotonic)
    stop_reason: ExecutionStatus | None = None  # set when cancelled on purpose
    finishing: bool = False  # ended; its record is being written
    done: anyio.Event = field(default_factory=anyio.Event)


@dataclass(eq=False)
class SessionState:
    """A session between its creation and its ``session.finished``."""

    id: str
    plan_key: str
    priority: int = 0
    outstanding: int = 0  # executions not yet final
    failures: int = 0
    started: float = field(default_factory=time.monotonic)
    stopping: ExecutionStatus | None = None  # cancelled / interrupted once asked to stop
    open: bool = False  # the default session takes more requests until it is sealed
    finishing: bool = False  # finish() has begun recording the end
    done: anyio.Event = field(default_factory=anyio.Event)


class SessionRegistry:
    """Sessions running here and their attempts in flight; see the module docstring.

    :param spawn: runs a coroutine function in the orchestrator's task group.
    :param notify: ``notify(session_id, url, report_json)`` starts the webhook's delivery
        of a recorded report, in the background.
    """

    def __init__(
        self,
        store: Store,
        queue: TestQueue,
        bus: EventBus,
        *,
        max_failures: int | None,
        kill_grace_seconds: float,
        spawn: Spawn,
        notify: Notify | None = None,
    ) -> None:
        self.store = store
        self.notify = notify
        self.queue = queue
        self.bus = bus
        self.max_failures = max_failures
        self.kill_grace_seconds = kill_grace_seconds
        self.spawn = spawn
        self.running: set[Running] = set()
        self._sessions: dict[str, SessionState] = {}
        self._ended = anyio.Event()  # set, then replaced, each time a session ends

    def add(self, state: SessionState) -> None:
        self._sessions[state.id] = state

    def get(self, session_id: str) -> SessionState | None:
        return self._sessions.get(session_id)

    def status(self, waiting: dict[str, int]) -> list[dict[str, Any]]:
        """Each running session's counts, given how many of its items ``waiting`` in the queue."""
        return [
            {
                "session_id": s.id,
                "outstanding": s.outstanding,
                "failures": s.failures,
                "priority": s.priority,
                "queued": waiting.get(s.id, 0),
                "running": sum(r.session_id == s.id for r in self.running),
            }
            for s in self._sessions.values()
        ]

    async def wait_idle(self) -> None:
        """Until no session is running here, however many start meanwhile."""
        while self._sessions:
            ended = self._ended
            await ended.wait()

    # -- an execution's end, and the session's -------------------------------

    async def execution_final(
        self, state: SessionState, status: ExecutionStatus, count: int = 1
    ) -> None:
        """``count`` executions of ``state`` ended ``status``: stop it at ``max_failures``,
        finish it when none is left."""
        state.outstanding -= count
        if status.is_failure:
            state.failures += count
            limit = self.max_failures
            if limit is not None and state.failures >= limit and state.stopping is None:
                log.warning(
                    "session %s: %d failures, stopping (max_failures)", state.id, state.failures
                )
                # Called by the worker whose attempt is still finishing, and cancel()
                # waits for every running attempt of the session: stop from a task of its own.
                state.stopping = ExecutionStatus.CANCELLED
                self.queue.remove_session(state.id)

                async def stop() -> None:
                    await self.cancel(state.id, grace_seconds=self.kill_grace_seconds)

                self.spawn(stop)
                return
        if state.outstanding <= 0 and not state.open:
            await self.finish(state)

    async def finish(self, state: SessionState) -> None:
        """Record the session's end with its report, publish it, wake who waits."""
        if state.finishing:  # a concurrent caller (cancel vs. last attempt) records it
            with anyio.CancelScope(shield=True):
                await state.done.wait()
            return
        state.finishing = True
        with anyio.CancelScope(shield=True):
            try:
                report = await self.record_end(state.id, stopping=state.stopping)
            finally:  # a failure to record still ends the session here: nobody waits for ever
                state.done.set()
                self._sessions.pop(state.id, None)
                self._ended.set()
                self._ended = anyio.Event()
            self.bus.publish(
                events.session_finished(
                    state.id,
                    status=report.status,
                    total=report.total_tests,
                    duration_seconds=report.duration_seconds,
                )
            )
            # here, not by a subscriber to every event: that woke a task for each one
            log.info(
                "session %s finished: %s (%s tests)", state.id, report.status, report.total_tests
            )

    async def record_end(
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
        snapshot, previous = await self.store.ending_snapshot(session_id)
        if status is None:
            status = _status(snapshot.executions, stopping)
        session = replace(snapshot.session, status=status.value, completed_at=utcnow())
        report = await final_report(self.store, session, snapshot, previous)
        report_json = report.model_dump_json()
        await self.store.finish_session(
            session_id, status, completed_at=session.completed_at, report_json=report_json
        )
        url = options_of(session).notify_url
        if url is not None and self.notify is not None:  # recorded first: the end never waits
            self.notify(session_id, url, report_json)
        return report

    # -- stopping -----------------------------------------------------------

    async def cancel(
        self,
        session_id: str,
        *,
        status: ExecutionStatus = ExecutionStatus.CANCELLED,
        grace_seconds: float = 0.0,
    ) -> bool:
        """:meth:`ParallelTestOrchestrator.cancel_session`; False if the session is not here."""
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
            await self.finish(state)
        return True

    async def cancel_all(self, status: ExecutionStatus, *, grace_seconds: float = 0.0) -> None:
        """Stop every session; running attempts get ``grace_seconds``."""
        states = list(self._sessions.values())
        for state in states:
            state.stopping = state.stopping or status
            self.queue.remove_session(state.id)
        await self._stop_running(list(self.running), status, grace_seconds)
        for state in states:
            await self.cancel(state.id, status=status)

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

    async def close_leftovers(self) -> None:
        """After the workers are gone: record whatever a forced stop left unfinished."""
        with anyio.CancelScope(shield=True):
            for state in list(self._sessions.values()):
                state.stopping = state.stopping or ExecutionStatus.CANCELLED
                await self.store.close_unfinished(state.id, state.stopping)
                await self.finish(state)


def _status(
    executions: Iterable[ExecutionRecord], stopping: ExecutionStatus | None
) -> SessionStatus:
    """What a session's executions say, unless it was stopped: then cancelled/interrupted."""
    status = session_status_for(Counter(e.status for e in executions))
    if stopping is None or status in (SessionStatus.CANCELLED, SessionStatus.INTERRUPTED):
        return status
    if stopping is ExecutionStatus.CANCELLED:
        return SessionStatus.CANCELLED
    return SessionStatus.INTERRUPTED
