"""Acknowledged submits are synced to disk, and concurrent ones share a commit and its fsync."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from parallel_orch import ParallelTestConfig, TestRequest
from parallel_orch.admission import PlainSession
from parallel_orch.exceptions import DuplicateSubmitError, StoreError
from parallel_orch.sessions import SessionState
from parallel_orch.store import NewExecution, Store, open_store, writes
from tests.helpers import WAIT_SECONDS, orchestrator
from tests.helpers import one_test_session as create

SYNCHRONOUS_FULL, SYNCHRONOUS_NORMAL = 2, 1


async def test_a_submit_commits_with_synchronous_full(tmp_path: Path) -> None:
    """The transaction that acknowledges a submit is committed FULL; other writes stay NORMAL."""
    async with open_store(tmp_path) as store:
        writer = store._writer
        synced = await writer.write_synced(lambda db: db.execute("PRAGMA synchronous").fetchone())
        plain = await writer.write(lambda db: db.execute("PRAGMA synchronous").fetchone())
    assert synced[0] == SYNCHRONOUS_FULL
    assert plain[0] == SYNCHRONOUS_NORMAL


async def test_concurrent_submits_share_commits_and_all_survive(tmp_path: Path) -> None:
    """Twenty sessions created at once: fewer commits than sessions, every one recorded."""
    async with open_store(tmp_path) as store:
        async with anyio.create_task_group() as tg:
            for n in range(20):
                tg.start_soon(create, store, f"s{n:02}")
        commits = store._writer.synced_commits
    assert commits < 20
    async with open_store(tmp_path) as store:
        assert len(await store.recent_sessions(limit=50)) == 20


async def test_a_duplicate_key_in_a_shared_commit_fails_alone(tmp_path: Path) -> None:
    """One submit's duplicate idempotency key undoes that submit only, not its batch mates."""
    async with open_store(tmp_path) as store:
        await create(store, "first", key="k1")
        outcomes: dict[str, BaseException | None] = {}

        async def attempt(session_id: str, key: str) -> None:
            try:
                await create(store, session_id, key=key)
                outcomes[session_id] = None
            except DuplicateSubmitError as exc:
                outcomes[session_id] = exc

        async with anyio.create_task_group() as tg:
            tg.start_soon(attempt, "again", "k1")
            tg.start_soon(attempt, "other", "k2")
        ids = {s.id for s in await store.recent_sessions(limit=10)}
    assert isinstance(outcomes["again"], DuplicateSubmitError)
    assert outcomes["other"] is None
    assert ids == {"first", "other"}


