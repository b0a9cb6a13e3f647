"""The daemon's collector runs between answers, by the interpreter's thresholds; and one
yield of the CPU per step of the loop that answered."""

from __future__ import annotations

import asyncio
import gc
import itertools
import os
import weakref
from collections.abc import Iterator

import anyio
import anyio.lowlevel
import pytest

from parallel_orch.daemon import between
from parallel_orch.daemon.between import OVERDUE, QuietCollector, due

THRESHOLDS = (50, 10, 10)


class Node:
    """An object in a reference cycle: only a collection frees it."""

    def __init__(self) -> None:
        self.me = self


def cycles(count: int, gone: anyio.Event) -> weakref.ref[Node]:
    """``count`` unreachable cycles of garbage; a weak reference to the last one, which sets
    ``gone`` when it is collected."""
    node = Node()
    for _ in range(count - 1):
        Node()
    return weakref.ref(node, lambda _: gone.set())


@pytest.fixture
def small_thresholds() -> Iterator[None]:
    """Low thresholds, counts at zero, the automatic collector as it was after."""
    old, enabled = gc.get_threshold(), gc.isenabled()
    gc.collect()
    gc.set_threshold(*THRESHOLDS)
    try:
        yield
    finally:
        gc.set_threshold(*old)
        if enabled:
            gc.enable()


@pytest.mark.parametrize(
    ("counts", "over", "expected"),
    [
        ((50, 0, 0), 1, None),
        ((51, 0, 0), 1, 0),
        ((51, 11, 0), 1, 1),
        ((51, 11, 11), 1, 2),
        ((51, 3, 11), 1, 2),
        ((51, 11, 0), OVERDUE, None),
        ((50 * OVERDUE + 1, 0, 0), OVERDUE, 0),
    ],
)
def test_the_due_generation_is_the_interpreters(
    counts: tuple[int, int, int], over: int, expected: int | None
) -> None:
    """Due once the young count is over its threshold (``over`` times it while answering):
    the oldest generation whose count is over its own."""
    assert due(counts, THRESHOLDS, over=over) == expected


def test_nothing_is_due_when_collection_is_off() -> None:
    """A young threshold of 0 (collection turned off by the user) is respected."""
    assert due((10_000, 100, 100), (0, 10, 10)) is None


@pytest.mark.usefixtures("small_thresholds")
async def test_garbage_is_collected_while_no_request_is_answered() -> None:
    """Quiet: a cycle of garbage is gone within a few checks; the automatic collector is off
    while the daemon's runs, and on again after."""
    collector = QuietCollector(lambda: False)
    async with anyio.create_task_group() as tg:
        await tg.start(collector.run)
        assert not gc.isenabled()
        gone = anyio.Event()
        watch = cycles(THRESHOLDS[0] * 2, gone)  # the weak reference must live to call back
        with anyio.fail_after(5):
            await gone.wait()
        del watch
        tg.cancel_scope.cancel()
    assert gc.isenabled()
    assert collector.collections >= 1


@pytest.mark.usefixtures("small_thresholds")
async def test_answering_defers_a_collection_until_it_is_overdue() -> None:
    """While a request is answered, garbage over the threshold waits; once the young count is
    OVERDUE times over it, it is collected anyway (memory stays bounded under load)."""
    collector = QuietCollector(lambda: True)
    async with anyio.create_task_group() as tg:
        await tg.start(collector.run)
        waited, overdue = anyio.Event(), anyio.Event()
        watches = [cycles(THRESHOLDS[0] * 2, waited)]  # alive: they call back
        await anyio.sleep(between.CHECK_SECONDS * 4)
        assert not waited.is_set(), "collected while a request was being answered"
        watches.append(cycles(THRESHOLDS[0] * OVERDUE, overdue))
        with anyio.fail_after(5):
            await overdue.wait()
            await waited.wait()
        del watches
        tg.cancel_scope.cancel()


