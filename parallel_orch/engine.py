"""The engine: the orchestrator's parts, wired together once the store and executor are open.

A request's path: :mod:`~parallel_orch.plans` -> :mod:`~parallel_orch.admission`
(resolve, commit, queue) -> :mod:`~parallel_orch.queue` ->
:mod:`~parallel_orch.worker` (once :mod:`~parallel_orch.intake` is quiet) ->
:mod:`~parallel_orch.executors` ->
:mod:`~parallel_orch.settle` (the store, a retry or the end) ->
:mod:`~parallel_orch.sessions` (the session's end and its
:mod:`~parallel_orch.report`) -> :mod:`~parallel_orch.notify` (its webhook).
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

from parallel_orch import recovery
from parallel_orch.admission import Admission
from parallel_orch.config import ParallelTestConfig
from parallel_orch.events import EventBus
from parallel_orch.executors.protocol import Executor
from parallel_orch.notify import Notifier, NotifyPolicy
from parallel_orch.queue import Admitted, TestQueue
from parallel_orch.retry import RetryPolicy
from parallel_orch.sessions import SessionRegistry, SessionState, Spawn
from parallel_orch.settle import Settler
from parallel_orch.store import Store, open_store
from parallel_orch.worker import ExecutionWorker


@dataclass(frozen=True, slots=True)
class Engine:
    """The parts behind the orchestrator, wired to one store and one executor."""

    store: Store
    executor: Executor
    registry: SessionRegistry
    admission: Admission
    settler: Settler
    resumed: list[tuple[SessionState, list[Admitted]]]  # taken over, to queue at start

    @classmethod
    async def open(
        cls,
        stack: AsyncExitStack,
        config: ParallelTestConfig,
        *,
        queue: TestQueue,
        bus: EventBus,
        executor: Executor,
        owner: str,
        retry_policy: RetryPolicy,
        spawn: Spawn,
        resume: bool,
        notify_policy: NotifyPolicy | None = None,
    ) -> Engine:
        """Open the store and the executor on ``stack``, wire the parts to them, and
        recover the sessions a dead process left (resumed ones when ``resume``)."""
        store = await stack.enter_async_context(open_store(config.resolved_state_dir))
        await executor.open()
        stack.push_async_callback(executor.close)
        # Closed after the sessions' ends (and their deliveries) are recorded, before the store.
        notifier = await stack.enter_async_context(Notifier(store, notify_policy))
        registry = SessionRegistry(
            store,
            queue,
            bus,
            max_failures=config.max_failures,
            kill_grace_seconds=config.kill_grace_seconds,
            spawn=spawn,
            notify=notifier.send,
        )
        stack.push_async_callback(registry.close_leftovers)
        admission = Admission(
            repo=config.repo,
            store=store,
            queue=queue,
            bus=bus,
            registry=registry,
            owner=owner,
            num_workers=executor.width,
            spawn=spawn,
            state_dir=config.resolved_state_dir,
        )
        stack.push_async_callback(admission.aclose)
        settler = Settler(store, queue, bus, registry, retry_policy)
        resumed = await recovery.recover(
            store, executor, registry, repo=config.repo, owner=owner, resume=resume
        )
        return cls(store, executor, registry, admission, settler, resumed)

    def workers(self, queue: TestQueue, spawn: Spawn, state_dir: Path) -> list[ExecutionWorker]:
        """A worker for each of the executor's slots, taking from ``queue``."""
        return [
            ExecutionWorker(
                index,
                queue=queue,
                registry=self.registry,
                executor=self.executor,
                settler=self.settler,
                spawn=spawn,
                state_dir=state_dir,
                intake=self.admission.intake,
            )
            for index in range(self.executor.slots())
        ]
