"""The daemon process: lock, socket, orchestrator, serving, signals, and a two-phase stop.

Start: take the state dir's lock, bind the socket (0600, stale ones
replaced), open the orchestrator (which recovers what a dead daemon left),
serve, then report readiness with the socket path.

Stop (SIGTERM, SIGINT or ``shutdown``): take no new sessions, give running
attempts ``grace_seconds`` to finish, then cancel them and everything still
queued; a second signal or ``shutdown --now`` cuts the grace. Clients keep
being answered during the grace (``watch`` sees its ``session.finished``).
Then the socket file is removed, the orchestrator closed, the lock released,
and only then are connections closed, so a client that waits for EOF knows
the daemon is gone.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass
from pathlib import Path

import anyio
from anyio.abc import TaskGroup, TaskStatus

from parallel_orch.config import ParallelTestConfig
from parallel_orch.daemon import paths
from parallel_orch.daemon.between import QuietCollector
from parallel_orch.daemon.lock import DaemonLock
from parallel_orch.daemon.loop import quiet_cancelled_reads
from parallel_orch.daemon.paths import GRACE_SECONDS, IDLE_TIMEOUT_SECONDS
from parallel_orch.daemon.server import DaemonServer
from parallel_orch.daemon.service import DaemonService
from parallel_orch.exceptions import FleetError, sole_orch_error
from parallel_orch.models import ExecutionStatus
from parallel_orch.orchestrator import ParallelTestOrchestrator

log = logging.getLogger(__name__)

CLOSE_SECONDS = 5.0  # time clients get to receive their last answers before connections close


@dataclass(frozen=True)
class DaemonOptions:
    config: ParallelTestConfig
    socket_path: Path
    resume: bool = False
    grace_seconds: float = GRACE_SECONDS
    idle_timeout: float = IDLE_TIMEOUT_SECONDS
    handle_signals: bool = True  # off when embedded (tests, another program's event loop)
    own_collector: bool = False  # collect between answers (between.py): the daemon process's


async def run_daemon(
    options: DaemonOptions, *, task_status: TaskStatus[Path] = anyio.TASK_STATUS_IGNORED
) -> None:
    """Serve until stopped; ``started`` with the socket path once clients can connect.

    :raises DaemonRunningError: if another daemon holds the state dir.
    :raises SocketPathError: if the socket cannot be bound.
    :raises OrchError: if the orchestrator cannot open (not a repo, store unwritable).
    """
    config = options.config
    quiet_cancelled_reads(asyncio.get_running_loop())
    with (
        DaemonLock(paths.lock_path(config.resolved_state_dir)) as lock,
        paths.bound_socket(options.socket_path) as bound,
    ):
        orch = ParallelTestOrchestrator(config, resume=options.resume)
        try:
            await _Daemon(orch, bound, lock, options).run(task_status)
        except BaseExceptionGroup as group:  # the connections' task group wraps what failed
            found = sole_orch_error(group)
            if found is None:
                raise
            raise found from None
        if orch.executor_lost is not None:
            raise FleetError(f"{orch.executor_lost}; the daemon stopped")


class _Daemon:
    def __init__(
        self,
        orch: ParallelTestOrchestrator,
        bound: paths.BoundSocket,
        lock: DaemonLock,
        options: DaemonOptions,
    ) -> None:
        self.orch = orch
        self.bound = bound
        self.lock = lock
        self.options = options
        self.service = DaemonService(
            orch, socket_path=bound.path, grace_seconds=options.grace_seconds
        )
        self.server = DaemonServer(self.service, bound.sock, idle_timeout=options.idle_timeout)
        self._grace_scope: anyio.CancelScope | None = None

    async def run(self, task_status: TaskStatus[Path]) -> None:
        # Connections live in the outer group: they outlast the orchestrator (see module doc).
        async with anyio.create_task_group() as connections:
            try:
                async with self.orch:
                    await self._serve(connections, task_status)
            finally:
                self.bound.unlink()
                self.lock.release()
                connections.cancel_scope.cancel()
        log.info("stopped")

    async def _serve(self, tg: TaskGroup, task_status: TaskStatus[Path]) -> None:
        await tg.start(self.server.serve)
        if self.options.handle_signals:
            await tg.start(self._on_signals)
        tg.start_soon(self._cut_grace_when_forced)
        if self.options.own_collector:
            await tg.start(QuietCollector(self.server.answering).run)
        log.info(
            "serving %s on %s with %d workers",
            self.orch.repo,
            self.bound.path,
            self.orch.config.num_workers,
        )
        task_status.started(self.bound.path)
        self.orch.executor.when_lost(self._executor_lost)
        await self.service.stop_requested.wait()
        await self._stop_work()
        with anyio.move_on_after(CLOSE_SECONDS):
            await self.server.wait_idle()
        self.bound.unlink()

    async def _stop_work(self) -> None:
        """Phase one: no new work, grace for running attempts. Phase two: cancel the rest."""
        await self.service.wait_for_submits()
        grace = 0.0 if self.service.forced.is_set() else self.options.grace_seconds
        log.info("stopping: no new sessions; running attempts get %gs to finish", grace)
        with anyio.CancelScope() as scope:
            self._grace_scope = scope
            await self.orch.cancel_all(ExecutionStatus.CANCELLED, grace_seconds=grace)
        self._grace_scope = None
        if scope.cancelled_caught:  # forced during the grace
            await self.orch.cancel_all(ExecutionStatus.CANCELLED)

    async def _executor_lost(self, reason: str) -> None:
        """Nothing more can run (a fleet's scheduler gone): stop, to be restarted."""
        log.error("%s: stopping", reason)
        self.service.request_stop(now=True)

    async def _cut_grace_when_forced(self) -> None:
        await self.service.forced.wait()
        if self._grace_scope is not None:
            log.warning("forced: cancelling running attempts now")
            self._grace_scope.cancel()

    async def _on_signals(
        self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """First SIGTERM/SIGINT: graceful stop. Second: force."""
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            task_status.started()
            async for signum in signals:
                name = signal.Signals(signum).name
                if not self.service.stop_requested.is_set():
                    log.warning(
                        "%s: stopping; running attempts get %gs (send it again to force)",
                        name,
                        self.options.grace_seconds,
                    )
                    self.service.request_stop(now=False)
                else:
                    log.warning("%s again: forcing the stop", name)
                    self.service.request_stop(now=True)
