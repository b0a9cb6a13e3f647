"""What the orchestrator and its Dask workers hand each other: plain, picklable data.

The orchestrator sends a :class:`RemoteAttempt` as a Dask task's argument and
gets a :class:`RemoteResult` back as its result; while the attempt runs, the
worker publishes :class:`FleetEvent` dicts on :data:`TOPIC` (Dask's structured
events), which tell the orchestrator where it runs and which process it is.
Nothing here imports Dask.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, TypedDict

from parallel_orch.executors.protocol import AttemptResult, Placement
from parallel_orch.models import ExecutionStatus, TestRequest

TOPIC = "parallel-orch"  # the Dask event topic attempts report on
KEY_PREFIX = "parallel-orch"  # every attempt's task key starts with it
CLAIM = "parallel-orch-claim"  # task metadata: the worker that started the attempt
SLOT_ENV = "PARALLEL_ORCH_FLEET_SLOT"  # marks a worker slot's processes, to reap them


@dataclass(frozen=True, slots=True)
class FleetSettings:
    """How every Dask worker keeps its clone and worktree pool: the worker plugin's state."""

    repo_url: str  # what workers clone: a path they can read or a URL git can fetch
    base_dir: str | None = None  # on each worker; default ~/.cache/parallel-orch/fleet
    spare_worktrees: int = 1
    preserve_failed_worktrees: bool = False
    kill_grace_seconds: float = 5.0
    log_tail_bytes: int = 16_384
    log_bytes: int = 8 * 1024 * 1024  # the most of a log sent back: its end
    git_timeout_seconds: float = 600.0  # a clone or fetch that takes longer is an error

    @property
    def plugin_name(self) -> str:
        """One plugin per repo and settings: a second orchestrator with the same keeps the
        workers' pools warm."""
        digest = hashlib.sha256(repr(self).encode()).hexdigest()[:12]
        return f"parallel-orch-{digest}"

    @property
    def repo_dir_name(self) -> str:
        """The folder under ``base_dir`` a worker keeps this repo's slots in."""
        digest = hashlib.sha256(self.repo_url.encode()).hexdigest()[:12]
        name = Path(self.repo_url.rstrip("/")).name.removesuffix(".git") or "repo"
        return f"{name}-{digest}"


def attempt_key(session_id: str, execution_id: int, attempt: int) -> str:
    """The Dask task key of one attempt: unique, and named so on the dashboard."""
    return f"{KEY_PREFIX}-{session_id}-{execution_id}-{attempt}"


@dataclass(frozen=True, slots=True)
class RemoteAttempt:
    """One attempt, as a worker needs it: no path of the orchestrator's machine."""

    key: str
    plugin: str  # the FleetPlugin's name on the worker
    session_id: str
    execution_id: int
    request: TestRequest
    sha: str
    attempt: int
    worker: int  # the orchestrator's worker slot: PARALLEL_ORCH_WORKER
    coverage: bool  # send the coverage data file back
    shard_durations: bytes | None = None  # the durations file's content, for a shard
    avoid_worktree: str | None = None


@dataclass(frozen=True, slots=True)
class RemoteResult:
    """How the attempt ended on the worker, with its files' content to write back."""

    result: AttemptResult
    log: bytes = b""  # the log's last ``log_bytes``
    log_dropped: int = 0  # bytes of the log's start left on the worker
    junit_xml: bytes | None = None
    coverage: bytes | None = None
    #: Set when the attempt had already been started on another worker, which was lost
    #: (Dask ran the task again): nothing ran here.
    lost_on: str | None = None


def nothing(
    status: ExecutionStatus, started: float, error: str | None = None, host: str = ""
) -> AttemptResult:
    """The result of an attempt that ran no process: ``started`` is its monotonic start."""
    return AttemptResult(
        status=status,
        exit_code=None,
        started_at=datetime.now(UTC),
        duration_seconds=time.monotonic() - started,
        error=error,
        placement=Placement(worktree="", host=host) if host else None,
    )


class FleetEvent(TypedDict):
    """What a worker says about an attempt while it runs."""

    key: str
    kind: Literal["placed", "spawned"]
    host: str  # the worker's address
    worktree: str
    pid: int
    pgid: int
