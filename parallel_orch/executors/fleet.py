"""DaskExecutor: attempts run on a Dask distributed cluster; the record stays here.

Each attempt is one Dask task (:func:`~.fleet_plugin.run_attempt`) with the
request's ``resources`` as Dask worker resources. The worker that runs it
keeps its own clone and worktree pool (:mod:`~.fleet_node`), tells where the
attempt runs and which process it is through Dask's structured events, and
returns the result with its log, JUnit and coverage files' content, which are
written to the paths the spec names here.

The orchestrator's own queue decides what runs next, so priorities and fair
share behave as locally: worker loop ``i`` takes work only while the cluster
has more than ``i`` threads (:meth:`DaskExecutor.wait_slot`).

Faults: a task Dask ran again after its worker died finds the first run's
claim and runs nothing; the attempt is ``interrupted`` and the settler sends
the test again (:class:`~parallel_orch.retry.RetryPolicy` ``max_lost``).
Cancelling ``run`` stops the attempt on the worker that holds it
(``Future.cancel()`` alone would not). A scheduler lost for longer than
``lost_after_seconds`` interrupts what runs and tells the orchestrator.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from parallel_orch.config import ParallelTestConfig
from parallel_orch.executors import fleet_disk as disk
from parallel_orch.executors.fleet_cluster import FleetCluster, Lost, words
from parallel_orch.executors.fleet_wire import (
    TOPIC,
    FleetEvent,
    FleetSettings,
    RemoteAttempt,
    RemoteResult,
    attempt_key,
    nothing,
)
from parallel_orch.executors.local import MARKER
from parallel_orch.executors.protocol import (
    AttemptHooks,
    AttemptResult,
    AttemptSpec,
    LeftoverAttempt,
    Placement,
)
from parallel_orch.models import ExecutionStatus

log = logging.getLogger(__name__)

STOP_SECONDS = 10.0  # beyond the kill grace, to hear back from a worker told to stop


@dataclass(eq=False)
class _Watch:
    """One attempt in flight: its events from the worker, forwarded to its hooks in order."""

    hooks: AttemptHooks
    send: MemoryObjectSendStream[FleetEvent]
    receive: MemoryObjectReceiveStream[FleetEvent]
    host: str = ""
    placed: bool = False
    spawned: list[tuple[int, int]] = field(default_factory=list)

    async def forward(self) -> None:
        async with self.receive:
            async for event in self.receive:
                self.host = event["host"]
                if event["kind"] == "placed" and not self.placed:
                    self.placed = True
                    await self.hooks.placed(Placement(event["worktree"], event["host"]))
                elif event["kind"] == "spawned" and self.placed:
                    await self.hooks.spawned(event["pid"], event["pgid"])


class DaskExecutor:
    """Runs attempts on a Dask cluster; see the module docstring.

    :param scheduler: the scheduler's address; ``None`` starts a ``LocalCluster`` of
        ``config.num_workers`` single-threaded worker processes for the session.
    :param repo_url: what workers clone (default: this repo's path, for workers that
        share this machine or its file system).
    """

    def __init__(
        self,
        config: ParallelTestConfig,
        *,
        scheduler: str | None = None,
        repo_url: str | None = None,
        worker_dir: str | None = None,
        max_in_flight: int = 1024,
        lost_after_seconds: float = 10.0,
    ) -> None:
        self.config = config
        self.settings = FleetSettings(
            repo_url=repo_url or str(config.repo),
            base_dir=worker_dir,
            spare_worktrees=config.spare_worktrees,
            preserve_failed_worktrees=config.preserve_failed_worktrees,
            kill_grace_seconds=config.kill_grace_seconds,
            log_tail_bytes=config.log_tail_bytes,
        )
        self.max_in_flight = max_in_flight
        self.cluster = FleetCluster(config, scheduler, lost_after_seconds=lost_after_seconds)
        self._watches: dict[str, _Watch] = {}

    # -- lifecycle ------------------------------------------------------------

    @property
    def client(self) -> Any:
        return self.cluster.client

    @property
    def lost(self) -> str | None:
        return self.cluster.lost

    async def open(self) -> None:
        """Reach the scheduler (or start a local cluster) and register the worker plugin.

        :raises FleetError: if the scheduler cannot be reached.
        """
        from parallel_orch.executors.fleet_plugin import FleetPlugin

        await self.cluster.open()
        self.client.subscribe_topic(TOPIC, self._on_event)
        plugin = FleetPlugin(self.settings)
        await self.client.register_plugin(plugin, name=self.settings.plugin_name)

    def work_in(self, tg: TaskGroup | None) -> None:
        return  # the cluster is followed from open() to close(), not in the caller's group

    def when_lost(self, callback: Lost) -> None:
        self.cluster.on_lost.append(callback)

    async def close(self) -> None:
        await self.cluster.close()

    def status(self) -> dict[str, Any]:
        return self.cluster.status()

    def width(self) -> int:
        return self.cluster.capacity or self.config.num_workers

    def slots(self) -> int:
        return self.max_in_flight

    async def wait_slot(self, index: int) -> None:
        await self.cluster.wait_slot(index)

    def _on_event(self, event: tuple[float, FleetEvent]) -> None:
        message = event[1]
        watch = self._watches.get(message.get("key", ""))
        if watch is not None:
            with contextlib.suppress(anyio.ClosedResourceError, anyio.BrokenResourceError):
                watch.send.send_nowait(message)

    # -- attempts -------------------------------------------------------------

    async def run(self, spec: AttemptSpec, hooks: AttemptHooks) -> AttemptResult:
        """Submit the attempt as a task; forward its events; land its files here."""
        started = time.monotonic()
        if self.lost is not None:
            return nothing(ExecutionStatus.INTERRUPTED, started, self.lost)
        missing = self.cluster.unplaceable(spec.request.resources)
        if missing is not None:
            return nothing(ExecutionStatus.ERROR, started, missing)
        key = attempt_key(spec.session_id, spec.execution_id, spec.attempt)
        send, receive = anyio.create_memory_object_stream[FleetEvent](math.inf)
        watch = _Watch(hooks, send, receive)
        self._watches[key] = watch
        future = None
        try:
            future = self.client.submit(
                _task(), await self._remote(spec, key), key=key, pure=False,
                resources=dict(spec.request.resources) or None, retries=0,
            )  # fmt: skip
            remote = await self._outcome(future, watch, started)
        except BaseException:
            with anyio.CancelScope(shield=True):
                remote = await self._stop(key, future, watch, started)
                await hooks.stopped(await self._land(spec, remote, watch))
            raise
        finally:
            self._watches.pop(key, None)
            if future is not None:
                future.release()
        return await self._land(spec, remote, watch)

    async def _remote(self, spec: AttemptSpec, key: str) -> RemoteAttempt:
        durations = None
        if spec.shard_durations is not None:
            durations = await anyio.to_thread.run_sync(disk.read_or_none, spec.shard_durations)
        return RemoteAttempt(
            key=key,
            plugin=self.settings.plugin_name,
            session_id=spec.session_id,
            execution_id=spec.execution_id,
            request=spec.request,
            sha=spec.sha,
            attempt=spec.attempt,
            worker=spec.worker,
            coverage=spec.coverage_file is not None,
            shard_durations=durations,
            avoid_worktree=spec.avoid_worktree,
        )

    async def _outcome(self, future: Any, watch: _Watch, started: float) -> RemoteResult:
        """The task's result, its events forwarded meanwhile; a lost worker or scheduler
        is an ``interrupted`` attempt."""
        from distributed import KilledWorker

        remote: RemoteResult | None = None
        async with anyio.create_task_group() as tg:
            tg.start_soon(watch.forward)
            async with anyio.create_task_group() as race:

                async def lost() -> None:
                    await self.cluster.lost_event.wait()
                    race.cancel_scope.cancel()

                race.start_soon(lost)
                try:
                    remote = await future
                except KilledWorker:
                    error = "the Dask workers running it died (Dask's allowed-failures ran out)"
                    remote = RemoteResult(nothing(ExecutionStatus.INTERRUPTED, started, error))
                except Exception as exc:
                    if self.lost is None and _scheduler_gone(exc, self.client):
                        await self.cluster.lose(
                            f"lost the Dask scheduler at {self.cluster.address}"
                        )
                    error = self.lost or f"the Dask task failed: {words(exc)}"
                    status = ExecutionStatus.INTERRUPTED if self.lost else ExecutionStatus.ERROR
                    remote = RemoteResult(nothing(status, started, error))
                race.cancel_scope.cancel()
            watch.send.close()  # the forwarder drains what came, then ends
        if remote is None:  # the scheduler was lost first
            remote = RemoteResult(nothing(ExecutionStatus.INTERRUPTED, started, self.lost))
        return remote

    async def _stop(self, key: str, future: Any, watch: _Watch, started: float) -> RemoteResult:
        """Stop the attempt on its worker and wait for what it had; a task not started
        yet is kept from starting."""
        from parallel_orch.executors.fleet_plugin import cancel_attempts

        cancelled = RemoteResult(nothing(ExecutionStatus.CANCELLED, started))
        if future is None or self.lost is not None or self.client is None:
            return cancelled
        with (
            contextlib.suppress(Exception),
            anyio.move_on_after(self.config.kill_grace_seconds + STOP_SECONDS),
        ):
            workers = [watch.host] if watch.host else None
            ran = await self.client.run(
                cancel_attempts, self.settings.plugin_name, [key], workers=workers,
                on_error="return",
            )  # fmt: skip
            if watch.host or any(n == 1 for n in ran.values() if isinstance(n, int)):
                result = await future
                if isinstance(result, RemoteResult):
                    return result
            await self.client.cancel([future])
        return cancelled

    async def _land(self, spec: AttemptSpec, remote: RemoteResult, watch: _Watch) -> AttemptResult:
        """Write the files back; make sure the attempt's start is recorded."""
        result = remote.result
        if remote.lost_on is not None:
            result = replace(
                result,
                error=f"the Dask worker {remote.lost_on} running it was lost; it runs again",
            )
        if result.status is ExecutionStatus.INTERRUPTED:  # what the lost worker left running
            await self._kill_attempt(spec)
        await anyio.to_thread.run_sync(disk.write_files, spec, remote)
        if not watch.placed:
            watch.placed = True
            await watch.hooks.placed(result.placement or Placement(worktree="", host=""))
        return result

    async def _kill_attempt(self, spec: AttemptSpec) -> None:
        """What a lost worker's attempt left running, on any machine that can see it."""
        from parallel_orch.executors.fleet_plugin import kill_marked

        values = (spec.session_id, spec.test_id, str(spec.attempt))
        marker = [f"{k}={v}".encode() for k, v in zip(MARKER, values, strict=True)]
        if self.client is not None and self.lost is None:
            with contextlib.suppress(Exception), anyio.move_on_after(STOP_SECONDS):
                await self.client.run(kill_marked, marker, on_error="return")

    async def kill_leftovers(
        self, session_id: str, attempts: Sequence[LeftoverAttempt]
    ) -> set[int]:
        """Kill what a dead orchestrator's attempts left on every worker's machine."""
        from parallel_orch.executors.fleet_plugin import kill_marked

        marker = [f"PARALLEL_ORCH_SESSION_ID={session_id}".encode()]
        killed: set[int] = set()
        with contextlib.suppress(Exception), anyio.move_on_after(STOP_SECONDS):
            found = await self.client.run(kill_marked, marker, on_error="return")
            for worker, groups in found.items():
                if isinstance(groups, list) and groups:
                    log.warning("killed %s on %s, left by session %s", groups, worker, session_id)
                    killed.update(groups)
        return killed


def _task() -> Callable[[RemoteAttempt], Awaitable[RemoteResult]]:
    from parallel_orch.executors.fleet_plugin import run_attempt

    return run_attempt


def _scheduler_gone(exc: BaseException, client: Any) -> bool:
    """Whether a future failed because the client lost its scheduler (not because its task
    raised an OSError of its own, which Dask re-raises as it was)."""
    from distributed.client import FutureCancelledError

    connected = client is not None and client.status == "running"
    return isinstance(exc, FutureCancelledError | OSError) and not connected
