"""FleetCluster: the orchestrator's connection to a Dask cluster, and how big the cluster is.

It reaches the scheduler (or starts a ``LocalCluster``), follows the cluster's
thread count so that worker loops take work only when there is room
(:meth:`FleetCluster.wait_slot`), and declares the cluster lost when the
scheduler stays away for ``lost_after_seconds``: what waits wakes, and the
orchestrator is told (``on_lost``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import anyio

from parallel_orch.config import ParallelTestConfig
from parallel_orch.exceptions import FleetError

log = logging.getLogger(__name__)

POLL_SECONDS = 0.5  # how often the cluster's size is read
Lost = Callable[[str], Awaitable[None]]


class FleetCluster:
    """See the module docstring. ``scheduler=None`` starts a ``LocalCluster`` of
    ``config.num_workers`` single-threaded worker processes, closed with it."""

    def __init__(
        self, config: ParallelTestConfig, scheduler: str | None, *, lost_after_seconds: float
    ) -> None:
        self.config = config
        self.address = scheduler
        self.lost_after_seconds = lost_after_seconds
        self.client: Any = None  # distributed.Client, asynchronous
        self.lost: str | None = None  # why the cluster cannot be used any more
        self.lost_event = anyio.Event()
        self.on_lost: list[Lost] = []  # told, in order, when the cluster is lost
        self.capacity = 0  # the cluster's threads
        self.resources: list[dict[str, float]] = []  # each worker's, e.g. {"gpu": 1.0}
        self._capacity_changed = anyio.Event()
        self._local: Any = None  # the LocalCluster started here, if any
        self._watching: asyncio.Task[None] | None = None

    async def open(self) -> None:
        """:raises FleetError: if the scheduler cannot be reached."""
        from distributed import Client, LocalCluster

        # Dask sets its loggers to INFO when imported: as loud as ours, no louder.
        logging.getLogger("distributed").setLevel(logging.getLogger().getEffectiveLevel())
        try:
            if self.address is None:
                self._local = await LocalCluster(  # type: ignore[no-untyped-call]
                    n_workers=self.config.num_workers,
                    threads_per_worker=1,
                    processes=True,
                    asynchronous=True,
                    dashboard_address=None,
                )
                self.address = self._local.scheduler_address
            connect = self.config.dask_connect_seconds
            with anyio.fail_after(connect + 1):
                self.client = await Client(  # type: ignore[no-untyped-call]
                    self.address, asynchronous=True, timeout=connect
                )
        except (OSError, TimeoutError, ValueError) as exc:  # ValueError: a bad address
            await self.close()
            raise FleetError(
                f"cannot reach the Dask scheduler at {self.address}: {words(exc)}; start one "
                "with `dask scheduler` and give its address with --scheduler"
            ) from None
        await self._read_capacity()
        # Its own task, from open() to close(): the orchestrator's task group must not wait
        # for it to end.
        self._watching = asyncio.get_running_loop().create_task(self._watch())

    async def close(self) -> None:
        with anyio.CancelScope(shield=True):
            watching, self._watching = self._watching, None
            if watching is not None:
                watching.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watching
            client, self.client = self.client, None
            if client is not None:
                # A client cut off from its scheduler logs its cancelled reconnection as an
                # error with a traceback; the loss is reported already, in one line.
                quiet = logging.getLogger("distributed.client")
                level = quiet.level
                if self.lost is not None:
                    quiet.setLevel(logging.CRITICAL)
                try:
                    with contextlib.suppress(Exception), anyio.move_on_after(5):
                        await client.close()
                finally:
                    quiet.setLevel(level)
            local, self._local = self._local, None
            if local is not None:
                with contextlib.suppress(Exception), anyio.move_on_after(15):
                    await local.close()

    def status(self) -> dict[str, Any]:
        return {"executor": "dask", "scheduler": self.address, "threads": self.capacity}

    async def wait_slot(self, index: int) -> None:
        """Until the cluster has more than ``index`` threads (or is lost: runs then end
        ``interrupted`` at once)."""
        while index >= self.capacity and self.lost is None:
            await self._capacity_changed.wait()

    async def lose(self, reason: str) -> None:
        """The cluster cannot be used any more: wake what waits, tell the orchestrator."""
        if self.lost is not None:
            return
        log.error("%s", reason)
        self.lost = reason
        self.lost_event.set()
        self._capacity_changed.set()
        for callback in self.on_lost:
            await callback(reason)

    def unplaceable(self, wanted: Mapping[str, float]) -> str | None:
        """Why no worker of the cluster can run a test that needs ``wanted`` (None: some can,
        or it needs nothing). A test no worker could take would wait in Dask for ever."""
        if not wanted or any(
            all(have.get(name, 0) >= amount for name, amount in wanted.items())
            for have in self.resources
        ):
            return None
        asked = ", ".join(f"{name}={amount:g}" for name, amount in sorted(wanted.items()))
        return (
            f"no Dask worker of {self.address} has the resources {asked}; start one with "
            f"`dask worker ... --resources {asked.replace(', ', ',')}`"
        )

    async def _read_capacity(self) -> None:
        info = await self.client.scheduler.identity(n_workers=-1)
        self.resources = [
            {str(k): float(v) for k, v in (w.get("resources") or {}).items()}
            for w in info.get("workers", {}).values()
        ]
        capacity = int(info.get("total_threads", 0))
        if capacity != self.capacity:
            self.capacity = capacity
            self._capacity_changed.set()
            self._capacity_changed = anyio.Event()

    async def _watch(self) -> None:
        """Follow the cluster's size; declare it lost when the scheduler stays away."""
        unreachable_since: float | None = None
        while self.lost is None:
            await anyio.sleep(POLL_SECONDS)
            try:
                with anyio.fail_after(self.lost_after_seconds):
                    await self._read_capacity()
                unreachable_since = None
                continue
            except Exception as exc:  # OSError, CommClosedError, TimeoutError...
                now = time.monotonic()
                unreachable_since = unreachable_since or now
                if now - unreachable_since < self.lost_after_seconds:
                    continue
                reason = f"lost the Dask scheduler at {self.address}: {words(exc)}"
            await self.lose(reason)


def words(exc: BaseException) -> str:
    """An exception's first line, or its type's name."""
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
