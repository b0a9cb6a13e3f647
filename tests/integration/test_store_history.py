"""Reads across sessions: what they return, and work that does not grow with the history."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

from parallel_orch import ExecutionStatus, SessionStatus, TestRequest
from parallel_orch.junit import Case, JUnitResult
from parallel_orch.models import JUnitCounts
from parallel_orch.store import AttemptEnd, NewExecution, Store, open_store, queries, utcnow
from parallel_orch.store.writer import sql_time

LONG = 2_000  # executions of one test, sessions of one plan set: a CI daemon's weeks


async def ran(store: Store, session_id: str, test_id: str, seconds: float | None) -> int:
    """A session of one execution of ``test_id`` that passed in ``seconds`` (None: still
    pending); the execution's id."""
    base, _, shard = test_id.partition("[")
    request = TestRequest(id=base, command="true")
    if shard:  # t[i/2]: as a sharded test's request is split
        request = request.model_copy(update={"shards": 2}).split(1)[int(shard[0]) - 1]
    (execution_id,) = await store.create_session(
        session_id,
        num_workers=1,
        repo="/r",
        plan_paths=(),
        plan_key=f"plan-of-{test_id}",
        owner="me",
        executions=[NewExecution(request=request, sha="a" * 40)],
    )
    if seconds is not None:
        await store.finish_execution(execution_id, ExecutionStatus.PASSED, duration_seconds=seconds)
        await store.finish_session(session_id, SessionStatus.COMPLETE, completed_at=utcnow())
    return execution_id


async def with_cases(store: Store, session_id: str, test_id: str, times: dict[str, float]) -> None:
    """A session where ``test_id`` ran once and its JUnit file gave ``times`` per case."""
    execution_id = await ran(store, session_id, test_id, 1.0)
    attempt_id = await store.start_attempt(
        execution_id, session_id, number=1, worker=0, worktree="/w", log_path="/l"
    )
    cases = tuple(Case("suite", name, "passed", time=t) for name, t in times.items())
    junit = JUnitResult(
        counts=JUnitCounts(passed=len(cases), failed=0, errors=0, skipped=0), cases=cases
    )
    end = AttemptEnd(attempt_id, execution_id, ExecutionStatus.PASSED, 0, 1.0, junit=junit)
    await store.end_attempt(end, None)


async def test_a_tests_expected_duration_is_the_mean_of_its_newest_five(tmp_path: Path) -> None:
    """Seven runs of t (100, 100, then 1..5 s) and one still pending: t is expected to take
    3 s; its repeat variant, another test and a test that never ran do not count."""
    async with open_store(tmp_path / "state") as store:
        for n, seconds in enumerate([100.0, 100.0, 1.0, 2.0, 3.0, 4.0, 5.0, None]):
            await ran(store, f"s{n}", "t", seconds)
        await ran(store, "repeat", "t#2", 50.0)
        await ran(store, "other", "t2", 60.0)
        assert await store.history(["t", "never", "t"]) == {"t": 3.0}
        assert await store.history(["t#2", "t2"]) == {"t#2": 50.0, "t2": 60.0}


async def test_a_sharded_tests_case_times_are_the_newest_of_it_and_its_shards(
    tmp_path: Path,
) -> None:
    """Case times of t, t[1/2] and t[2/2] count, the newest run's winning, even behind
    twenty newer runs that recorded none; the ids beside the shards' range (t's variants,
    t2, t^x, t_x, tz) do not."""
    async with open_store(tmp_path / "state") as store:
        await with_cases(store, "old", "t[1/2]", {"a": 9.0, "b": 2.0})
        await with_cases(store, "new1", "t[1/2]", {"a": 1.0})
        await with_cases(store, "new2", "t[2/2]", {"c": 3.0})
        for n in range(20):  # errored before writing JUnit, say
            await ran(store, f"caseless{n}", "t[2/2]", 1.0)
        await with_cases(store, "whole", "t", {"d": 4.0})
        for n, other in enumerate(["t@main", "t#2", "t@main[1/2]", "t2", "t^x", "t_x", "tz"]):
            await with_cases(store, f"others{n}", other, {"x": 5.0})
        durations = await store.case_durations("t")
    assert durations == {"suite::a": 1.0, "suite::b": 2.0, "suite::c": 3.0, "suite::d": 4.0}


