"""Concurrent callers served by one call: whatever arrived while the last call ran goes next.

The first caller that finds no call running leads: it runs the call for
everything waiting, then again for whatever arrived meanwhile, until nothing
is left; the others wait for their share. The leader's loop is shielded, so
a leader that is cancelled still finishes the others' work (its own result
is dropped). This is how group commit works, and how concurrent submits
share one ``git rev-parse``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import anyio

I = TypeVar("I")  # noqa: E741 - an item
O = TypeVar("O")  # noqa: E741 - its outcome


@dataclass(eq=False)
class _Waiting(Generic[I, O]):
    item: I
    done: anyio.Event = field(default_factory=anyio.Event)
    result: O | None = None
    error: BaseException | None = None


class Coalescer(Generic[I, O]):
    """Runs ``call`` over the items that concurrent :meth:`submit` calls bring.

    ``call`` gets a batch and returns one outcome per item, in order: a value,
    or an exception that is raised to that item's caller alone.
    """

    def __init__(self, call: Callable[[Sequence[I]], Awaitable[Sequence[O | BaseException]]]):
        self._call = call
        self._waiting: list[_Waiting[I, O]] = []
        self._leading = False
        self.batches = 0  # calls made, for tests and figures

    async def submit(self, item: I) -> O:
        """``item``'s outcome, from the next call that takes it."""
        mine: _Waiting[I, O] = _Waiting(item)
        self._waiting.append(mine)
        if not self._leading:
            self._leading = True
            try:
                with anyio.CancelScope(shield=True):
                    await self._lead()
            finally:
                self._leading = False
        await mine.done.wait()
        if mine.error is not None:
            raise mine.error
        return mine.result  # type: ignore[return-value]  # set by the call that took it

    async def _lead(self) -> None:
        batch: list[_Waiting[I, O]] = []
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, []
                self.batches += 1
                try:
                    outcomes = await self._call([w.item for w in batch])
                except Exception as exc:  # the whole call failed: every caller gets why
                    outcomes = [exc] * len(batch)
                if len(outcomes) != len(batch):
                    outcomes = [RuntimeError("a batch call answered for the wrong count")] * len(
                        batch
                    )
                for waiting, outcome in zip(batch, outcomes, strict=True):
                    if isinstance(outcome, BaseException):
                        waiting.error = outcome
                    else:
                        waiting.result = outcome
                    waiting.done.set()
        except BaseException as exc:  # never leave a caller waiting for ever
            for waiting in [*batch, *self._waiting]:
                if not waiting.done.is_set():
                    waiting.error = RuntimeError(f"the batch was abandoned: {exc!r}")
                    waiting.done.set()
            self._waiting = []
            raise
