"""Submitting through the orchestrator: back-pressure, max_failures, history-based order."""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from pathlib import Path

import anyio
import pytest
from anyio import wait_all_tasks_blocked

from parallel_orch import (
    EventType,
    ExecutionStatus,
    ParallelTestConfig,
    QueueFullError,
    SessionStatus,
    TestRequest,
)
from parallel_orch.report import TestResult
from parallel_orch.store import open_store
from tests.helpers import (
    WAIT_SECONDS,
    MakeConfig,
    make_fifo,
    orchestrator,
    process_alive,
    read_fifo,
    recording,
)


def q(path: Path) -> str:
    return shlex.quote(str(path))


def start_order(tests: Sequence[TestResult]) -> list[str]:
    """Test ids in the order their first attempts started."""
    return [t.test_id for t in sorted(tests, key=lambda t: t.attempts[0].started_at)]


def wait_for_file(path: Path) -> str:
    """A command that blocks until ``path`` exists (the test's release signal)."""
    return f"while [ ! -e {q(path)} ]; do sleep 0.02; done"


async def test_submit_test_waits_for_room_and_submit_nowait_raises(
    make_config: MakeConfig, outside: Path
) -> None:
    """With a full queue submit_test() waits until a worker frees a slot; submit_nowait() raises."""
    config = make_config(num_workers=1, max_queue_size=1)
    release = outside / "release"
    async with orchestrator(config) as orch, recording(orch) as recorder:
        session_id = await orch.submit_test(
            TestRequest(id="blocker", command=wait_for_file(release))
        )
        await recorder.wait_for(
            lambda e: e.type is EventType.ATTEMPT_STARTED and e.test_id == "blocker"
        )
        assert await orch.submit_test(TestRequest(id="queued", command="true")) == session_id

        with pytest.raises(QueueFullError, match="queue is full"):
            await orch.submit_nowait(TestRequest(id="refused", command="true"))

        returned = anyio.Event()

        async def submit_waiting() -> None:
            # It outranks "queued": had it entered the full queue, it would run first.
            await orch.submit_test(TestRequest(id="waited", command="true", priority=10))
            returned.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(submit_waiting)
            await wait_all_tasks_blocked()
            assert not returned.is_set(), "submit_test returned while the queue was full"
            release.touch()
            with anyio.fail_after(WAIT_SECONDS):
                await returned.wait()
        report = await orch.wait_for_completion()

    assert report is not None
    assert report.session_id == session_id
    assert {t.test_id: t.status for t in report.completed_tests} == {
        "blocker": "passed",
        "queued": "passed",
        "waited": "passed",
    }
    assert start_order(report.completed_tests) == ["blocker", "queued", "waited"]
    assert report.status == SessionStatus.COMPLETE


async def test_submit_nowait_records_nothing_when_refused(
    make_config: MakeConfig, outside: Path
) -> None:
    """A refused submit_nowait() leaves no trace in the store: nothing half-submitted."""
    config = make_config(num_workers=1, max_queue_size=1)
    release = outside / "release"
    async with orchestrator(config) as orch, recording(orch) as recorder:
        session_id = await orch.submit_nowait(TestRequest(id="a", command=wait_for_file(release)))
        await recorder.wait_for(lambda e: e.type is EventType.ATTEMPT_STARTED)
        await orch.submit_nowait(TestRequest(id="b", command="true"))
        with pytest.raises(QueueFullError):
            await orch.submit_nowait(TestRequest(id="c", command="true"))
        executions = await orch.store.executions(session_id)
        assert [e.test_id for e in executions] == ["a", "b"]
        release.touch()
        report = await orch.wait_for_completion()
    assert report is not None
    assert report.total_tests == 2


async def test_max_failures_cancels_queued_and_running_attempts(
    make_config: MakeConfig, outside: Path
) -> None:
    """max_failures stops the session: running attempts are killed, queued ones cancelled."""
    config = make_config(num_workers=2, max_failures=1)
    pid_file = outside / "long.pid"
    requests = [
        TestRequest(id="long", command=f"echo $$ > {q(pid_file)}; exec sleep 60", priority=10),
        TestRequest(id="fails", command=f"{wait_for_file(pid_file)}; exit 1", priority=5),
        *(TestRequest(id=f"queued{n}", command="true") for n in range(3)),
    ]
    with anyio.fail_after(20):
        async with orchestrator(config) as orch:
            report = await orch.run_tests(requests)

    results = {t.test_id: t for t in report.completed_tests}
    assert results["fails"].status == ExecutionStatus.FAILED
    assert results["long"].status == ExecutionStatus.CANCELLED
    assert [a.status for a in results["long"].attempts] == ["cancelled"]
    for n in range(3):
        assert results[f"queued{n}"].status == ExecutionStatus.CANCELLED
        assert results[f"queued{n}"].attempts == ()
    assert report.status == SessionStatus.CANCELLED
    assert (report.tests_failed, report.tests_cancelled) == (1, 4)
    assert not process_alive(int(pid_file.read_text()))