@contextmanager
def counting_steps(db: sqlite3.Connection) -> Iterator[Callable[[], int]]:
    """SQLite's virtual-machine steps spent on ``db`` in the block (in hundreds): the
    work a read does, measured without a clock."""
    steps = [0]

    def step() -> int:
        steps[0] += 1
        return 0  # go on

    db.set_progress_handler(step, 100)
    try:
        yield lambda: steps[0]
    finally:
        db.set_progress_handler(None, 0)


def fill(path: Path, test_id: str, count: int) -> None:
    """``count`` finished sessions of one plan set, an hour ago, each with one passed run of
    ``test_id`` and one case, written straight into the store's tables."""
    hour_ago = utcnow() - timedelta(hours=1)
    with sqlite3.connect(path) as db:
        for n in range(count):
            at, sid = sql_time(hour_ago + timedelta(milliseconds=n)), f"{test_id}-{n}"
            db.execute(
                "INSERT INTO sessions (id, status, created_at, num_workers, repo, plan_paths,"
                " plan_key, owner) VALUES (?, 'complete', ?, 1, '/r', '[]', ?, 'me')",
                (sid, at, f"plan-of-{test_id}"),
            )
            execution = db.execute(
                "INSERT INTO executions (session_id, seq, test_id, request_json, ref, category,"
                " status, flaky, attempts, created_at, duration_seconds)"
                " VALUES (?, 0, ?, '{}', 'HEAD', 'default', 'passed', 0, 1, ?, 1.0)",
                (sid, test_id, at),
            ).lastrowid
            attempt = db.execute(
                "INSERT INTO attempts (execution_id, session_id, number, worker, worktree,"
                " started_at, status, log_path, output_tail)"
                " VALUES (?, ?, 1, 0, '/w', ?, 'passed', '/l', '')",
                (execution, sid, at),
            ).lastrowid
            db.execute(
                "INSERT INTO cases (attempt_id, classname, name, status, time)"
                " VALUES (?, 'suite', ?, 'passed', 1.0)",
                (attempt, f"case{n % 10}"),
            )


def read_costs(path: Path, test_id: str) -> dict[str, int]:
    """The steps each read across sessions takes for ``test_id`` (its probe session's)."""
    with sqlite3.connect(path) as db:
        session = queries.session_by_id(db, f"probe-{test_id}")
        assert session is not None
        reads: dict[str, Callable[[], object]] = {
            "history": lambda: queries.history(db, [test_id]),
            "previous": lambda: queries.previous(db, session),
            "case times": lambda: queries.case_times(db, test_id),
        }
        costs = {}
        for name, read in reads.items():
            with counting_steps(db) as steps:
                assert read()  # something found: the history is there
            costs[name] = steps()
    return costs


async def test_reads_across_sessions_do_not_grow_with_the_history(tmp_path: Path) -> None:
    """A test run 2,000 times costs its expected duration, its session's previous one and
    its case times about what a test run 10 times does (index seeks, not a read of the
    whole history), and others' history costs nothing: a daemon's submits and session
    ends stay fast as its store grows."""
    async with open_store(tmp_path / "state") as store:
        path = store.path
        for test_id in ("short", "long"):
            await ran(store, f"probe-{test_id}", test_id, 1.0)
    fill(path, "short", 10)
    alone = read_costs(path, "short")
    fill(path, "long", LONG)
    short, long = read_costs(path, "short"), read_costs(path, "long")
    for name in long:
        assert long[name] <= 3 * short[name] + 5, (name, short, long)
        assert short[name] <= alone[name] + 5, (name, alone, short)
