"""Concurrent callers served by one call: outcomes are theirs, and nobody waits for ever."""

from __future__ import annotations

from collections.abc import Sequence

import anyio
import pytest

from parallel_orch.coalesce import Coalescer


class Boom(BaseException):
    """Not an Exception: what a cancelled or interrupted call can raise."""


async def test_callers_that_arrive_during_a_call_share_the_next() -> None:
    """Three callers, two calls; each gets its own outcome, one item's error its own."""
    started = anyio.Event()

    async def call(items: Sequence[int]) -> list[int | BaseException]:
        started.set()
        await anyio.sleep(0.05)
        return [ValueError(f"bad {i}") if i < 0 else i * 10 for i in items]

    coalescer: Coalescer[int, int] = Coalescer(call)
    results: dict[int, object] = {}

    async def submit(item: int) -> None:
        try:
            results[item] = await coalescer.submit(item)
        except ValueError as exc:
            results[item] = str(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(submit, 1)
        await started.wait()
        tg.start_soon(submit, 2)
        tg.start_soon(submit, -3)
    assert results == {1: 10, 2: 20, -3: "bad -3"}
    assert coalescer.batches == 2


async def test_a_call_that_raises_a_base_exception_leaves_nobody_waiting() -> None:
    """The batch in flight and those queued behind it all get an error; none hangs."""
    started = anyio.Event()

    async def call(items: Sequence[str]) -> list[str]:
        started.set()
        await anyio.sleep(0.05)
        raise Boom()

    coalescer: Coalescer[str, str] = Coalescer(call)
    outcomes: dict[str, str] = {}

    async def submit(item: str) -> None:
        try:
            await coalescer.submit(item)
        except Boom:
            outcomes[item] = "boom"
        except RuntimeError as exc:
            outcomes[item] = str(exc)

    with anyio.fail_after(2):
        async with anyio.create_task_group() as tg:
            tg.start_soon(submit, "leader")
            await started.wait()
            tg.start_soon(submit, "follower")
    assert outcomes["leader"] == "boom"
    assert "abandoned" in outcomes["follower"]


@pytest.mark.parametrize("count", [0, 2])
async def test_a_call_answering_for_the_wrong_count_fails_its_callers(count: int) -> None:
    """A batch call that returns too few or too many outcomes is an error, not a hang."""

    async def call(items: Sequence[int]) -> list[int]:
        return [0] * count

    coalescer: Coalescer[int, int] = Coalescer(call)
    with anyio.fail_after(2), pytest.raises(RuntimeError, match="wrong count"):
        await coalescer.submit(1)