async def test_max_failures_counts_only_final_failures(
    make_config: MakeConfig, outside: Path
) -> None:
    """A failed attempt that is retried and passes does not count towards max_failures."""
    config = make_config(num_workers=1, max_failures=1)
    counter = q(outside / "n")
    flaky = f"n=$(cat {counter} 2>/dev/null || echo 0); echo $((n+1)) > {counter}; [ $n -ge 1 ]"
    requests = [
        TestRequest(id="flaky", command=flaky, retries=1, priority=1),
        TestRequest(id="after", command="true"),
    ]
    async with orchestrator(config) as orch:
        report = await orch.run_tests(requests)
    assert report.status == SessionStatus.COMPLETE
    assert report.tests_flaky == 1


async def test_leaving_the_block_by_an_exception_cancels_running_work(
    config: ParallelTestConfig, outside: Path
) -> None:
    """An exception inside `async with` kills running attempts and records the session cancelled."""
    started = make_fifo(outside / "started")
    session_id = ""
    with pytest.raises(RuntimeError, match="boom"):
        async with orchestrator(config) as orch:
            session_id = await orch.create_session(
                [TestRequest(id="long", command=f"echo $$ > {q(started)}; exec sleep 60")]
            )
            pid = int(await read_fifo(started))
            raise RuntimeError("boom")
    assert not process_alive(pid)
    async with open_store(config.resolved_state_dir) as store:
        session = await store.get_session(session_id)
        (execution,) = await store.executions(session_id)
        (attempt,) = await store.attempts(session_id)
    assert session.status == SessionStatus.CANCELLED
    assert execution.status == attempt.status == ExecutionStatus.CANCELLED


async def test_second_run_orders_longest_first_from_history(
    make_config: MakeConfig,
) -> None:
    """With history, the longest test starts first; an unknown test is placed at the median."""
    config = make_config(num_workers=1)
    requests = [
        TestRequest(id="short", command="true"),
        TestRequest(id="mid", command="sleep 0.25"),
        TestRequest(id="long", command="sleep 0.5"),
    ]

    async with orchestrator(config) as orch:
        first = await orch.run_tests(requests)
        second = await orch.run_tests([*requests, TestRequest(id="new", command="true")])
    assert start_order(first.completed_tests) == ["short", "mid", "long"]  # no history: FIFO
    assert start_order(second.completed_tests) == ["long", "mid", "new", "short"]


async def test_cancel_session_stops_its_running_and_queued_work(
    make_config: MakeConfig, outside: Path
) -> None:
    """cancel_session() kills the running attempt, drops queued ones and records `cancelled`."""
    started = make_fifo(outside / "started")
    requests = [
        TestRequest(id="long", command=f"echo $$ > {q(started)}; exec sleep 60", priority=1),
        TestRequest(id="queued", command="true"),
    ]
    async with orchestrator(make_config(num_workers=1)) as orch:
        session_id = await orch.create_session(requests)
        pid = int(await read_fifo(started))
        assert await orch.cancel_session(session_id) is True
        report = await orch.wait_for_session(session_id)
        assert await orch.cancel_session(session_id) is False  # already over
        after = await orch.run_tests([TestRequest(id="after", command="true")])
    assert not process_alive(pid)
    assert report.status == SessionStatus.CANCELLED
    assert {t.test_id: t.status for t in report.completed_tests} == {
        "long": "cancelled",
        "queued": "cancelled",
    }
    assert after.status == SessionStatus.COMPLETE  # the orchestrator carries on


async def test_sessions_run_side_by_side(make_config: MakeConfig) -> None:
    """Two sessions submitted together both finish, each with its own report."""
    config = make_config(num_workers=2)
    async with orchestrator(config) as orch:
        one = await orch.create_session([TestRequest(id=f"a{n}", command="true") for n in range(5)])
        two = await orch.create_session(
            [TestRequest(id=f"b{n}", command="false") for n in range(3)]
        )
        first = await orch.wait_for_session(one)
        second = await orch.wait_for_session(two)
    assert (first.status, first.total_tests) == (SessionStatus.COMPLETE, 5)
    assert (second.status, second.total_tests) == (SessionStatus.FAILED, 3)


async def test_concurrent_submits_share_one_default_session(config: ParallelTestConfig) -> None:
    """submit_test() from several tasks at once feeds one session, which then completes."""
    session_ids: list[str] = []

    async def submit(n: int) -> None:
        session_ids.append(await orch.submit_test(TestRequest(id=f"t{n}", command="true")))

    async with orchestrator(config) as orch:
        async with anyio.create_task_group() as tg:
            for n in range(5):
                tg.start_soon(submit, n)
        with anyio.fail_after(30):
            report = await orch.wait_for_completion()
    assert len(set(session_ids)) == 1
    assert report is not None
    assert report.session_id == session_ids[0]
    assert (report.total_tests, report.status) == (5, SessionStatus.COMPLETE)
