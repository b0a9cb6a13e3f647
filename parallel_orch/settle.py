"""The record of an attempt as it happens, and what follows its end.

:class:`AttemptRecorder` is the hooks a worker gives the executor: where the
attempt runs reaches the store before its first process starts, so a crash
mid-attempt leaves a trace; which process it is, once it has run a moment.
:class:`Settler` records the end and decides by the retry policy: the request
goes back to the queue, or its execution is final.
"""

from __future__ import annotations

import asyncio
import logging
import time

from parallel_orch import events
from parallel_orch.events import Event, EventBus
from parallel_orch.exceptions import StoreError
from parallel_orch.executors.protocol import AttemptResult, AttemptSpec, Placement
from parallel_orch.models import ExecutionStatus
from parallel_orch.queue import QueueItem, TestQueue
from parallel_orch.retry import RetryPolicy
from parallel_orch.sessions import SessionRegistry, SessionState
from parallel_orch.store import AttemptEnd, ExecutionEnd, Store

log = logging.getLogger(__name__)

#: How long an attempt's process runs before it is recorded on its own, not with its end.
PROCESS_RECORD_SECONDS = 0.1


class AttemptRecorder:
    """The hooks a worker gives the executor: where the attempt runs reaches the store
    before its first process starts; which process, see :meth:`spawned`."""

    def __init__(self, store: Store, bus: EventBus, spec: AttemptSpec) -> None:
        self.store = store
        self.bus = bus
        self.spec = spec
        self.attempt_id: int | None = None
        self.stopped_result: AttemptResult | None = None
        self._started: Event | None = None
        self._process: tuple[int, int] | None = None  # pid, pgid
        self._timer: asyncio.TimerHandle | None = None  # to record the process on its own
        self._recording: asyncio.Future[None] | None = None

    async def placed(self, placement: Placement) -> None:
        # Before the first process starts, so a crash right after leaves a trace.
        await self._record_start(placement)
        assert self._started is not None
        self.bus.publish(self._started)

    async def _record_start(self, placement: Placement) -> int:
        spec = self.spec
        self.attempt_id = await self.store.start_attempt(
            spec.execution_id,
            spec.session_id,
            number=spec.attempt,
            worker=spec.worker,
            worktree=placement.worktree,
            log_path=str(spec.log_path),
            host=placement.host,
        )
        self._started = events.attempt_started(
            spec.session_id,
            test_id=spec.test_id,
            execution_id=spec.execution_id,
            attempt=spec.attempt,
            worker=spec.worker,
            worktree=placement.worktree or None,
            log_path=str(spec.log_path),
            host=placement.host or None,
        )
        return self.attempt_id

    async def spawned(self, pid: int, pgid: int) -> None:
        """Which process the attempt runs now (its setup's, then its command's).

        Written with the attempt's end, or on its own once it has run for
        :data:`PROCESS_RECORD_SECONDS`: a short attempt costs one transaction
        less. The pgid only helps recovery, which finds an attempt's groups by
        their environment marker anyway (``procs.session_groups``); the
        attempt's row, written before its first process, is the trace.
        """
        self._process = (pid, pgid)
        if self._timer is None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(PROCESS_RECORD_SECONDS, self._record_process_soon)

    def _record_process_soon(self) -> None:
        self._timer = None
        self._recording = asyncio.ensure_future(self._record_process())

    async def _record_process(self) -> None:
        if self.attempt_id is None or self._process is None:
            return
        try:
            await self.store.set_attempt_process(self.attempt_id, *self._process)
        except StoreError as exc:  # a hint for recovery: the end writes it again
            log.warning("cannot record the process of attempt %s: %s", self.attempt_id, exc)

    async def _process_recorded(self) -> None:
        """No process write pending or running once this returns."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._recording is not None:
            await self._recording
            self._recording = None

    async def stopped(self, result: AttemptResult) -> None:
        self.stopped_result = result

    async def end(self, result: AttemptResult) -> tuple[AttemptEnd, Event]:
        """The record of the attempt's end, and its ``attempt.finished`` event."""
        await self._process_recorded()
        attempt_id = self.attempt_id
        if attempt_id is None:  # its start was never recorded: it is now
            attempt_id = await self._record_start(result.placement or Placement(worktree=""))
        assert self._started is not None
        end = AttemptEnd(
            attempt_id=attempt_id,
            execution_id=self.spec.execution_id,
            status=result.status,
            exit_code=result.exit_code,
            duration_seconds=result.duration_seconds,
            output_tail=result.output_tail,
            error=result.error,
            junit=result.junit,
            leaked=result.leaked,
            setup_seconds=result.setup_seconds,
            sharded=result.sharded,
            pid=self._process[0] if self._process else None,
            pgid=self._process[1] if self._process else None,
        )
        finished = events.attempt_finished(
            self._started,
            status=result.status.value,
            exit_code=result.exit_code,
            duration_seconds=result.duration_seconds,
            error=result.error,
        )
        return end, finished


