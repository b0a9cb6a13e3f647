"""Concurrent callers served by one call: outcomes are theirs, and nobody waits for ever."""

from __future__ import annotations

import asyncio
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


async def test_under_steady_load_no_caller_waits_for_more_than_two_calls() -> None:
    """A leader answers after its own batch and hands the lead on; it does not serve everyone."""
    calls: list[Sequence[int]] = []

    async def call(items: Sequence[int]) -> list[int]:
        calls.append(items)
        await anyio.sleep(0.02)
        return list(items)

    coalescer: Coalescer[int, int] = Coalescer(call)
    spans: dict[int, int] = {}  # calls begun while each caller waited, its own included

    async def submit(item: int) -> None:
        before = len(calls)
        assert await coalescer.submit(item) == item
        spans[item] = len(calls) - before

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            for item in range(40):  # a new caller every 5 ms, for 10 calls' time
                tg.start_soon(submit, item)
                await anyio.sleep(0.005)
    assert len(spans) == 40
    assert max(spans.values()) <= 2
    assert 1 < coalescer.batches < 40  # still shared: each call took what had arrived


async def test_a_cancelled_waiter_neither_blocks_nor_loses_the_others() -> None:
    """A caller cancelled while waiting is dropped; the lead still reaches everyone else."""
    started = anyio.Event()
    taken: list[str] = []

    async def call(items: Sequence[str]) -> list[str]:
        taken.extend(items)
        started.set()
        await anyio.sleep(0.05)
        return [item.upper() for item in items]

    coalescer: Coalescer[str, str] = Coalescer(call)
    results: dict[str, str] = {}

    async def submit(item: str) -> None:
        results[item] = await coalescer.submit(item)

    with anyio.fail_after(2):
        async with anyio.create_task_group() as tg:
            tg.start_soon(submit, "a")
            await started.wait()
            with anyio.CancelScope() as gone:
                gone.cancel()
                await coalescer.submit("b")  # cancelled while it waits behind "a"
            tg.start_soon(submit, "c")
    assert results == {"a": "A", "c": "C"}
    assert "b" not in taken


async def test_a_call_that_never_waits_gathers_the_ready_callers_with_one_turn() -> None:
    """A call that runs without waiting (on the loop) serves the callers ready at the same
    time in one batch when given a gathering turn; without it, each is served alone."""

    async def call(items: Sequence[int]) -> list[int]:
        return [i * 10 for i in items]  # no await: nobody can join while it runs

    for gather_turns, batches in ((1, 1), (0, 5)):
        coalescer: Coalescer[int, int] = Coalescer(call, gather_turns=gather_turns)
        results: dict[int, int] = {}

        async def submit(
            item: int, to: Coalescer[int, int] = coalescer, into: dict[int, int] = results
        ) -> None:
            into[item] = await to.submit(item)

        async with anyio.create_task_group() as tg:
            for item in range(5):
                tg.start_soon(submit, item)
        assert results == {i: i * 10 for i in range(5)}
        assert coalescer.batches == batches


async def _arriving_turns_apart(coalescer: Coalescer[int, int], count: int) -> None:
    """``count`` callers, each reaching the coalescer one turn of the loop after the last (as
    requests read in one wake-up reach a lookup: the socket's reader, then the request's task)."""

    async def submit(item: int) -> None:
        for _ in range(item):
            await anyio.lowlevel.checkpoint()
        await coalescer.submit(item)

    async with anyio.create_task_group() as tg:
        for item in range(count):
            tg.start_soon(submit, item)


@pytest.mark.parametrize(("quiet_turns", "batches"), [(0, 2), (2, 1)])
async def test_a_leader_with_quiet_turns_waits_while_callers_keep_coming(
    quiet_turns: int, batches: int
) -> None:
    """Callers arriving a turn apart all share the first call when the leader waits for quiet
    turns; without, the first goes alone and the rest share the next."""
    sizes: list[int] = []

    async def call(items: Sequence[int]) -> list[int]:
        sizes.append(len(items))
        await anyio.sleep(0.01)
        return list(items)

    coalescer: Coalescer[int, int] = Coalescer(call, quiet_turns=quiet_turns)
    await _arriving_turns_apart(coalescer, 6)
    assert coalescer.batches == batches
    assert sum(sizes) == 6


async def test_a_leader_gathers_for_a_bounded_number_of_turns() -> None:
    """Callers that never stop coming do not hold the first one back for ever: it goes after
    MAX_GATHER_TURNS turns with those that came by then."""
    from parallel_orch.coalesce import MAX_GATHER_TURNS

    sizes: list[int] = []

    async def call(items: Sequence[int]) -> list[int]:
        sizes.append(len(items))
        return list(items)

    coalescer: Coalescer[int, int] = Coalescer(call, quiet_turns=2)
    await _arriving_turns_apart(coalescer, 3 * MAX_GATHER_TURNS)
    assert sizes[0] <= MAX_GATHER_TURNS + 1
    assert sum(sizes) == 3 * MAX_GATHER_TURNS


async def test_a_leader_cancelled_by_asyncio_while_gathering_leaves_nobody_waiting() -> None:
    """asyncio's own cancel (``asyncio.wait_for`` around a submit in a plain asyncio program)
    goes through anyio's shield: a leader cancelled so while gathering fails its batch mates
    at once rather than leaving them, and every later caller, waiting for ever."""

    async def call(items: Sequence[int]) -> list[int]:
        return [i * 10 for i in items]

    coalescer: Coalescer[int, int] = Coalescer(call, quiet_turns=3)
    first = asyncio.ensure_future(coalescer.submit(1))
    await asyncio.sleep(0)  # it leads, and is gathering
    second = asyncio.ensure_future(coalescer.submit(2))
    await asyncio.sleep(0)
    first.cancel()
    with anyio.fail_after(2), pytest.raises(RuntimeError, match="abandoned"):
        await second
    with anyio.fail_after(2):
        assert await coalescer.submit(3) == 30
