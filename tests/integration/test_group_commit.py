"""Acknowledged submits are synced to disk, and concurrent ones share a commit and its fsync."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from parallel_orch import ParallelTestConfig, TestRequest
from parallel_orch.exceptions import DuplicateSubmitError
from parallel_orch.store import NewExecution, Store, open_store
from tests.helpers import orchestrator

SYNCHRONOUS_FULL, SYNCHRONOUS_NORMAL = 2, 1


async def create(store: Store, session_id: str, key: str | None = None) -> list[int]:
    request = TestRequest(id=f"{session_id}::t", command="true")
    return await store.create_session(
        session_id,
        num_workers=1,
        repo="/r",
        plan_paths=(),
        plan_key="k",
        owner="me",
        executions=[NewExecution(request=request, sha="a" * 40)],
        idempotency_key=key,
    )


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
        calls = orch._running.admission._known.batches
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
