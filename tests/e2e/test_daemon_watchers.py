"""Watchers that read slower than events come: bounded, then dropped with a last error."""

from __future__ import annotations

import logging
from pathlib import Path

import anyio
import pytest

from parallel_orch import Event, ParallelTestConfig, TestRequest, events
from parallel_orch.daemon.protocol import ErrorCode, RpcError
from parallel_orch.daemon.service import WATCH_BUFFER_EVENTS, DaemonService
from parallel_orch.events import EventBus
from parallel_orch.store import ExecutionRecord, SessionRecord
from tests.helpers import WAIT_SECONDS, make_fifo, orchestrator


async def test_a_subscriber_that_falls_behind_its_buffer_is_dropped() -> None:
    """Past its bound a subscription ends early and says so; an unbounded one gets everything."""
    bus = EventBus()
    async with bus.subscribe(2) as slow, bus.subscribe() as fast:
        for n in range(3):
            bus.publish(events.session_started("s", n))
        assert slow.dropped and not fast.dropped
        bus.close()
        assert [e.total async for e in slow.receive] == [0, 1]
        assert [e.total async for e in fast.receive] == [0, 1, 2]


async def test_a_watch_that_falls_behind_ends_with_an_error_and_a_log_line(
    config: ParallelTestConfig, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A client that stops reading costs a bounded buffer; then its watch ends with -32011."""
    gate = make_fifo(tmp_path / "gate")
    emitted: list[Event] = []
    reading, first = anyio.Event(), anyio.Event()

    async def emit(*batch: Event) -> None:  # a client that reads only once `reading` is set
        emitted.extend(batch)
        first.set()
        await reading.wait()

    async with orchestrator(config) as orch:
        service = DaemonService(orch, socket_path=tmp_path / "d.sock", grace_seconds=0.0)
        session_id = await orch.create_session([TestRequest(id="held", command=f"cat {gate}")])
        failure: list[RpcError] = []
        with caplog.at_level(logging.WARNING), anyio.fail_after(WAIT_SECONDS):
            async with anyio.create_task_group() as tg:

                async def watch() -> None:
                    with pytest.raises(RpcError) as raised:
                        await service.watch(session_id, emit)
                    failure.append(raised.value)

                tg.start_soon(watch)
                await first.wait()  # the watch may read the store (in a thread) first
                await anyio.wait_all_tasks_blocked()
                assert len(emitted) == 1  # session.started, then the client stopped reading
                for n in range(WATCH_BUFFER_EVENTS + 100):  # as a busy session would publish
                    orch.bus.publish(events.session_started(session_id, n))
                reading.set()
        (error,) = failure
        assert error.code == ErrorCode.WATCH_DROPPED
        assert f"fell {WATCH_BUFFER_EVENTS} events behind" in error.message
        assert len(emitted) == 1 + WATCH_BUFFER_EVENTS  # what it had, and no more
        assert f"watch of session {session_id} dropped" in caplog.text
        await anyio.to_thread.run_sync(gate.write_text, "go")


async def test_a_watch_that_starts_as_its_session_ends_gets_that_end(
    config: ParallelTestConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A session (named by a prefix) that ends between the watch's read and its check is
    watched, not refused."""
    gate = make_fifo(tmp_path / "gate")
    emitted: list[Event] = []

    async def emit(*batch: Event) -> None:
        emitted.extend(batch)

    async with orchestrator(config) as orch:
        service = DaemonService(orch, socket_path=tmp_path / "d.sock", grace_seconds=0.0)
        session_id = await orch.create_session([TestRequest(id="held", command=f"cat {gate}")])
        store = orch.store
        read = store.session_executions

        async def read_then_the_session_ends(
            wanted: str,
        ) -> tuple[SessionRecord, list[ExecutionRecord]]:
            found = await read(wanted)  # still `running`
            monkeypatch.setattr(store, "session_executions", read)
            await anyio.to_thread.run_sync(gate.write_text, "go")
            await orch.wait_for_session(session_id)
            return found

        monkeypatch.setattr(store, "session_executions", read_then_the_session_ends)
        summary = await service.watch(session_id[:6], emit)  # a prefix: read to find the id
    assert summary.status == "complete"
    assert emitted[-1].type == "session.finished"