async def test_sessions_submitted_at_once_share_one_lookup_and_one_commit(
    config: ParallelTestConfig,
) -> None:
    """Twenty sessions whose submits arrive over a few turns of the loop (as a burst of requests
    read from their sockets does) wait for each other: one ref lookup, one history read and
    one synced commit for all of them (the first does not go alone while the rest wait)."""
    async with orchestrator(config) as orch:
        await orch.wait_for_session(
            await orch.create_session([TestRequest(id="w", command="true")])
        )
        admission, writer = orch._running.admission, orch.store._writer
        lookups, commits = admission.lookup.known.batches, writer.synced_commits
        ids: list[str] = []

        async def submit(n: int, turns_late: int) -> None:
            for _ in range(turns_late):  # as requests read from many sockets reach it
                await anyio.lowlevel.checkpoint()
            ids.append(await orch.create_session([TestRequest(id=f"t{n}", command="true")]))

        async with anyio.create_task_group() as tg:
            for n in range(20):
                tg.start_soon(submit, n, n // 4)  # four a turn, over five turns
        assert (admission.lookup.known.batches - lookups, writer.synced_commits - commits) == (1, 1)
        reports = [await orch.wait_for_session(i) for i in ids]
    assert [r.tests_passed for r in reports] == [1] * 20


async def test_concurrent_sessions_resolve_refs_together(config: ParallelTestConfig) -> None:
    """Sessions submitted at once whose refs git must work out (``HEAD~0``, in a thread)
    share git calls and history reads, and all run."""
    async with orchestrator(config) as orch:
        ids: list[str] = []

        async def submit(n: int) -> None:
            request = TestRequest(id=f"t{n}", command="true", ref="HEAD~0")
            ids.append(await orch.create_session([request]))

        async with anyio.create_task_group() as tg:
            for n in range(10):
                tg.start_soon(submit, n)
        reports = [await orch.wait_for_session(i) for i in ids]
        calls = orch._running.admission.lookup.known.batches
    assert [r.tests_passed for r in reports] == [1] * 10
    assert 0 < calls < 10


async def test_a_submit_whose_write_fails_gets_the_error_and_the_writer_goes_on(
    tmp_path: Path,
) -> None:
    """A write that raises is that submit's error, not a hang, and later submits commit."""
    async with open_store(tmp_path) as store:

        def broken(db: object) -> None:
            raise RuntimeError("the disk said no")

        with pytest.raises(RuntimeError, match="the disk said no"):
            await store._writer.write_synced(broken)
        assert await create(store, "after")  # the writer still works


async def test_a_batch_is_announced_from_its_commit_before_any_caller_resumes(
    tmp_path: Path,
) -> None:
    """Each ``then`` of a shared commit gets its own result once the rows are on disk, all
    of them in the commit's own step, before the first caller is back; one that raises
    fails its own caller only, and its rows stay committed."""
    async with open_store(tmp_path) as store:
        await create(store, "warm")  # the writer's connection is open
        other = sqlite3.connect(store.path, check_same_thread=False)
        sql = "SELECT count(*) FROM executions WHERE session_id = ?"
        announced: list[tuple[str, list[int], set[str], int]] = []  # ..., who was back, commit
        resumed: set[str] = set()
        outcomes: dict[str, list[int] | BaseException] = {}

        def then(session_id: str) -> Callable[[list[int]], None]:
            def committed(ids: list[int]) -> None:
                announced.append((session_id, ids, set(resumed), store._writer.synced_commits))
                if session_id == "s03":
                    raise RuntimeError("the announcement failed")

            return committed

        async def submit(session_id: str) -> None:
            try:
                outcomes[session_id] = await create(store, session_id, then=then(session_id))
            except RuntimeError as exc:
                outcomes[session_id] = exc
            resumed.add(session_id)

        with contextlib.closing(other):
            async with anyio.create_task_group() as tg:
                for n in range(8):
                    tg.start_soon(submit, f"s{n:02}")
            rows = {f"s{n:02}": other.execute(sql, (f"s{n:02}",)).fetchone()[0] for n in range(8)}
    assert sorted(a[0] for a in announced) == sorted(outcomes)
    for _, _, back, commit in announced:  # none of its batch had resumed
        assert not back & {sid for sid, _, _, other in announced if other == commit}
    assert all(outcomes[sid] == ids for sid, ids, _, _ in announced if sid != "s03")
    assert isinstance(outcomes["s03"], RuntimeError)
    assert rows == {f"s{n:02}": 1 for n in range(8)}


@pytest.mark.parametrize("ref", ["HEAD", "no-such-ref"], ids=["runs", "nothing-to-run"])
async def test_a_session_committed_after_its_caller_was_cancelled_still_ends(
    config: ParallelTestConfig, ref: str
) -> None:
    """A submit cancelled while the commit it joined runs: the commit stands, and the session
    it made ends (it runs, or has nothing to run), so the orchestrator does not wait for ever."""
    async with orchestrator(config) as orch:
        await orch.wait_for_session(
            await orch.create_session([TestRequest(id="w", command="true")])
        )
        writer_db = orch.store._writer._db
        assert writer_db is not None
        committing = threading.Event()

        def slow_commit(statement: str) -> None:  # in the writer's thread (see syncing)
            if statement.strip().upper() == "COMMIT":
                committing.set()
                time.sleep(0.2)

        syncing(orch.store, SLOW)
        writer_db.set_trace_callback(slow_commit)
        cancelled: list[anyio.CancelScope] = []

        async def submit(name: str) -> None:
            with anyio.CancelScope() as scope:
                cancelled.append(scope)
                request = TestRequest(id=f"{name}::t", command="true", ref=ref)
                await orch.create_session([request], session_id=name)

        async with anyio.create_task_group() as tg:
            tg.start_soon(submit, "a")
            tg.start_soon(submit, "b")
            with anyio.fail_after(WAIT_SECONDS):
                while not committing.is_set():  # their commit is running
                    await anyio.lowlevel.checkpoint()
            cancelled[1].cancel()
        writer_db.set_trace_callback(None)
        with anyio.fail_after(WAIT_SECONDS):
            await orch.wait_for_completion()
        ended = {s.id: s.status for s in await orch.store.recent_sessions(limit=10)}
    assert set(ended) >= {"a", "b"}
    assert ended["b"] == ended["a"] != "running"


FAST, SLOW = 0.0001, 0.05  # seconds a synced commit took: under and over the loop's bound


def syncing(store: Store, seconds: float) -> None:
    """Make the writer believe its last synced commits took ``seconds`` each."""
    times = store._writer._sync_times
    times.clear()
    times.extend([seconds] * (times.maxlen or 1))


@pytest.mark.parametrize("seconds", [FAST, SLOW], ids=["fsync-on-loop", "fsync-in-thread"])
async def test_a_submit_returns_once_another_connection_sees_its_rows(
    tmp_path: Path, seconds: float
) -> None:
    """Whether the commit's fsync runs on the loop or in a thread, the rows are committed by
    the time the submit returns (however slow the disk), and concurrent submits still share
    commits."""
    async with open_store(tmp_path) as store:
        await create(store, "warm")  # the writer's connection is open
        writer_db = store._writer._db
        assert writer_db is not None

        def slow_disk(statement: str) -> None:
            if statement.strip().upper() == "COMMIT":
                time.sleep(0.1)  # as a COMMIT's fsync on a slow disk

        writer_db.set_trace_callback(slow_disk)
        syncing(store, seconds)
        assert store._writer.syncs_on_loop is (seconds == FAST)
        seen: dict[str, int] = {}
        other = sqlite3.connect(store.path, check_same_thread=False)
        sql = "SELECT count(*) FROM executions WHERE session_id = ?"

        async def create_and_look(session_id: str) -> None:
            await create(store, session_id)
            seen[session_id] = other.execute(sql, (session_id,)).fetchone()[0]  # at once

        with contextlib.closing(other):
            async with anyio.create_task_group() as tg:
                for n in range(20):
                    tg.start_soon(create_and_look, f"s{n:02}")
        commits = store._writer.synced_commits
    assert seen == {f"s{n:02}": 1 for n in range(20)}
    assert commits < 20


@pytest.mark.parametrize("seconds", [FAST, SLOW], ids=["fsync-on-loop", "fsync-in-thread"])
async def test_a_submit_waits_off_the_loop_while_another_process_writes(
    tmp_path: Path, seconds: float
) -> None:
    """Another connection holding the write lock delays a submit, never fails it, and the
    event loop keeps running meanwhile."""
    async with open_store(tmp_path) as store:
        syncing(store, seconds)
        await create(store, "warm")  # the writer's connection is open
        other = sqlite3.connect(store.path, isolation_level=None, check_same_thread=False)
        other.execute("BEGIN IMMEDIATE")
        ticks = 0
        created = anyio.Event()

        async def tick() -> None:
            nonlocal ticks
            while not created.is_set():
                ticks += 1
                await anyio.sleep(0.01)

        async def release_later() -> None:
            await anyio.sleep(0.5)
            other.execute("COMMIT")

        with anyio.fail_after(WAIT_SECONDS):
            async with anyio.create_task_group() as tg:
                tg.start_soon(tick)
                tg.start_soon(release_later)
                ids = await create(store, "waited")
                created.set()
        other.close()
    assert len(ids) == 1
    assert ticks >= 20  # the loop ran through the half second the lock was held


async def test_a_default_session_opens_at_once_after_other_sessions(
    config: ParallelTestConfig,
) -> None:
    """``submit_test`` after a session has run opens the default session (a session of no
    tests yet, so no refs to look up) without waiting for an answer git never sends."""
    async with orchestrator(config) as orch:
        await orch.wait_for_session(
            await orch.create_session([TestRequest(id="a", command="true")])
        )
        started = time.monotonic()
        await orch.submit_test(TestRequest(id="b", command="true"))
        waited = time.monotonic() - started
        report = await orch.wait_for_completion()
    assert waited < 5, f"opening the default session took {waited:.1f} s (the lookup's timeout)"
    assert report is not None and report.tests_passed == 1


async def test_a_commit_in_a_thread_is_timed_by_the_disk_not_by_the_busy_loop(
    tmp_path: Path,
) -> None:
    """A synced commit run in a thread records how long its COMMIT took, not how long a loop
    busy elsewhere took to see it done (which would keep later commits off the loop)."""
    async with open_store(tmp_path) as store:
        await create(store, "warm")  # the writer's connection is open
        writer_db = store._writer._db
        assert writer_db is not None
        loop = asyncio.get_running_loop()

        def loop_busy_meanwhile(statement: str) -> None:  # in the thread, as COMMIT starts
            if statement.strip().upper() == "COMMIT":
                loop.call_soon_threadsafe(time.sleep, 0.2)

        syncing(store, SLOW)  # in a thread
        writer_db.set_trace_callback(loop_busy_meanwhile)
        await create(store, "timed")
        writer_db.set_trace_callback(None)
        assert store._writer._sync_times[-1] < 0.1


def plain_session(session_id: str, tests: int, key: str | None = None) -> dict[str, object]:
    """:meth:`Store.create_sessions`'s keyword arguments for a session of ``tests`` requests."""
    requests = [TestRequest(id=f"{session_id}::t{n}", command="true") for n in range(tests)]
    return {
        "session_id": session_id,
        "num_workers": 1,
        "repo": "/r",
        "plan_paths": (),
        "plan_key": "k",
        "owner": "me",
        "executions": [NewExecution(request=r, sha="a" * 40) for r in requests],
        "options_json": "{}",
        **({"idempotency_key": key} if key else {}),
    }


def execution_rows(store: Store) -> dict[int, tuple[str, int, str]]:
    with contextlib.closing(sqlite3.connect(store.path)) as db:
        rows = db.execute("SELECT id, session_id, seq, test_id FROM executions").fetchall()
    return {row_id: (session_id, seq, test_id) for row_id, session_id, seq, test_id in rows}


async def test_sessions_created_together_get_their_own_execution_ids_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch of sessions in one write: each one's ids name its own requests, in order."""
    async with open_store(tmp_path) as store:
        await create(store, "before")  # ids already taken

        def one_by_one(*args: Any, **kwargs: Any) -> list[int]:
            raise AssertionError("the batch was not written together")

        monkeypatch.setattr(writes, "insert_session", one_by_one)
        sizes = {"one": 1, "three": 3, "none": 0, "two": 2}
        ids = await store.create_sessions([plain_session(s, n) for s, n in sizes.items()])
    rows = execution_rows(store)
    for (session_id, size), got in zip(sizes.items(), ids, strict=True):
        assert isinstance(got, list)
        assert [rows[i] for i in got] == [
            (session_id, n, f"{session_id}::t{n}") for n in range(size)
        ]


async def test_a_write_failing_halfway_undoes_the_batch_and_each_is_written_alone(
    tmp_path: Path,
) -> None:
    """A session id already taken, between two new ones: the batch's rows so far are
    undone, and each session is written again alone; only the taken one fails."""
    async with open_store(tmp_path) as store:
        await create(store, "taken")
        batch = [plain_session("x", 2), plain_session("taken", 3), plain_session("y", 1)]
        ids = await store.create_sessions(batch)
    assert isinstance(ids[1], StoreError) and "UNIQUE" in str(ids[1])
    rows = execution_rows(store)
    assert sorted(rows.values()) == [
        ("taken", 0, "taken::t"),
        ("x", 0, "x::t0"),
        ("x", 1, "x::t1"),
        ("y", 0, "y::t0"),
    ]
    x, y = ids[0], ids[2]
    assert isinstance(x, list) and isinstance(y, list)
    assert [rows[i][0] for i in x + y] == ["x", "x", "y"]


async def test_a_session_that_cannot_be_stored_fails_alone_in_its_batch(tmp_path: Path) -> None:
    """A duplicate idempotency key in a batch: that session undone, the others stored."""
    async with open_store(tmp_path) as store:
        await create(store, "first", key="k1")
        batch = [
            plain_session("a", 1),
            plain_session("again", 1, "k1"),
            plain_session("b", 2, "k2"),
        ]
        ids = await store.create_sessions(batch)
        stored = {s.id for s in await store.recent_sessions(limit=10)}
    assert isinstance(ids[1], DuplicateSubmitError)
    assert stored == {"first", "a", "b"}
    rows = execution_rows(store)
    assert isinstance(ids[2], list) and [rows[i][0] for i in ids[2]] == ["b", "b"]


async def test_sessions_made_together_are_all_answered_before_any_is_queued(
    config: ParallelTestConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Plain sessions committed together: every answer first, then each queued; one that
    then cannot be queued ends with its test ``error`` (nothing hangs), the others run."""
    async with orchestrator(config) as orch:
        admission = orch._running.admission
        steps: list[str] = []
        open_session = admission._open

        def opening(state: SessionState, *args: Any) -> None:
            steps.append("open")
            if steps.count("open") == 1:
                raise RuntimeError("a bug")
            open_session(state, *args)

        monkeypatch.setattr(admission, "_open", opening)
        sessions = [
            PlainSession(
                [TestRequest(id=f"t{n}", command="true")], 0, None, lambda *_: steps.append("ack")
            )
            for n in range(3)
        ]
        ids = await orch.create_sessions(sessions)
        with anyio.fail_after(WAIT_SECONDS):
            reports = [await orch.wait_for_session(i) for i in ids if isinstance(i, str)]
    assert steps == ["ack"] * 3 + ["open"] * 3
    (test,) = reports[0].completed_tests
    assert test.status == "error" and "could not be queued: RuntimeError('a bug')" in (
        test.error or ""
    )
    assert [r.tests_passed for r in reports] == [0, 1, 1]
