"""The executor seam: what a worker hands over to run one attempt, and what it gets back.

A worker takes a request from the queue, builds a frozen :class:`AttemptSpec`
and awaits :meth:`Executor.run`. Where the attempt runs and which process it
is reach the worker through the :class:`AttemptHooks` it passes in, as they
happen, so the store has them even if this process dies mid-attempt. The
:class:`AttemptResult` comes back when the attempt is over.

Cancelling the awaited ``run`` stops the attempt wherever it runs: its
processes are killed before the cancellation propagates. An executor may run
the spec on another machine with its own clone and worktree pool; the spec
names the commit by SHA and carries the whole request, so nothing else is
needed there, and the log, JUnit and coverage files come back to the paths it
names.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from anyio.abc import TaskGroup

from parallel_orch.junit import JUnitResult
from parallel_orch.models import ExecutionStatus, TestRequest


@dataclass(frozen=True, slots=True)
class AttemptSpec:
    """One attempt to run."""

    session_id: str
    execution_id: int
    request: TestRequest
    sha: str  # the commit, resolved when the session was submitted
    attempt: int  # 1-based
    worker: int  # the worker slot, 0..N-1: PARALLEL_ORCH_WORKER, for ports and temp dirs
    log_path: Path  # where the attempt's output ends up, in the state dir
    junit_path: Path  # where its JUnit file ends up (PARALLEL_ORCH_JUNIT)
    coverage_file: Path | None = None  # COVERAGE_FILE, when the request collects coverage
    avoid_worktree: str | None = None  # a retry prefers another worktree than this one
    #: The attempt's own scratch folder, outside any worktree: TEST_TMPDIR, the shard status.
    scratch_dir: Path | None = None
    shard_durations: Path | None = None  # a shard's case durations, shared by its siblings

    @property
    def test_id(self) -> str:
        return self.request.id


@dataclass(frozen=True, slots=True)
class Placement:
    """Where an attempt runs, known before its first process starts."""

    worktree: str  # the worktree's path ("" when none could be had)
    host: str = ""  # the machine, for executors beyond this one ("" here)


@dataclass(frozen=True, slots=True)
class AttemptResult:
    """How an attempt ended."""

    status: ExecutionStatus  # passed, failed, timed_out, error; cancelled when stopped
    exit_code: int | None
    started_at: datetime
    duration_seconds: float
    error: str | None = None
    output_tail: str = ""  # the last bytes of the log, decoded leniently
    junit: JUnitResult | None = None  # its JUnit file's cases, when the request asked
    worktree: str | None = None  # the worktree's name, for a retry to avoid
    placement: Placement | None = None
    leaked: int = 0  # processes that left the attempt's group and outlived it: killed
    setup_seconds: float | None = None  # the setup, before (not in) ``duration_seconds``
    #: A shard's runner touched TEST_SHARD_STATUS_FILE (True) or not: it did not shard.
    sharded: bool | None = None


class AttemptHooks(Protocol):
    """What an executor tells the worker while an attempt runs."""

    async def placed(self, placement: Placement) -> None:
        """The attempt runs there; called once, before its first process starts."""

    async def spawned(self, pid: int, pgid: int) -> None:
        """A process of the attempt started: its setup's, then its command's."""

    async def stopped(self, result: AttemptResult) -> None:
        """The run ends by an exception, most often its cancellation: ``result`` is what the
        attempt had when stopped. Called (shielded) once its processes are gone, before the
        exception propagates."""


class LeftoverAttempt(Protocol):
    """An attempt a dead orchestrator recorded as running."""

    @property
    def pgid(self) -> int | None: ...


class Executor(Protocol):
    """Runs attempts; see the module docstring."""

    async def open(self) -> None:
        """Get ready to run attempts (the local executor reconciles its worktree pool)."""

    def work_in(self, tg: TaskGroup | None) -> None:
        """Do background work (cleaning, spares) in ``tg`` from now on; ``None``: stop."""

    async def close(self) -> None:
        """Give up what :meth:`open` took; every ``run`` has returned by now."""

    async def run(self, spec: AttemptSpec, hooks: AttemptHooks) -> AttemptResult:
        """Run one attempt to its end; cancelling this call stops it."""

    async def kill_leftovers(
        self, session_id: str, attempts: Sequence[LeftoverAttempt]
    ) -> set[int]:
        """Kill what a dead orchestrator's ``attempts`` of ``session_id`` left running;
        the process groups killed."""

    def status(self) -> dict[str, Any]:
        """A snapshot for ``status``: for the local executor, its worktree pool."""

    def width(self) -> int:
        """How many attempts run at once now: the local workers, a fleet's threads."""

    def slots(self) -> int:
        """How many attempts may run at once at most: the orchestrator runs a worker
        loop for each."""

    async def wait_slot(self, index: int) -> None:
        """Until worker loop ``index`` may take its next request (a fleet's size changes)."""

    def when_lost(self, callback: Callable[[str], Awaitable[None]]) -> None:
        """Call ``callback(reason)`` (each callback given, in order) if the executor can no
        longer run anything (a fleet's scheduler gone): the orchestrator then interrupts its
        sessions, and a daemon stops."""
