"""LocalExecutor: attempts in worktrees from this machine's pool, as local process groups.

Per attempt: lease a worktree at the commit, run the setup when the worktree
is not set up for it, run the command in its own process group with its
output appended to the log, parse its JUnit file, give the worktree back (or
set it aside, locked, when it failed and failed worktrees are kept).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import anyio
from anyio.abc import TaskGroup

from parallel_orch import junit, procs, runner, setup, sharding
from parallel_orch.config import ParallelTestConfig
from parallel_orch.exceptions import WorktreeError
from parallel_orch.executors import attempt_files
from parallel_orch.executors.protocol import (
    AttemptHooks,
    AttemptResult,
    AttemptSpec,
    LeftoverAttempt,
    Placement,
)
from parallel_orch.gitrepo import GitFailed
from parallel_orch.junit import JUnitResult
from parallel_orch.models import ExecutionStatus, TestRequest
from parallel_orch.report import coverage
from parallel_orch.setup import SetupKey
from parallel_orch.store import utcnow
from parallel_orch.worktree import Worktree, remember_ran, validate_worktree_dir
from parallel_orch.worktrees import WorktreePool

log = logging.getLogger(__name__)

ENV_PREFIX = "PARALLEL_ORCH_"
SHARD_STATUS = "shard.status"  # TEST_SHARD_STATUS_FILE, in the attempt's scratch folder
BASES_KEPT = 256  # setup bases remembered per (commit, setup_inputs)
DONT_WRITE_BYTECODE = "PYTHONDONTWRITEBYTECODE"
#: The variables whose values together mark one attempt's processes, even outside its group.
MARKER = ("PARALLEL_ORCH_SESSION_ID", "PARALLEL_ORCH_TEST_ID", "PARALLEL_ORCH_ATTEMPT")


def attempt_env(
    request: TestRequest,
    *,
    session_id: str,
    attempt: int,
    worker: int,
    worktree: Path,
    sha: str,
    junit_path: Path,
    tmp_dir: Path | None = None,
    coverage_file: Path | None = None,
) -> dict[str, str]:
    """The inherited environment minus our own settings, the request's env, then ours.

    Python's bytecode is left where Python keeps it (no ``PYTHONPYCACHEPREFIX``:
    that would move where bytecode is *read* too, the standard library's and
    the venv's included, and with ``PYTHONDONTWRITEBYTECODE`` every import
    would compile from source); the pool spares the worktree's ``__pycache__``
    folders between attempts at the same commit instead.
    A request with ``coverage`` on gets ``COVERAGE_FILE`` = ``coverage_file``
    (outside the worktree), and its source list, if any, in
    ``PARALLEL_ORCH_COVERAGE_SOURCE`` (see :mod:`parallel_orch.report.coverage`).
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    env.update(request.env)
    env.update(
        PARALLEL_ORCH_SESSION_ID=session_id,
        PARALLEL_ORCH_TEST_ID=request.id,
        PARALLEL_ORCH_ATTEMPT=str(attempt),
        PARALLEL_ORCH_WORKER=str(worker),
        PARALLEL_ORCH_WORKTREE=str(worktree),
        PARALLEL_ORCH_SHA=sha,
        PARALLEL_ORCH_JUNIT=str(junit_path),
        XML_OUTPUT_FILE=str(junit_path),  # Bazel's name for it: wrappers that know Bazel work
    )
    if tmp_dir is not None:
        env["TEST_TMPDIR"] = str(tmp_dir)
    if request.coverage and coverage_file is not None:
        env["COVERAGE_FILE"] = str(coverage_file)
        if isinstance(request.coverage, tuple):
            env[coverage.SOURCE_ENV] = coverage.source_env(worktree, request.coverage)
    return env


