"""TestQueue: bound, order of service, fairness, delayed retries (DESIGN §5 Queue)."""

from __future__ import annotations

import anyio
import pytest

from parallel_orch import QueueFullError, TestRequest
from parallel_orch.exceptions import OrchestratorClosedError
from parallel_orch.queue import QueueItem, TestQueue


def item(
    execution_id: int,
    *,
    session: str = "s",
    priority: int = 0,
    expected: float = 0.0,
    attempt: int = 1,
) -> QueueItem:
    return QueueItem(
        execution_id=execution_id,
        session_id=session,
        request=TestRequest(id=f"t{execution_id}", command="true"),
        sha="0" * 40,
        priority=priority,
        expected_seconds=expected,
        seq=execution_id,
        attempt=attempt,
    )


async def drain(queue: TestQueue) -> list[int]:
    """Every ready item's execution id, in the order workers would get them."""
    out = []
    with anyio.fail_after(5):
        while any(True for _ in queue.waiting()):
            out.append((await queue.get()).execution_id)
    return out


async def test_put_nowait_on_a_full_queue_raises_a_clear_error() -> None:
    """put_nowait beyond max_size raises QueueFullError saying how full and what to do."""
    queue = TestQueue(max_size=2)
    queue.put_nowait(item(1))
    queue.put_nowait(item(2))
    with pytest.raises(QueueFullError) as info:
        queue.put_nowait(item(3))
    message = str(info.value)
    assert "full" in message
    assert "2 of 2" in message
    assert "submit_test()" in message
    assert "max_queue_size" in message
    assert len(queue) == 2


async def test_put_waits_while_full_and_goes_in_when_a_get_makes_room() -> None:
    """put() blocks on a full queue and completes as soon as a worker takes an item."""
    queue = TestQueue(max_size=1)
    queue.put_nowait(item(1))
    put_done = anyio.Event()

    async def put_third() -> None:
        await queue.put(item(2))
        put_done.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(put_third)
        await anyio.wait_all_tasks_blocked()
        assert not put_done.is_set()
        assert [i.execution_id for i in queue.waiting()] == [1]
        assert (await queue.get()).execution_id == 1
        with anyio.fail_after(5):
            await put_done.wait()
    assert [i.execution_id for i in queue.waiting()] == [2]


async def test_order_is_priority_then_longest_expected_then_submission() -> None:
    """Higher priority first; at equal priority the longest expected first; then FIFO."""
    queue = TestQueue(max_size=100)
    for it in [
        item(1, expected=1.0),
        item(2, expected=5.0),
        item(3, priority=1, expected=0.1),
        item(4, expected=5.0),
        item(5, priority=-1, expected=100.0),
        item(6, expected=1.0),
        item(7, priority=1, expected=2.0),
    ]:
        queue.put_nowait(it)
    assert await drain(queue) == [7, 3, 2, 4, 1, 6, 5]


async def test_sessions_are_served_round_robin() -> None:
    """Two sessions at the same priority alternate instead of one starving the other."""
    queue = TestQueue(max_size=100)
    for n in range(1, 5):
        queue.put_nowait(item(n, session="a", expected=10.0))
    for n in range(11, 13):
        queue.put_nowait(item(n, session="b", expected=0.1))
    assert await drain(queue) == [1, 11, 2, 12, 3, 4]


async def test_priority_beats_round_robin() -> None:
    """A higher-priority item of any session goes before the round robin's turn."""
    queue = TestQueue(max_size=100)
    queue.put_nowait(item(1, session="a"))
    queue.put_nowait(item(2, session="a"))
    queue.put_nowait(item(3, session="b", priority=5))
    queue.put_nowait(item(4, session="b", priority=5))
    assert await drain(queue) == [3, 4, 1, 2]


async def test_delayed_retry_waits_for_its_backoff() -> None:
    """A retry re-enters only after its delay; ready items are served meanwhile."""
    queue = TestQueue(max_size=10)
    queue.put_nowait(item(1))
    queue.retry_later(item(2, attempt=2, priority=100), delay_seconds=0.3)
    started = anyio.current_time()
    with anyio.fail_after(5):
        first = await queue.get()
        second = await queue.get()
    assert (first.execution_id, second.execution_id) == (1, 2)
    assert second.attempt == 2
    assert anyio.current_time() - started >= 0.3


async def test_zero_delay_retry_is_ready_at_once() -> None:
    """A retry without backoff is ready immediately, ordered with the rest by priority."""
    queue = TestQueue(max_size=10)
    queue.put_nowait(item(1))
    queue.retry_later(item(2, attempt=2, priority=1), delay_seconds=0)
    assert await drain(queue) == [2, 1]


async def test_retries_do_not_count_against_the_bound() -> None:
    """A worker re-queueing a retry never blocks or fails on a full queue."""
    queue = TestQueue(max_size=1)
    queue.put_nowait(item(1))
    queue.retry_later(item(2, attempt=2), delay_seconds=0)
    queue.retry_later(item(3, attempt=3), delay_seconds=60)
    assert len(queue) == 3
    with pytest.raises(QueueFullError):
        queue.put_nowait(item(4))
    assert (await queue.get()).execution_id == 1
    queue.put_nowait(item(5))  # the fresh item's slot is free again


async def test_closed_queue_drains_then_refuses() -> None:
    """After close() getters still receive what is waiting, then OrchestratorClosedError."""
    queue = TestQueue(max_size=10)
    queue.put_nowait(item(1))
    queue.close()
    with pytest.raises(OrchestratorClosedError):
        queue.put_nowait(item(2))
    assert (await queue.get()).execution_id == 1
    with pytest.raises(OrchestratorClosedError):
        await queue.get()


async def test_close_wakes_a_waiting_getter() -> None:
    """A worker blocked on an empty queue gets OrchestratorClosedError when it closes."""
    queue = TestQueue(max_size=10)
    outcome: list[BaseException] = []

    async def getter() -> None:
        try:
            await queue.get()
        except OrchestratorClosedError as exc:
            outcome.append(exc)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(getter)
            await anyio.wait_all_tasks_blocked()
            queue.close()
    assert len(outcome) == 1


async def test_remove_session_drops_its_items_and_frees_room() -> None:
    """Cancelling a session removes its waiting and delayed items; others stay queued."""
    queue = TestQueue(max_size=3)
    queue.put_nowait(item(1, session="a"))
    queue.put_nowait(item(2, session="a"))
    queue.put_nowait(item(3, session="b"))
    queue.retry_later(item(4, session="a", attempt=2), delay_seconds=60)
    removed = queue.remove_session("a")
    assert sorted(i.execution_id for i in removed) == [1, 2, 4]
    assert [i.execution_id for i in queue.waiting()] == [3]
    queue.put_nowait(item(5, session="a"))
    queue.put_nowait(item(6, session="a"))
    with pytest.raises(QueueFullError):
        queue.put_nowait(item(7, session="a"))
