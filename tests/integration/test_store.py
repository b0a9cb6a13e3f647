"""The store under contention: another writer on the SQLite file delays records, loses none."""

from __future__ import annotations

import sqlite3
import time

import anyio

from parallel_orch import EventType, ParallelTestConfig, SessionStatus, TestRequest
from parallel_orch.report import ParallelTestReport
from tests.helpers import orchestrator, recording


async def test_attempt_records_wait_for_another_writer_and_the_loop_keeps_running(
    config: ParallelTestConfig,
) -> None:
    """While another connection holds the write lock, attempts run, end and are recorded."""
    request = TestRequest(id="t", command="sleep 0.3")
    db_path = config.resolved_state_dir / "orch.sqlite3"
    gaps: list[float] = []
    reports: list[ParallelTestReport] = []
    async with orchestrator(config) as orch, recording(orch) as events:

        async def run() -> None:
            reports.append(await orch.run_tests([request]))

        async with anyio.create_task_group() as tg:
            tg.start_soon(run)
            await events.wait_for(lambda e: e.type == EventType.ATTEMPT_STARTED)
            other = sqlite3.connect(db_path, isolation_level=None)
            other.execute("BEGIN IMMEDIATE")  # what another process writing would hold
            try:
                last = time.monotonic()
                for _ in range(20):  # 1 s: the attempt spawns, ends and records meanwhile
                    await anyio.sleep(0.05)
                    now = time.monotonic()
                    gaps.append(now - last)
                    last = now
            finally:
                other.execute("COMMIT")
                other.close()
    (report,) = reports
    assert report.status == SessionStatus.COMPLETE
    assert [a.status for a in report.completed_tests[0].attempts] == ["passed"]
    assert max(gaps) < 0.5, gaps  # the loop never sat waiting for the lock
    with sqlite3.connect(db_path) as db:
        rows = db.execute("SELECT status, pid, completed_at FROM attempts").fetchall()
    assert len(rows) == 1
    status, pid, completed_at = rows[0]
    assert (status, pid is not None, completed_at is not None) == ("passed", True, True)
