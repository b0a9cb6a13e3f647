"""One event model for orch.events(), the daemon's watch stream and the CLI's progress."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
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

    model_config = ConfigDict(frozen=True, defer_build=True)

    type: EventType
    session_id: str
    at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    test_id: str | None = None
    execution_id: int | None = None
    attempt: int | None = None
    worker: int | None = None
    worktree: str | None = None
    host: str | None = None  # the machine, on a fleet: the Dask worker's address
    status: str | None = None
    exit_code: int | None = None
    duration_seconds: float | None = None
    delay_seconds: float | None = None
    error: str | None = None
    flaky: bool | None = None
    total: int | None = None
    log_path: str | None = None


@dataclass(eq=False)
class Subscription:
    """One subscriber's stream of events; ``dropped`` once it fell too far behind."""

    receive: MemoryObjectReceiveStream[Event]
    dropped: bool = False


class EventBus:
    """Fan-out of events to subscribers; publishing never blocks the engine.

    A subscriber with a bounded buffer that falls that far behind is dropped:
    its stream ends early and its :class:`Subscription` says so. A subscriber
    to one session gets that session's events only: a daemon with many
    watches does not wake each of them for every other session's events.
    """

    def __init__(self) -> None:
        # by session id; None: subscribers to every session's events
        self._subscribers: dict[str | None, dict[MemoryObjectSendStream[Event], Subscription]] = {}

    def publish(self, event: Event) -> None:
        for key in (None, event.session_id):
            subscribers = self._subscribers.get(key)
            if subscribers:
                self._deliver(key, subscribers, event)

    def _deliver(
        self,
        key: str | None,
        subscribers: dict[MemoryObjectSendStream[Event], Subscription],
        event: Event,
    ) -> None:
        for stream in list(subscribers):
            try:
                stream.send_nowait(event)
            except anyio.WouldBlock:  # its buffer is full: it has fallen too far behind
                subscribers.pop(stream).dropped = True
                stream.close()
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                subscribers.pop(stream, None)  # its reader is gone
                stream.close()
        if not subscribers:
            self._subscribers.pop(key, None)

    def _open(
        self, max_buffer: float, session_id: str | None
    ) -> tuple[MemoryObjectSendStream[Event], Subscription]:
        send, receive = anyio.create_memory_object_stream[Event](max_buffer)
        subscription = Subscription(receive)
        self._subscribers.setdefault(session_id, {})[send] = subscription
        return send, subscription

    def _close(self, send: MemoryObjectSendStream[Event], session_id: str | None) -> None:
        subscribers = self._subscribers.get(session_id, {})
        subscribers.pop(send, None)
        send.close()
        if not subscribers:
            self._subscribers.pop(session_id, None)

    def open(self) -> MemoryObjectReceiveStream[Event]:
        """A stream of every event published from this call on; close it when done."""
        return self._open(math.inf, None)[1].receive

    @asynccontextmanager
    async def subscribe(
        self, max_buffer: float = math.inf, *, session_id: str | None = None
    ) -> AsyncIterator[Subscription]:
        """A subscription for the block (to ``session_id``'s events only, if given),
        dropped if it falls ``max_buffer`` events behind."""
        send, subscription = self._open(max_buffer, session_id)
        try:
            async with subscription.receive:
                yield subscription
        finally:  # a session's events may never come again: nothing would clear it
            self._close(send, session_id)

    def close(self) -> None:
        """End every subscriber's stream."""
        for subscribers in self._subscribers.values():
            for stream in subscribers:
                stream.close()
        self._subscribers.clear()


# -- factories: every event the engine publishes is built here -------------------------


def session_started(session_id: str, total: int) -> Event:
    return Event(type=EventType.SESSION_STARTED, session_id=session_id, total=total)


def session_finished(
    session_id: str, *, status: str, total: int, duration_seconds: float | None
) -> Event:
    return Event(
        type=EventType.SESSION_FINISHED,
        session_id=session_id,
        status=status,
        total=total,
        duration_seconds=duration_seconds,
    )


def attempt_started(
    session_id: str,
    *,
    test_id: str,
    execution_id: int,
    attempt: int,
    worker: int,
    worktree: str | None,
    log_path: str,
    host: str | None = None,
) -> Event:
    return Event(
        type=EventType.ATTEMPT_STARTED,
        session_id=session_id,
        test_id=test_id,
        execution_id=execution_id,
        attempt=attempt,
        worker=worker,
        worktree=worktree,
        host=host,
        log_path=log_path,
    )


def attempt_finished(
    started: Event,
    *,
    status: str,
    exit_code: int | None,
    duration_seconds: float,
    error: str | None,
) -> Event:
    """The end of the attempt whose ``attempt.started`` was ``started``."""
    return started.model_copy(
        update={
            "type": EventType.ATTEMPT_FINISHED,
            "at": datetime.now(UTC),
            "status": status,
            "exit_code": exit_code,
            "duration_seconds": duration_seconds,
            "error": error,
        }
    )


def test_retrying(
    session_id: str,
    *,
    test_id: str,
    execution_id: int,
    attempt: int,
    status: str,
    delay_seconds: float,
    error: str | None,
) -> Event:
    """Attempt ``attempt`` of a test follows in ``delay_seconds``; the last ended ``status``."""
    return Event(
        type=EventType.TEST_RETRYING,
        session_id=session_id,
        test_id=test_id,
        execution_id=execution_id,
        attempt=attempt,
        status=status,
        delay_seconds=delay_seconds,
        error=error,
    )


def test_finished(
    session_id: str,
    *,
    test_id: str,
    execution_id: int | None,
    status: str,
    attempt: int | None = None,
    duration_seconds: float | None = None,
    error: str | None = None,
    flaky: bool | None = None,
    at: datetime | None = None,
) -> Event:
    return Event(
        type=EventType.TEST_FINISHED,
        session_id=session_id,
        test_id=test_id,
        execution_id=execution_id,
        attempt=attempt,
        status=status,
        duration_seconds=duration_seconds,
        error=error,
        flaky=flaky,
        at=at or datetime.now(UTC),
    )


test_retrying.__test__ = False  # type: ignore[attr-defined]  # not pytest tests
test_finished.__test__ = False  # type: ignore[attr-defined]


async def stream(
    receive: MemoryObjectReceiveStream[Event], session_id: str | None
) -> AsyncIterator[Event]:
    """The events of ``receive`` (of one session, up to its ``session.finished``, if given)."""
    async with receive:
        async for event in receive:
            if session_id is not None and event.session_id != session_id:
                continue
            yield event
            if session_id is not None and event.type is EventType.SESSION_FINISHED:
                return
