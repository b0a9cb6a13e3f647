"""FleetNode: one Dask worker's side of the fleet, its own clone and worktree pool.

A node takes a *slot* on its machine (a folder under the fleet's base dir,
locked while the worker lives, so two workers on one machine never share one
and a restarted worker finds its warm pool again), reaps what a dead worker of
that slot left running, clones the repo (or reuses the slot's clone) and opens
a :class:`~parallel_orch.executors.local.LocalExecutor` on it: the same pool,
cleaning, setup caching and process-group handling as a local run.

Each attempt fetches its commit when the clone lacks it, claims the attempt
with the scheduler (Dask runs a task again when its worker dies; a second
start finds the claim and runs nothing), runs it in the local executor, and
returns its result with its log, JUnit and coverage files' content. Nothing
here imports Dask: the plugin gives the node a :class:`WorkerLink`.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import Protocol

import anyio

from parallel_orch import junit, procs
from parallel_orch.config import ParallelTestConfig
from parallel_orch.exceptions import FleetError, StateDirError
from parallel_orch.executors import fleet_disk as disk
from parallel_orch.executors.fleet_wire import (
    SLOT_ENV,
    FleetEvent,
    FleetSettings,
    RemoteAttempt,
    RemoteResult,
    nothing,
)
from parallel_orch.executors.local import LocalExecutor
from parallel_orch.executors.protocol import AttemptResult, AttemptSpec, Placement
from parallel_orch.models import ExecutionStatus

log = logging.getLogger(__name__)

DEFAULT_BASE = Path("~/.cache/parallel-orch/fleet")
CANCELLED_KEPT = 10_000  # keys cancelled before they started, remembered


class WorkerLink(Protocol):
    """What a node needs of its Dask worker."""

    @property
    def address(self) -> str: ...

    @property
    def nthreads(self) -> int: ...

    def publish(self, event: FleetEvent) -> None:
        """Tell the orchestrator (Dask's structured events)."""

    async def claim(self, key: str) -> str | None:
        """Claim the attempt ``key`` for this worker; the worker that claimed it first, if
        another did."""


class FleetNode:
    """One worker's clone and pool; see the module docstring."""

    def __init__(self, settings: FleetSettings, link: WorkerLink) -> None:
        self.settings = settings
        self.link = link
        self.slot: Path | None = None
        self.executor: LocalExecutor | None = None
        self.error: str | None = None  # why this worker cannot run attempts
        self._ready = anyio.Event()
        self._stop = anyio.Event()
        self._lock_fd: int | None = None
        self._fetch_lock = anyio.Lock()
        self._commits: set[str] = set()  # known to be in the clone (objects are never lost)
        self._running: dict[str, anyio.CancelScope] = {}
        self._cancelled: collections.OrderedDict[str, None] = collections.OrderedDict()

    # -- lifecycle ------------------------------------------------------------

    async def serve(self) -> None:
        """Take a slot, clone, open the pool; keep its background work going until
        :meth:`close`. A failure is kept in :attr:`error`: attempts report it."""
        try:
            async with anyio.create_task_group() as tg:
                try:
                    await self._start()
                except (FleetError, OSError) as exc:
                    self.error = exc.message if isinstance(exc, FleetError) else str(exc)
                    log.error("parallel-orch fleet worker %s: %s", self.link.address, self.error)
                else:
                    assert self.executor is not None
                    self.executor.work_in(tg)
                finally:
                    self._ready.set()
                await self._stop.wait()
                if self.executor is not None:
                    self.executor.work_in(None)
                tg.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                if self.executor is not None:
                    await self.executor.close()
                if self._lock_fd is not None:
                    os.close(self._lock_fd)  # the slot is free for the next worker

    def close(self) -> None:
        self._stop.set()

    async def _start(self) -> None:
        base = self.settings.base_dir or DEFAULT_BASE
        slot, self._lock_fd = await anyio.to_thread.run_sync(
            disk.take_slot, base, self.settings.repo_dir_name
        )
        self.slot = slot
        reaped = await anyio.to_thread.run_sync(procs.kill_marked, [self._slot_marker()])
        if reaped:
            log.warning("killed %d process group(s) a dead worker left in %s", len(reaped), slot)
        repo = slot / "repo"
        await anyio.to_thread.run_sync(
            disk.clone, self.settings.repo_url, repo, self.settings.git_timeout_seconds
        )
        config = ParallelTestConfig.model_construct(
            repo=repo,
            worktree_base_dir=slot / "worktrees",
            state_dir=slot / "state",
            num_workers=max(1, self.link.nthreads),
            spare_worktrees=self.settings.spare_worktrees,
            preserve_failed_worktrees=self.settings.preserve_failed_worktrees,
            kill_grace_seconds=self.settings.kill_grace_seconds,
            log_tail_bytes=self.settings.log_tail_bytes,
        )
        self.executor = LocalExecutor(config)
        await self.executor.open()

    def _slot_marker(self) -> bytes:
        return f"{SLOT_ENV}={self.slot}".encode()

    # -- attempts -------------------------------------------------------------

    def cancel(self, keys: list[str]) -> int:
        """Stop these attempts here (their process groups die before their results
        return), or keep them from starting; how many were running here."""
        stopped = 0
        for key in keys:
            scope = self._running.get(key)
            if scope is not None:
                scope.cancel()
                stopped += 1
            else:
                self._cancelled[key] = None
                while len(self._cancelled) > CANCELLED_KEPT:
                    self._cancelled.popitem(last=False)
        return stopped

    async def run(self, attempt: RemoteAttempt) -> RemoteResult:
        """Run one attempt here; see the module docstring."""
        started = time.monotonic()
        scope = anyio.CancelScope()
        self._running[attempt.key] = scope
        hooks = _Hooks(self.link, attempt.key)
        outcome: RemoteResult | AttemptResult | None = None
        spec: AttemptSpec | None = None
        try:
            with scope:
                if attempt.key in self._cancelled:
                    scope.cancel()
                await self._ready.wait()
                if self.error is not None:
                    outcome = nothing(ExecutionStatus.ERROR, started, self.error, self.link.address)
                elif (other := await self.link.claim(attempt.key)) is not None:
                    outcome = RemoteResult(
                        nothing(ExecutionStatus.INTERRUPTED, started, host=self.link.address),
                        lost_on=other,
                    )
                else:
                    spec = await self._spec(attempt)
                    await self._fetch(attempt.sha)
                    assert self.executor is not None
                    outcome = await self.executor.run(spec, hooks)
        except FleetError as exc:
            outcome = nothing(ExecutionStatus.ERROR, started, exc.message, self.link.address)
        except (OSError, StateDirError) as exc:  # a full disk, a folder it cannot write...
            where = f"on Dask worker {self.link.address}: {exc}"
            outcome = nothing(ExecutionStatus.ERROR, started, where, self.link.address)
        finally:
            self._running.pop(attempt.key, None)
        if isinstance(outcome, RemoteResult):
            return outcome
        if outcome is None:  # cancelled: what the executor had when stopped
            outcome = hooks.stopped_result or nothing(
                ExecutionStatus.CANCELLED, started, host=self.link.address
            )
        outcome = replace(outcome, placement=self._placement(outcome))
        if spec is None:
            return RemoteResult(outcome)
        return await anyio.to_thread.run_sync(self._collect, spec, outcome)

    def _placement(self, result: AttemptResult) -> Placement:
        worktree = result.placement.worktree if result.placement else ""
        return Placement(worktree=worktree, host=self.link.address)

    async def _spec(self, attempt: RemoteAttempt) -> AttemptSpec:
        """The attempt with this worker's paths, its old files gone."""
        assert self.slot is not None
        state = self.slot / "state"
        key = attempt.key
        request = attempt.request.model_copy(
            update={"env": {**attempt.request.env, SLOT_ENV: str(self.slot)}}
        )
        spec = AttemptSpec(
            session_id=attempt.session_id,
            execution_id=attempt.execution_id,
            request=request,
            sha=attempt.sha,
            attempt=attempt.attempt,
            worker=attempt.worker,
            log_path=state / "logs" / f"{key}.log",
            junit_path=state / "junit" / f"{key}.xml",
            coverage_file=state / "coverage" / f"{key}.data" if attempt.coverage else None,
            avoid_worktree=attempt.avoid_worktree,
            scratch_dir=state / "scratch" / key,
            shard_durations=(
                state / "shards" / f"{key}.json" if attempt.shard_durations is not None else None
            ),
        )
        await anyio.to_thread.run_sync(disk.prepare, spec, attempt.shard_durations)
        return spec

    async def _fetch(self, sha: str) -> None:
        """Make sure the clone has the commit: fetch the remote's branches and tags, then
        the commit itself."""
        assert self.slot is not None
        repo = self.slot / "repo"
        if sha in self._commits:
            return
        if await anyio.to_thread.run_sync(disk.has_commit, repo, sha):
            self._commits.add(sha)
            return
        async with self._fetch_lock:
            timeout = self.settings.git_timeout_seconds
            for refspec in ([], [sha]):
                if await anyio.to_thread.run_sync(disk.has_commit, repo, sha):
                    return
                with contextlib.suppress(FleetError):
                    await anyio.to_thread.run_sync(
                        disk.git, ["-C", str(repo), "fetch", "--quiet", "origin", *refspec], timeout
                    )
            if await anyio.to_thread.run_sync(disk.has_commit, repo, sha):
                self._commits.add(sha)
            else:
                raise FleetError(
                    f"commit {sha[:12]} is not in {self.settings.repo_url} as worker "
                    f"{self.link.address} sees it; push it there, or give workers a repo "
                    "that has it"
                )

    def _collect(self, spec: AttemptSpec, result: AttemptResult) -> RemoteResult:
        """The result with its files' content; the files gone from this worker."""
        data, dropped = disk.read_end(spec.log_path, self.settings.log_bytes)
        junit_xml = disk.read_small(spec.junit_path, junit.MAX_BYTES)
        coverage = disk.read_small(spec.coverage_file, None) if spec.coverage_file else None
        for path in (spec.log_path, spec.junit_path, spec.coverage_file, spec.shard_durations):
            if path is not None:
                with contextlib.suppress(OSError):
                    path.unlink()
        if spec.scratch_dir is not None:  # the executor leaves it (empty) for reuse
            shutil.rmtree(spec.scratch_dir, ignore_errors=True)
        return RemoteResult(
            result, log=data, log_dropped=dropped, junit_xml=junit_xml, coverage=coverage
        )


class _Hooks:
    """The attempt's hooks on the worker: told to the orchestrator as events."""

    def __init__(self, link: WorkerLink, key: str) -> None:
        self.link = link
        self.key = key
        self.stopped_result: AttemptResult | None = None
        self._worktree = ""

    async def placed(self, placement: Placement) -> None:
        self._worktree = placement.worktree
        self._publish("placed", 0, 0)

    async def spawned(self, pid: int, pgid: int) -> None:
        self._publish("spawned", pid, pgid)

    async def stopped(self, result: AttemptResult) -> None:
        self.stopped_result = result

    def _publish(self, kind: str, pid: int, pgid: int) -> None:
        event: FleetEvent = {
            "key": self.key,
            "kind": "placed" if kind == "placed" else "spawned",
            "host": self.link.address,
            "worktree": self._worktree,
            "pid": pid,
            "pgid": pgid,
        }
        self.link.publish(event)
