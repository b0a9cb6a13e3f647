"""Intake first: a worker lets the sessions being admitted finish before it starts an attempt,
for a bounded time."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest

from parallel_orch import EventType, ParallelTestOrchestrator, TestRequest, intake
from tests.helpers import MakeConfig, Recorder, orchestrator, recording, stopped


@asynccontextmanager
async def _admitting_while_a_test_waits(
    make_config: MakeConfig, outside: Path, way: str = "create_session"
) -> AsyncIterator[tuple[ParallelTestOrchestrator, Recorder]]:
    """One worker, a test queued behind the one it runs, and a submit whose admission is held
    up (its ref lookup: ``git cat-file`` stopped) when the worker takes that test: a new
    session, or with ``way="submit_batch"`` requests added to the default one. Yields the
    orchestrator and its events; ``cat-file`` runs again after the block, and the held-up
    submit is admitted then."""
    go = outside / "go"
    async with orchestrator(make_config(num_workers=1)) as orch, recording(orch) as events:
        hold = f"while [ ! -e {go} ]; do sleep 0.01; done"  # holds the worker until go
        await orch.create_session([TestRequest(id="hold", command=hold)])
        await orch.create_session([TestRequest(id="queued", command="true")])
        resolver = orch._running.admission.lookup.resolver
        assert resolver._proc is not None  # started by the lookups above
        async with anyio.create_task_group() as tg:
            with stopped(resolver._proc.pid):
                late = [TestRequest(id="late", command="true")]
                tg.start_soon(getattr(orch, way), late)
                await anyio.sleep(0.05)  # its lookup asked, not answered
                go.touch()  # the worker is free: it takes the queued test
                yield orch, events
        await orch.wait_for_completion()


async def _started(events: Recorder, test_id: str) -> None:
    await events.wait_for(lambda e: e.type == EventType.ATTEMPT_STARTED and e.test_id == test_id)


@pytest.mark.parametrize("way", ["create_session", "submit_batch"])
async def test_a_test_starts_once_the_submit_being_admitted_is_committed(
    make_config: MakeConfig, outside: Path, monkeypatch: pytest.MonkeyPatch, way: str
) -> None:
    """A worker that takes a test while a submit is being admitted (a new session, or requests
    added to the default one) starts it only once that admission is done (no bound here):
    the burst is answered first."""
    monkeypatch.setattr(intake, "YIELD_SECONDS", 30.0)
    async with _admitting_while_a_test_waits(make_config, outside, way) as (orch, events):
        await _started(events, "hold")
        with anyio.move_on_after(1.0) as waited:  # the held test ends at once: it would start
            await _started(events, "queued")
        assert waited.cancelled_caught, "the test started while a session was being admitted"
        assert orch._running.admission.intake.admitting == 1
    await _started(events, "queued")


async def test_an_admission_held_up_delays_a_test_by_the_bound_only(
    make_config: MakeConfig, outside: Path
) -> None:
    """A session whose admission takes long (its ref lookup held up) delays a waiting test's
    start by :data:`~parallel_orch.intake.YIELD_SECONDS` only: workers are never starved."""
    async with _admitting_while_a_test_waits(make_config, outside) as (orch, events):
        with anyio.fail_after(1.0):  # the bound is 5 ms; a second is slack for a busy machine
            await _started(events, "queued")
        assert orch._running.admission.intake.admitting == 1, "the admission ended meanwhile"


async def test_quiet_returns_at_once_when_nothing_is_admitted() -> None:
    """With no admission in progress, a worker's wait takes no turn of the loop."""
    gate = intake.Intake()
    with gate.admitting_one(), gate.admitting_one():
        assert gate.admitting == 2
    assert gate.admitting == 0
    with anyio.CancelScope() as scope:
        scope.cancel()  # a turn of the loop would raise the cancellation here
        await gate.quiet()
    assert not scope.cancelled_caught
