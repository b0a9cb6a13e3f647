"""What the daemon does between its answers rather than in the middle of them.

**The garbage collector.** CPython collects whenever its allocation counts
cross their thresholds, wherever the program happens to be. In the daemon
that is in the middle of a burst of submits: measured with ``gc.callbacks``
over 40 bursts of 20, a young collection every four or five submits (0.13 ms
each, up to 0.5), one of the middle generation every couple of bursts (1 ms,
up to 1.8), and a full one now and then (19 ms, collecting nothing). Each
pause delays every answer waiting behind it. So the daemon turns automatic
collection off and runs the same collections itself, by the interpreter's
own thresholds, at moments when no request is being answered (watches
aside): it looks every :data:`CHECK_SECONDS`. A daemon that is never quiet
still collects once its young generation is :data:`OVERDUE` times over its
threshold, so memory stays bounded under any load. Only the daemon's own
process does this (``parallel-orch daemon``); the library and an embedded
server leave their process's collector alone.

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
import os
from collections.abc import Callable

import anyio
from anyio.abc import TaskStatus

CHECK_SECONDS = 0.05  # how often the daemon looks whether a collection is due
OVERDUE = 10  # times the young threshold after which it collects even while answering


def due(counts: tuple[int, int, int], thresholds: tuple[int, ...], *, over: int = 1) -> int | None:
    """The generation the interpreter would collect at these counts (the oldest whose count
    is over its threshold), the young threshold taken ``over`` times; ``None`` when the
    young generation is under it, or collection is off (a threshold of 0)."""
    if not thresholds or thresholds[0] == 0 or counts[0] <= thresholds[0] * over:
        return None
    for generation in (2, 1):
        if generation < len(thresholds) and counts[generation] > thresholds[generation]:
            return generation
    return 0


class QuietCollector:
    """Collects when ``answering()`` says no request is being answered; see the module."""

    def __init__(self, answering: Callable[[], bool]) -> None:
        self._answering = answering
        self.collected = [0, 0, 0]  # collections run, by generation (for tests)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Collect between answers until cancelled; the automatic collector is off meanwhile
        (and on again after, if it was)."""
        thresholds = gc.get_threshold()
        was_on = gc.isenabled()
        gc.disable()
        try:
            task_status.started()
            while True:
                await anyio.sleep(CHECK_SECONDS)
                self.collect_if_due(thresholds)
        finally:
            if was_on:
                gc.enable()

    def collect_if_due(self, thresholds: tuple[int, ...]) -> int | None:
        """Run the collection that is due now, if any; the generation collected."""
        over = OVERDUE if self._answering() else 1
        generation = due(gc.get_count(), thresholds, over=over)
        if generation is not None:
            gc.collect(generation)
            self.collected[generation] += 1
        return generation


_yield_pending = False


def yield_soon() -> None:
    """Answers went out: yield the CPU once, at the start of the loop's next step (see the
    module). Several answers in one step share the one yield."""
    global _yield_pending
    if not _yield_pending and hasattr(os, "sched_yield"):
        _yield_pending = True
        asyncio.get_running_loop().call_soon(_yield)


def _yield() -> None:
    global _yield_pending
    _yield_pending = False
    os.sched_yield()
