"""In-memory state of the sessions an orchestrator is running."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import anyio

from parallel_orch.models import ExecutionStatus, TestRequest


@dataclass(eq=False)
class Running:
    """An attempt in flight: what a worker is doing, and how to stop it."""

    session_id: str
    execution_id: int
    test_id: str
    attempt: int
    worker: int
    scope: anyio.CancelScope
    started: float = field(default_factory=time.monotonic)
    stop_reason: ExecutionStatus | None = None  # set when cancelled on purpose
    finishing: bool = False  # ended; its record is being written
    done: anyio.Event = field(default_factory=anyio.Event)


@dataclass(eq=False)
class SessionState:
    """A session between its creation and its ``session.finished``."""

    id: str
    plan_key: str
    priority: int = 0
    requests: dict[int, TestRequest] = field(default_factory=dict)  # execution id -> request
    shas: dict[int, str] = field(default_factory=dict)
    outstanding: int = 0  # executions not yet final
    failures: int = 0
    started: float = field(default_factory=time.monotonic)
    stopping: ExecutionStatus | None = None  # cancelled / interrupted once asked to stop
    dirs_ready: bool = False  # its log and JUnit folders exist
    open: bool = False  # the default session takes more requests until it is sealed
    finishing: bool = False  # _finish_session() has begun recording the end
    done: anyio.Event = field(default_factory=anyio.Event)
