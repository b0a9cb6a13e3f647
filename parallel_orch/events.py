"""One event model for orch.events(), the daemon's watch stream and the CLI's progress."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from enum import StrEnum

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from pydantic import BaseModel, ConfigDict, Field


class EventType(StrEnum):
    SESSION_STARTED = "session.started"
    ATTEMPT_STARTED = "attempt.started"
    ATTEMPT_FINISHED = "attempt.finished"
    TEST_RETRYING = "test.retrying"
    TEST_FINISHED = "test.finished"
    SESSION_FINISHED = "session.finished"


class Event(BaseModel):
    """Something that happened in a session. Fields not relevant to a type are None."""

    model_config = ConfigDict(frozen=True)

    type: EventType
    session_id: str
    at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    test_id: str | None = None
    execution_id: int | None = None
    attempt: int | None = None
    worker: int | None = None
    worktree: str | None = None
    status: str | None = None
    exit_code: int | None = None
    duration_seconds: float | None = None
    delay_seconds: float | None = None
    error: str | None = None
    flaky: bool | None = None
    total: int | None = None
    log_path: str | None = None


class EventBus:
    """Fan-out of events to subscribers; publishing never blocks the engine."""

    def __init__(self) -> None:
        self._subscribers: set[MemoryObjectSendStream[Event]] = set()

    def publish(self, event: Event) -> None:
        for stream in list(self._subscribers):
            try:
                stream.send_nowait(event)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                self._subscribers.discard(stream)  # its reader is gone
                stream.close()

    def open(self) -> MemoryObjectReceiveStream[Event]:
        """A stream of every event published from this call on; close it when done."""
        send, receive = anyio.create_memory_object_stream[Event](math.inf)
        self._subscribers.add(send)
        return receive

    @asynccontextmanager
    async def subscribe(self) -> AsyncIterator[MemoryObjectReceiveStream[Event]]:
        """:meth:`open` as a context manager."""
        async with self.open() as receive:
            yield receive

    def close(self) -> None:
        """End every subscriber's stream."""
        for stream in self._subscribers:
            stream.close()
        self._subscribers.clear()
