"""The Dask side of the fleet: a worker plugin that keeps a :class:`FleetNode` on each
worker, and the functions the orchestrator runs there.

Dask applies a registered worker plugin to every worker, those that join
later included; the plugin is idempotent under its name (one per repo and
settings), so a second orchestrator with the same settings keeps the pools
warm. :func:`run_attempt` is the task of one attempt; :func:`cancel_attempts`
and :func:`kill_marked` are run on workers with ``Client.run``, because
``Future.cancel()`` does not stop a task already running.
"""

from __future__ import annotations

import asyncio
import contextlib

from distributed import WorkerPlugin, get_client, get_worker
from distributed.worker import Worker

from parallel_orch import procs
from parallel_orch.executors.fleet_node import FleetNode
from parallel_orch.executors.fleet_wire import (
    CLAIM,
    TOPIC,
    FleetEvent,
    FleetSettings,
    RemoteAttempt,
    RemoteResult,
)
from parallel_orch.executors.protocol import AttemptResult, Placement
from parallel_orch.models import ExecutionStatus
from parallel_orch.store import utcnow


class FleetPlugin(WorkerPlugin):
    """Keeps a :class:`FleetNode` on the worker from its join to its close."""

    idempotent = True

    def __init__(self, settings: FleetSettings) -> None:
        self.settings = settings
        self.name = settings.plugin_name
        self.node: FleetNode | None = None
        self._serving: asyncio.Task[None] | None = None

    async def setup(self, worker: Worker) -> None:
        """Start the node in the background: a clone can take a while, and the worker
        must not wait for it to join."""
        self.node = FleetNode(self.settings, _Link(worker))
        self._serving = asyncio.get_running_loop().create_task(self.node.serve())

    async def teardown(self, worker: Worker) -> None:
        if self.node is not None and self._serving is not None:
            self.node.close()
            with contextlib.suppress(Exception):
                await self._serving


class _Link:
    """What the node needs of its Dask worker."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker

    @property
    def address(self) -> str:
        return str(self.worker.address)

    @property
    def nthreads(self) -> int:
        return int(self.worker.state.nthreads)

    def publish(self, event: FleetEvent) -> None:
        self.worker.log_event(TOPIC, dict(event))

    async def claim(self, key: str) -> str | None:
        """The claim is task metadata on the scheduler, forgotten with the task. Dask runs a
        task on one worker at a time, so reading then writing it cannot race."""
        client = get_client()
        me = [str(self.worker.id), self.address]  # a restarted worker may get the same address
        other = await client.get_metadata([key, CLAIM], default=None)  # type: ignore[no-untyped-call]
        if isinstance(other, list | tuple) and other and other[0] != me[0]:  # msgpack: tuple
            return str(other[-1])
        await client.set_metadata([key, CLAIM], me)  # type: ignore[no-untyped-call]
        return None


async def run_attempt(attempt: RemoteAttempt) -> RemoteResult:
    """The task of one attempt: run it on this worker's node."""
    worker = get_worker()
    plugin = worker.plugins.get(attempt.plugin)
    if not isinstance(plugin, FleetPlugin) or plugin.node is None:
        return RemoteResult(
            AttemptResult(
                status=ExecutionStatus.ERROR,
                exit_code=None,
                started_at=utcnow(),
                duration_seconds=0.0,
                error=f"Dask worker {worker.address} has no parallel-orch plugin {attempt.plugin}",
                placement=Placement(worktree="", host=str(worker.address)),
            )
        )
    return await plugin.node.run(attempt)


def cancel_attempts(plugin: str, keys: list[str], dask_worker: Worker) -> int:
    """Stop these attempts on this worker, or keep them from starting; how many ran here."""
    found = dask_worker.plugins.get(plugin)
    if not isinstance(found, FleetPlugin) or found.node is None:
        return 0
    return found.node.cancel(keys)


def kill_marked(marker: list[bytes]) -> list[int]:
    """SIGKILL the process groups on this machine whose environment holds ``marker``."""
    return sorted(procs.kill_marked(marker))