def writes_bytecode(request: TestRequest) -> bool:
    """Whether Python in the request's attempts writes bytecode (the variable set to
    anything but an empty string stops it), so that where it ran its modules are compiled."""
    value = request.env.get(DONT_WRITE_BYTECODE, os.environ.get(DONT_WRITE_BYTECODE, ""))
    return not value


@dataclass(eq=False)
class _SoFar:
    """What an attempt has got to: kept for its result, however the run ends."""

    log: IO[bytes]
    started_at: datetime
    started: float = field(default_factory=time.monotonic)
    worktree: Worktree | None = None
    placement: Placement | None = None
    outcome: runner.ProcessOutcome | None = None
    junit: JUnitResult | None = None
    error: str | None = None  # why no worktree could be had
    setup_seconds: float | None = None  # when the worktree was set up for it
    setup_key: SetupKey | None = None  # what the request's setup is keyed on
    command_started: bool = False  # past the setup and the cwd check: its command was started


class LocalExecutor:
    """Runs attempts on this machine; see the module docstring."""

    def __init__(self, config: ParallelTestConfig) -> None:
        """:raises RepoError: if the worktree dir is inside the repo."""
        self.config = config
        self.repo = config.repo
        self.pool = WorktreePool(
            config.repo,
            config.resolved_worktree_dir,
            config.num_workers + config.spare_worktrees,
        )
        validate_worktree_dir(self.repo, self.pool.base_dir)
        self._bases: dict[tuple[str, tuple[str, ...]], setup.Basis] = {}

    async def open(self) -> None:
        await self.pool.open()

    def work_in(self, tg: TaskGroup | None) -> None:
        self.pool.work_in(tg)

    async def close(self) -> None:
        with anyio.CancelScope(shield=True):
            await self.pool.close(remove=self.config.cleanup_on_completion)

    def status(self) -> dict[str, Any]:
        return dict(self.pool.status())

    def width(self) -> int:
        return self.config.num_workers

    def slots(self) -> int:
        return self.config.num_workers

    async def wait_slot(self, index: int) -> None:
        return  # this machine's workers are all there, always

    def when_lost(self, callback: Callable[[str], Awaitable[None]]) -> None:
        return  # this machine's pool is never lost while this process runs

    async def kill_leftovers(
        self, session_id: str, attempts: Sequence[LeftoverAttempt]
    ) -> set[int]:
        """SIGKILL the process groups a session's attempts left, if still ours; which ones."""
        killed: set[int] = set()
        for attempt in attempts:
            if attempt.pgid is not None and procs.kill_stale_group(attempt.pgid, session_id):
                killed.add(attempt.pgid)
        # Groups spawned before their pgid was committed: found by their environment.
        for pgid in await anyio.to_thread.run_sync(procs.session_groups, session_id):
            if pgid not in killed and procs.signal_group(pgid, signal.SIGKILL):
                killed.add(pgid)
        for pgid in sorted(killed):
            log.warning("killed process group %s left by session %s", pgid, session_id)
        return killed

    async def run(self, spec: AttemptSpec, hooks: AttemptHooks) -> AttemptResult:
        """Lease, set up, run, parse, release; see the module docstring."""
        so_far = _SoFar(log=await attempt_files.open_log(spec), started_at=utcnow())
        try:
            request = spec.request
            so_far.setup_key = await self._setup_key(spec, so_far.log)
            try:
                so_far.worktree = await self.pool.lease(
                    spec.sha,
                    keep=request.keep,
                    setup=so_far.setup_key,
                    avoid=spec.avoid_worktree,
                    prefer=spec.test_id,  # where it ran, its modules' bytecode is
                )
                if writes_bytecode(request):
                    remember_ran(so_far.worktree, spec.test_id)
            except WorktreeError as exc:
                so_far.error = exc.message
                so_far.log.write(f"parallel-orch: {exc.message}\n".encode())
            wt = so_far.worktree
            so_far.placement = Placement(worktree=str(wt.path) if wt else "")
            await hooks.placed(so_far.placement)
            if wt is not None:
                so_far.outcome = await self._run_in(wt, spec, so_far, hooks)
                if request.junit:
                    so_far.junit = await anyio.to_thread.run_sync(junit.parse, spec.junit_path)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await hooks.stopped(await self._end(spec, so_far))
            raise
        with anyio.CancelScope(shield=True):
            result = await self._end(spec, so_far)
        return result

    async def _end(self, spec: AttemptSpec, so_far: _SoFar) -> AttemptResult:
        """The attempt's result, once its log is closed and its worktree given back (first,
        so that the scrub overlaps what follows)."""
        sharded = _sharded(spec, so_far)
        tail = runner.read_tail(so_far.log, self.config.log_tail_bytes)
        await attempt_files.empty_scratch(spec)
        with contextlib.suppress(OSError):  # a full disk must not cost the record
            so_far.log.close()
        outcome, wt = so_far.outcome, so_far.worktree
        if outcome is not None:
            status, exit_code = outcome.status, outcome.exit_code
            if outcome.leaked and spec.request.leak == "fail" and status is ExecutionStatus.PASSED:
                status = ExecutionStatus.FAILED
        else:
            status = ExecutionStatus.ERROR if so_far.error else ExecutionStatus.CANCELLED
            exit_code = None
        if wt is not None:
            preserve = None
            if status.is_failure and self.config.preserve_failed_worktrees:
                preserve = (
                    f"parallel-orch: {spec.test_id} attempt {spec.attempt} "
                    f"{status.value} (session {spec.session_id})"
                )
            await self.pool.release(wt, preserve_reason=preserve)
        return AttemptResult(
            status=status,
            exit_code=exit_code,
            started_at=so_far.started_at,
            duration_seconds=(
                outcome.duration_seconds if outcome else time.monotonic() - so_far.started
            ),
            error=_error(spec, outcome, so_far.error),
            output_tail=tail,
            junit=so_far.junit,
            worktree=wt.name if wt else None,
            placement=so_far.placement,
            leaked=len(outcome.leaked) if outcome else 0,
            setup_seconds=so_far.setup_seconds,
            sharded=sharded,
        )

    async def _setup_key(self, spec: AttemptSpec, log_file: IO[bytes]) -> SetupKey | None:
        """What the request's setup is keyed on at its commit (None: it has no setup)."""
        request = spec.request
        if not request.setup:
            return None
        cache_key = (spec.sha, request.setup_inputs)
        found = self._bases.get(cache_key)
        if found is None:
            try:
                found = await anyio.to_thread.run_sync(
                    setup.basis, self.repo, spec.sha, request.setup_inputs
                )
            except GitFailed as exc:
                log.warning("setup_inputs of %s: %s; keyed on the commit", spec.test_id, exc)
                found = setup.Basis(spec.sha)
            if len(self._bases) >= BASES_KEPT:
                self._bases.pop(next(iter(self._bases)))
            self._bases[cache_key] = found
        for path in found.missing:
            log_file.write(
                f"parallel-orch: setup_inputs: {path} does not exist at commit "
                f"{spec.sha[:12]}; counted as absent\n".encode()
            )
        return (found.key, request.setup, request.keep)

    async def _run_in(
        self, wt: Worktree, spec: AttemptSpec, so_far: _SoFar, hooks: AttemptHooks
    ) -> runner.ProcessOutcome:
        """The setup, when ``wt`` is not set up for it, then the command."""
        request, log_file = spec.request, so_far.log
        env = attempt_env(
            request,
            session_id=spec.session_id,
            attempt=spec.attempt,
            worker=spec.worker,
            worktree=wt.path,
            sha=spec.sha,
            junit_path=spec.junit_path,
            tmp_dir=await attempt_files.scratch(spec),
            coverage_file=spec.coverage_file,
        )
        if request.shard is not None and spec.scratch_dir and spec.shard_durations:
            env.update(
                sharding.shard_env(
                    request,
                    env,
                    status_file=spec.scratch_dir / SHARD_STATUS,
                    durations=spec.shard_durations,
                )
            )
        key = so_far.setup_key
        leaked: tuple[int, ...] = ()
        if request.setup and key is not None and key != wt.setup_key:
            log_file.write(f"parallel-orch: setup: {request.setup}\n".encode())
            wt.setup_key = None
            setup.clear_marker(wt.path)  # a setup cut short must not look done
            ran = await self._process(request.setup, wt.path, env, request, log_file, hooks)
            leaked = ran.leaked
            so_far.setup_seconds = ran.duration_seconds
            if ran.status is not ExecutionStatus.PASSED:
                reason = ran.error or f"exit code {ran.exit_code}"
                return runner.ProcessOutcome(  # the test's own time is none: setup is apart
                    ExecutionStatus.ERROR, ran.exit_code, 0.0, f"setup failed: {reason}", leaked
                )
            wt.setup_key = key
            await anyio.to_thread.run_sync(setup.write_marker, wt.path, key)
            log_file.write(b"parallel-orch: setup done\n")
        cwd = wt.path / request.cwd
        if not cwd.is_dir():  # else the spawn fails as "cannot start bash: no such file"
            missing = f"cwd {request.cwd!r} does not exist at commit {spec.sha[:12]}"
            log_file.write(f"parallel-orch: {missing}\n".encode())
            return runner.ProcessOutcome(ExecutionStatus.ERROR, None, 0.0, missing)
        so_far.command_started = True
        outcome = await self._process(request.command, cwd, env, request, log_file, hooks)
        return replace(outcome, leaked=leaked + outcome.leaked)

    async def _process(
        self,
        command: str | Sequence[str],
        cwd: Path,
        env: dict[str, str],
        request: TestRequest,
        log_file: IO[bytes],
        hooks: AttemptHooks,
    ) -> runner.ProcessOutcome:
        return await runner.run_process(
            runner.command_argv(command),
            cwd=cwd,
            env=env,
            timeout_seconds=request.timeout_seconds,
            grace_seconds=self.config.kill_grace_seconds,
            log=log_file,
            on_spawn=hooks.spawned,
            marker=[f"{k}={env[k]}".encode() for k in MARKER],
        )


