"""Concurrent callers served by one call: whatever arrived while the last call ran goes next.

The first caller that finds no call running leads: it runs the call for
everything waiting (its own item among them), then hands the lead to the
first caller that arrived meanwhile, who runs the next call for everything
waiting by then, and so on; the others wait for their share. A caller never
serves more than its own batch, so under steady load nobody waits longer than
the call in flight when it arrived plus its own. A leader's call is
shielded: a leader that is cancelled still finishes its batch mates' work and
passes the lead on (its own result is dropped). This is how group commit
works, and how concurrent submits share one lookup of their refs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import anyio

MAX_GATHER_TURNS = 12  # a leader gathering while callers keep coming goes after this many

I = TypeVar("I")  # noqa: E741 - an item
O = TypeVar("O")  # noqa: E741 - its outcome


@dataclass(eq=False)
class _Waiting(Generic[I, O]):
    item: I
    woken: anyio.Event = field(default_factory=anyio.Event)  # done, or handed the lead
    leads: bool = False
    done: bool = False
    result: O | None = None
    error: BaseException | None = None


class Coalescer(Generic[I, O]):
    """Runs ``call`` over the items that concurrent :meth:`submit` calls bring.

    ``call`` gets a batch and returns one outcome per item, in order: a value,
    or an exception that is raised to that item's caller alone. A ``call`` that
    runs without waiting (on the event loop) gathers nothing while it runs:
    with ``gather_turns`` the leader takes that many turns of the loop before it
    takes its batch (one lets the callers that are ready join it). With
    ``quiet_turns``, the leader then takes turns of the loop for as long as
    callers keep joining, until that many pass without one (at most
    :data:`MAX_GATHER_TURNS`): requests read from many sockets in one wake-up
    reach here a few turns apart (the socket's reader, then the request's task).
    """

    def __init__(
        self,
        call: Callable[[Sequence[I]], Awaitable[Sequence[O | BaseException]]],
        *,
        gather_turns: int = 0,
        quiet_turns: int = 0,
    ):
        self._call = call
        self._gather_turns = gather_turns
        self._quiet_turns = quiet_turns
        self._waiting: list[_Waiting[I, O]] = []
        self._leading = False  # a call runs, or the lead is on its way to a waiter
        self.batches = 0  # calls made, for tests and figures

    async def submit(self, item: I) -> O:
        """``item``'s outcome, from the next call that takes it."""
        mine: _Waiting[I, O] = _Waiting(item)
        self._waiting.append(mine)
        if self._leading:
            try:
                await mine.woken.wait()
            except BaseException:  # cancelled while waiting
                if mine.leads:  # handed the lead as it was cancelled: the others still need it
                    with anyio.CancelScope(shield=True):
                        await self._lead()
                elif mine in self._waiting:  # not taken yet: its caller is gone, drop it
                    self._waiting.remove(mine)
                raise
        else:
            self._leading = mine.leads = True
        if mine.leads:
            with anyio.CancelScope(shield=True):
                await self._lead()
        if mine.error is not None:
            raise mine.error
        return mine.result  # type: ignore[return-value]  # set by the call that took it

    async def _lead(self) -> None:
        """One call for everything waiting, then the lead to whoever arrived during it."""
        batch: list[_Waiting[I, O]] = []
        try:  # shielded, as the whole lead is; but asyncio's own cancel goes through a shield
            await self._gathering()
            batch, self._waiting = self._waiting, []
            self.batches += 1
            try:
                outcomes = await self._call([w.item for w in batch])
            except Exception as exc:  # the whole call failed: every caller gets why
                outcomes = [exc] * len(batch)
            if len(outcomes) != len(batch):
                outcomes = [RuntimeError("a batch call answered for the wrong count")] * len(batch)
        except BaseException as exc:  # never leave a caller waiting for ever
            for waiting in [*batch, *self._waiting]:
                if not waiting.done:
                    _settle(waiting, RuntimeError(f"the batch was abandoned: {exc!r}"))
            self._waiting = []
            self._leading = False
            raise
        for waiting, outcome in zip(batch, outcomes, strict=True):
            _settle(waiting, outcome)
        if self._waiting:
            successor = self._waiting[0]
            successor.leads = True
            successor.woken.set()
        else:
            self._leading = False

    async def _gathering(self) -> None:
        """``gather_turns`` turns of the loop, then more while callers keep joining
        (``quiet_turns``)."""
        for _ in range(self._gather_turns):
            await anyio.lowlevel.checkpoint()
        quiet = turns = 0
        while quiet < self._quiet_turns and turns < MAX_GATHER_TURNS:
            joined = len(self._waiting)
            await anyio.lowlevel.checkpoint()
            turns += 1
            quiet = quiet + 1 if len(self._waiting) == joined else 0


def _settle(waiting: _Waiting[I, O], outcome: O | BaseException) -> None:
    if isinstance(outcome, BaseException):
        waiting.error = outcome
    else:
        waiting.result = outcome
    waiting.done = True
    waiting.leads = False
    waiting.woken.set()
