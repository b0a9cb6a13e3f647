"""What the daemon does between its answers rather than in the middle of them.

**The garbage collector.** CPython collects whenever its allocation counts
cross their thresholds, wherever the program happens to be. In the daemon
that is in the middle of a burst of submits: measured with ``gc.callbacks``
over 40 bursts of 20, a young collection every four or five submits (0.13 ms
each, up to 0.5), one of the middle generation every two or three bursts
(1 ms, up to 1.8), and a full one now and then (19 ms, collecting nothing).
Each pause delays every answer waiting behind it. So the daemon process
keeps automatic collection off and, every :data:`CHECK_SECONDS` while no
request other than a watch is being answered, lets the interpreter run
whatever collection its own rules call for (its thresholds, and its own
judgement of when a full collection is worth it): collection on for one
allocation. While requests are being answered it collects only once the
young generation is :data:`OVERDUE` times over its threshold, and then
never a full collection, so memory stays bounded under any load. With
nothing allocated the checks back off to one every :data:`IDLE_CHECK_SECONDS`.
Only the daemon's own process does this (``parallel-orch daemon``); the
library and an embedded server leave their process's collector alone, and
so does the daemon when automatic collection was off to begin with.

**The CPU, to the clients just answered.** Writing to a Unix socket wakes
the client reading it as a "sync" wake-up: Linux puts the client on the
writer's CPU, expecting the writer to sleep soon, and the client waits there
for the writer's time slice. After answering a burst the daemon still has
its tail to run (each submit's log line and reply bookkeeping, about 1 ms
for 20), and the clients waited for it while the other core sat idle. So
once answers went out early in a step of the loop, the daemon yields the CPU
(:func:`yield_soon`): one ``sched_yield`` for the whole step, at the start
of the next.

Figures for both are in bench/README.md ("Between answers").
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
from collections.abc import Callable

import anyio
from anyio.abc import TaskStatus

log = logging.getLogger(__name__)

CHECK_SECONDS = 0.05  # how often the daemon looks whether a collection is due
IDLE_CHECK_SECONDS = 1.0  # how often, once nothing has been allocated for a while
OVERDUE = 10  # times the young threshold after which it collects even while answering
IDLE_ALLOCATIONS = 16  # what an idle loop allocates between checks, and then some


def due(counts: tuple[int, int, int], thresholds: tuple[int, ...], *, over: int = 1) -> int | None:
    """The generation the interpreter's thresholds call for at these counts (the oldest whose
    count is over its threshold), the young threshold taken ``over`` times; ``None`` when the
    young generation is under it, or collection is off (a threshold of 0). (The interpreter
    adds a rule of its own for full collections: see :func:`collect_as_the_interpreter_would`.)"""
    if not thresholds or thresholds[0] == 0 or counts[0] <= thresholds[0] * over:
        return None
    for generation in (2, 1):
        if generation < len(thresholds) and counts[generation] > thresholds[generation]:
            return generation
    return 0


class _Probe:
    """Allocated fresh each time (no free list, unlike a list's): the interpreter checks its
    counts at each such allocation."""


def collect_as_the_interpreter_would() -> bool:
    """Whatever collection the interpreter's own rules call for now, if any: automatic
    collection on for one allocation, which is when it decides. Whether one ran."""
    young = gc.get_count()[0]
    gc.enable()
    try:
        probe = _Probe()
    finally:
        gc.disable()
    del probe
    return gc.get_count()[0] < young


class QuietCollector:
    """Collects when ``answering()`` says no request is being answered; see the module."""

    def __init__(self, answering: Callable[[], bool]) -> None:
        self._answering = answering
        self.collections = 0  # run by it (for tests)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Collect between answers until cancelled, automatic collection off meanwhile and on
        again after; nothing at all when it was off to begin with."""
        if not gc.isenabled():
            task_status.started()
            return
        gc.disable()
        log.info("garbage collected between answers (automatic collection off)")
        try:
            task_status.started()
            pause, last = CHECK_SECONDS, gc.get_count()[0]
            while True:
                await anyio.sleep(pause)
                busy = gc.get_count()[0] > last + IDLE_ALLOCATIONS  # since the last check
                self.collect_if_due()
                last = gc.get_count()[0]
                pause = CHECK_SECONDS if busy else min(pause * 2, IDLE_CHECK_SECONDS)
        finally:
            gc.enable()

    def collect_if_due(self) -> None:
        """Between answers, what the interpreter would collect; while answering, only a
        collection overdue (and then not a full one)."""
        if not self._answering():
            self.collections += collect_as_the_interpreter_would()
            return
        generation = due(gc.get_count(), gc.get_threshold(), over=OVERDUE)
        if generation is not None:
            gc.collect(min(generation, 1))
            self.collections += 1


_pending: asyncio.AbstractEventLoop | None = None  # the loop a yield is scheduled on


def yield_soon() -> None:
    """Answers went out: yield the CPU once, at the start of the loop's next step (see the
    module). Several answers in one step share the one yield."""
    global _pending
    loop = asyncio.get_running_loop()
    if _pending is not loop and hasattr(os, "sched_yield"):  # not a loop closed meanwhile's
        _pending = loop
        loop.call_soon(_yield)


def _yield() -> None:
    global _pending
    _pending = None
    os.sched_yield()