def _error(
    spec: AttemptSpec, outcome: runner.ProcessOutcome | None, setup_error: str | None
) -> str | None:
    """What went wrong, if anything: the process's error, a leak that fails it, or none."""
    if outcome is None:
        return setup_error
    if outcome.error:
        return outcome.error
    if outcome.leaked and spec.request.leak == "fail":
        pids = ", ".join(map(str, outcome.leaked))
        return (
            f"left {len(outcome.leaked)} process(es) running after it ended ({pids}); leak = 'fail'"
        )
    return None


_RAN_TO_ITS_END = frozenset({ExecutionStatus.PASSED, ExecutionStatus.FAILED})


def _sharded(spec: AttemptSpec, so_far: _SoFar) -> bool | None:
    """Whether a shard's runner touched TEST_SHARD_STATUS_FILE (None: not a shard, its
    command never ran, or it did not touch the file and never ran to its end); the log
    says so when it did not, as Bazel does."""
    outcome = so_far.outcome
    if spec.request.shard is None or spec.scratch_dir is None or not so_far.command_started:
        return None
    sharded = (spec.scratch_dir / SHARD_STATUS).exists()
    if not sharded and (outcome is None or outcome.status not in _RAN_TO_ITS_END):
        return None  # cancelled, timed out or never spawned: no telling what it would have done
    if not sharded:
        with contextlib.suppress(OSError):
            so_far.log.write(
                b"parallel-orch: the runner never touched TEST_SHARD_STATUS_FILE: "
                b"it did not shard (this shard ran every case)\n"
            )
    return sharded
