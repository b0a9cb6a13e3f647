"""Intake first: a worker about to start an attempt lets the sessions being admitted finish.

Admitting a session (its refs looked up, its rows committed and synced, its
requests queued) and starting an attempt (a worktree checked out, a process
spawned) take turns of one event loop. When a burst of submits arrives and
the first of them queues a request, a worker that starts it at once holds the
loop with its spawns while the rest of the burst waits for its answer. So a
worker that has taken a request waits until no submit is being admitted (a
session created, or requests added to the default session), for at most
:data:`YIELD_SECONDS`: the burst is answered first, and a steady stream of
submits delays an attempt's start by that much at most, never starves it.
(On a fleet the attempt's own work is not on this loop, but handing it to the
scheduler is; the wait is the same.)

What it changes, measured side by side, is in bench/README.md ("Intake
first"): submits that arrive while sessions run are answered sooner.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import anyio

#: The longest a worker waits for admissions in progress before it starts an attempt
#: anyway: about what a burst's lookup and synced commit take on a slow disk.
YIELD_SECONDS = 0.005


class Intake:
    """How many admissions are in progress, and a wait until there are none."""

    def __init__(self) -> None:
        self.admitting = 0
        self._quiet: anyio.Event | None = None  # made by the first worker to wait

    @contextmanager
    def admitting_one(self) -> Iterator[None]:
        """Count one admission in progress for the block."""
        self.admitting += 1
        try:
            yield
        finally:
            self.admitting -= 1
            if self.admitting == 0 and self._quiet is not None:
                self._quiet.set()
                self._quiet = None

    async def quiet(self) -> None:
        """Until no admission is in progress, or :data:`YIELD_SECONDS`; at once, without a
        turn of the loop, when none is."""
        if self.admitting == 0:
            return
        if self._quiet is None:
            self._quiet = anyio.Event()
        quiet = self._quiet
        with anyio.move_on_after(YIELD_SECONDS):
            await quiet.wait()