@pytest.mark.usefixtures("small_thresholds")
async def test_an_overdue_collection_while_answering_is_never_a_full_one() -> None:
    """Even when the thresholds call for a full collection, one made while a request is
    being answered takes the young and middle generations only (a full one waits)."""
    for _ in range(THRESHOLDS[2] + 1):  # the old generation's count over its threshold
        gc.collect(1)
    collected: list[int] = []

    def record(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            collected.append(info["generation"])

    collector = QuietCollector(lambda: True)
    gc.callbacks.append(record)
    try:
        async with anyio.create_task_group() as tg:
            await tg.start(collector.run)
            overdue = anyio.Event()
            watch = cycles(THRESHOLDS[0] * OVERDUE, overdue)
            with anyio.fail_after(5):
                await overdue.wait()
            del watch
            tg.cancel_scope.cancel()
    finally:
        gc.callbacks.remove(record)
    assert collected, "nothing was collected"
    assert max(collected) <= 1, collected


async def test_nothing_is_collected_when_automatic_collection_was_off() -> None:
    """A process that turned its collector off keeps it off: the daemon's does nothing."""
    gc.disable()
    try:
        collector = QuietCollector(lambda: False)
        async with anyio.create_task_group() as tg:
            await tg.start(collector.run)
            cycles(THRESHOLDS[0] * OVERDUE * 10, anyio.Event())
            await anyio.sleep(between.CHECK_SECONDS * 3)
            tg.cancel_scope.cancel()
        assert not gc.isenabled()
        assert collector.collections == 0
    finally:
        gc.enable()


async def test_an_idle_daemon_looks_seldom(monkeypatch: pytest.MonkeyPatch) -> None:
    """With nothing allocated, the checks back off to one a second (no wake-ups 20 times a
    second for ever)."""
    monkeypatch.setattr(between, "IDLE_CHECK_SECONDS", 0.2)
    checks: list[float] = []

    def answering() -> bool:  # asked once a check
        checks.append(anyio.current_time())
        return False

    collector = QuietCollector(answering)
    async with anyio.create_task_group() as tg:
        await tg.start(collector.run)
        await anyio.sleep(1.5)
        tg.cancel_scope.cancel()
    gaps = [b - a for a, b in itertools.pairwise(checks)]
    assert len(checks) <= 12, checks  # at 50 ms it would be 30
    assert gaps and max(gaps) >= 0.19, gaps


@pytest.fixture
def yields(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Each real ``sched_yield`` the process makes, counted."""
    made: list[int] = []
    real = os.sched_yield

    def counted() -> None:
        made.append(1)
        real()

    monkeypatch.setattr(os, "sched_yield", counted)
    return made


async def test_answers_in_one_step_share_one_yield(yields: list[int]) -> None:
    """However many answers one step of the loop sends, the CPU is yielded once, at the
    start of the next step; a later step's answers yield again."""
    for _ in range(3):
        between.yield_soon()
    assert yields == []  # not in the step that answered
    await anyio.lowlevel.checkpoint()
    await anyio.lowlevel.checkpoint()
    assert len(yields) == 1
    between.yield_soon()
    await anyio.lowlevel.checkpoint()
    await anyio.lowlevel.checkpoint()
    assert len(yields) == 2


def test_a_yield_left_on_a_closed_loop_does_not_stop_the_next(yields: list[int]) -> None:
    """A loop that closed before its scheduled yield ran (a test's, say) does not keep the
    next loop from yielding."""
    other = asyncio.new_event_loop()
    other.call_soon(between.yield_soon)  # schedules its yield for a step that never comes
    other.call_soon(other.stop)
    other.run_forever()
    other.close()
    assert yields == []

    async def answer() -> None:
        between.yield_soon()
        await anyio.lowlevel.checkpoint()
        await anyio.lowlevel.checkpoint()

    anyio.run(answer)
    assert len(yields) == 1