class Settler:
    """Decides what follows an attempt, by the retry policy, and records it."""

    def __init__(
        self,
        store: Store,
        queue: TestQueue,
        bus: EventBus,
        registry: SessionRegistry,
        retry_policy: RetryPolicy,
    ) -> None:
        self.store = store
        self.queue = queue
        self.bus = bus
        self.registry = registry
        self.retry_policy = retry_policy

    def recorder(self, spec: AttemptSpec) -> AttemptRecorder:
        """The hooks that record ``spec``'s attempt as it runs."""
        return AttemptRecorder(self.store, self.bus, spec)

    def _retry_delay(self, item: QueueItem, state: SessionState, end: AttemptEnd) -> float | None:
        """Seconds before the request's next attempt, or None when this one is its last."""
        if state.stopping is not None:
            return None
        if end.status is ExecutionStatus.INTERRUPTED:  # its machine was lost, not its fault
            return 0.0 if item.lost < self.retry_policy.max_lost else None
        return self.retry_policy.decide(
            end.status,
            attempt=item.attempt - item.lost,
            allowed_retries=item.request.retries,
            elapsed_seconds=time.monotonic() - (item.first_started or time.monotonic()),
        )

    async def settle(
        self,
        item: QueueItem,
        state: SessionState,
        end: AttemptEnd,
        finished: Event,
        worktree: str | None,
    ) -> None:
        """Record an attempt's end with its execution's next state: a retry, or final.

        :param finished: the attempt's ``attempt.finished`` event, published once recorded.
        :param worktree: the worktree it ran in, which a retry avoids.
        """
        delay = self._retry_delay(item, state, end)
        flaky = end.status is ExecutionStatus.PASSED and item.attempt - item.lost > 1
        outcome = None
        if delay is None:
            outcome = ExecutionEnd(
                status=end.status,
                flaky=flaky,
                error=end.error,
                duration_seconds=end.duration_seconds,
            )
        await self.store.end_attempt(end, outcome)
        self.bus.publish(finished)
        if delay is not None:
            self.bus.publish(
                events.test_retrying(
                    state.id,
                    test_id=item.test_id,
                    execution_id=item.execution_id,
                    attempt=item.attempt + 1,
                    status=end.status.value,
                    delay_seconds=delay,
                    error=end.error,
                )
            )
            item.lost += end.status is ExecutionStatus.INTERRUPTED
            item.attempt += 1
            item.avoid_worktree = worktree
            self.queue.retry_later(item, delay)
            return
        self.bus.publish(
            events.test_finished(
                state.id,
                test_id=item.test_id,
                execution_id=item.execution_id,
                attempt=item.attempt,
                status=end.status.value,
                duration_seconds=end.duration_seconds,
                error=end.error,
                flaky=flaky,
            )
        )
        await self.registry.execution_final(state, end.status)
