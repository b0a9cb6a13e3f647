"""The store under contention: another writer on the SQLite file delays records, loses none;
large reads stay off the event loop."""

from __future__ import annotations

import re
import shlex
import sqlite3
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio
import pytest

from parallel_orch import EventType, ParallelTestConfig, SessionStatus, TestRequest
from parallel_orch.report import ParallelTestReport
from parallel_orch.store import NewExecution, Store, open_store
from parallel_orch.store.reads import INLINE_ROWS
from tests.helpers import WAIT_SECONDS, make_fifo, orchestrator, recording

#: A statement that needs SQLite's write lock, so waits while another connection holds it.
WRITE = re.compile(r"\s*(BEGIN\s+(IMMEDIATE|EXCLUSIVE)|INSERT|UPDATE|DELETE|REPLACE)\b", re.I)


async def test_attempt_records_wait_for_another_writer_and_the_loop_keeps_running(
    config: ParallelTestConfig, outside: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While another connection holds the write lock, a record waits off the loop, then lands."""
    locked = threading.Event()
    write_waits = threading.Event()
    real_connect = sqlite3.connect

    def trace(statement: str) -> None:
        # Called as a statement starts, before SQLite waits for its lock (in any thread).
        if locked.is_set() and WRITE.match(statement):
            write_waits.set()

    def traced_connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        db: sqlite3.Connection = real_connect(*args, **kwargs)
        db.set_trace_callback(trace)
        return db

    monkeypatch.setattr(sqlite3, "connect", traced_connect)  # the store's connections report
    release = make_fifo(outside / "release")
    request = TestRequest(id="t", command=f"read -r _ < {shlex.quote(str(release))}")
    db_path = config.resolved_state_dir / "orch.sqlite3"
    reports: list[ParallelTestReport] = []
    loop_ran = anyio.Event()
    async with orchestrator(config) as orch, recording(orch) as events:

        async def run() -> None:
            reports.append(await orch.run_tests([request]))

        async def note_loop_ran() -> None:
            loop_ran.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(run)
            await events.wait_for(lambda e: e.type == EventType.ATTEMPT_STARTED)
            other = real_connect(db_path, isolation_level=None)
            other.execute("BEGIN IMMEDIATE")  # what another process writing would hold
            locked.set()
            try:
                await anyio.to_thread.run_sync(release.write_text, "go\n")  # the attempt ends
                # Its record now waits for the lock; a wait on the loop would stop us here.
                assert await anyio.to_thread.run_sync(write_waits.wait, WAIT_SECONDS)
                tg.start_soon(note_loop_ran)
                await loop_ran.wait()
            finally:
                locked.clear()
                other.execute("COMMIT")
                other.close()
    (report,) = reports
    assert report.status == SessionStatus.COMPLETE
    assert [a.status for a in report.completed_tests[0].attempts] == ["passed"]
    with sqlite3.connect(db_path) as db:
        rows = db.execute("SELECT status, pid, completed_at FROM attempts").fetchall()
    assert len(rows) == 1
    status, pid, completed_at = rows[0]
    assert (status, pid is not None, completed_at is not None) == ("passed", True, True)


async def test_processes_opening_a_fresh_state_dir_at_once_all_get_the_store(
    tmp_path: Path,
) -> None:
    """Six stores opened at once on a new state dir: none fails on 'table already exists'."""

    async def use(state_dir: Path) -> None:
        async with open_store(state_dir) as store:
            assert await store.recent_sessions() == []

    for round_ in range(5):  # the race lost most rounds before tables were made under a lock
        async with anyio.create_task_group() as tg:
            for _ in range(6):
                tg.start_soon(use, tmp_path / f"state{round_}")


async def _session(store: Store, session_id: str, tests: int) -> None:
    requests = [TestRequest(id=f"{session_id}::{n}", command="true") for n in range(tests)]
    await store.create_session(
        session_id,
        num_workers=1,
        repo="/r",
        plan_paths=(),
        plan_key=session_id,
        owner="me",
        executions=[NewExecution(request=r, sha="a" * 40) for r in requests],
    )


async def test_a_small_sessions_reads_stay_on_the_loop_a_large_ones_go_to_a_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a watch and a session's end read is the same either way; only a session of more
    than a few dozen rows costs a thread, so a large read never stalls the daemon's loop."""
    async with open_store(tmp_path) as store:
        await _session(store, "small", 3)
        await _session(store, "large", INLINE_ROWS + 1)
        in_thread: list[str] = []
        read = store._read

        async def counted(query: Any) -> Any:
            in_thread.append("read")
            return await read(query)

        monkeypatch.setattr(store, "_read", counted)
        for session_id, hops in (("small", 0), ("large", 3)):
            in_thread.clear()
            row, executions = await store.session_executions(session_id[:3])  # a prefix
            counted_row, counts = await store.session_counts(session_id)
            snapshot, previous = await store.ending_snapshot(session_id)
            assert len(in_thread) == hops
            monkeypatch.setattr(store, "_read", read)
            whole = await store.session_snapshot(session_id)  # in a thread, as it always was
            monkeypatch.setattr(store, "_read", counted)
            assert row == counted_row == replace(whole.session, report_json=None)
            assert executions == list(whole.executions)
            assert counts == {"pending": len(executions)}
            assert (snapshot, previous) == (whole, None)
