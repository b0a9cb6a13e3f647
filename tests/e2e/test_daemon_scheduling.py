"""Several sessions on one pool: fair shares between equals, priority first."""

from __future__ import annotations

import os
from pathlib import Path

from parallel_orch import TestRequest
from parallel_orch.client import DaemonClient
from tests.e2e.conftest import StartDaemon, query, read_pids
from tests.helpers import GitRepo


def held(fifo: Path, gate: Path) -> TestRequest:
    """A request that announces itself on ``fifo`` and runs until ``gate`` exists."""
    command = f'echo $$ > "{fifo}"; while [ ! -e "{gate}" ]; do sleep 0.02; done'
    return TestRequest(id="held", command=command)


def quick(prefix: str, count: int) -> list[TestRequest]:
    return [TestRequest(id=f"{prefix}{n}", command=("true",)) for n in range(count)]


def run_order(state_dir: Path) -> list[str]:
    """Test ids in the order their attempts started."""
    rows = query(
        state_dir,
        "SELECT e.test_id FROM attempts a JOIN executions e ON a.execution_id = e.id ORDER BY a.id",
    )
    return [r[0] for r in rows]


async def test_a_small_session_does_not_wait_for_a_large_one(
    repo: GitRepo, start_daemon: StartDaemon, tmp_path: Path
) -> None:
    """Round robin between sessions: a 1-test session submitted behind 6 runs second."""
    fifo, gate = tmp_path / "fifo", tmp_path / "gate"
    os.mkfifo(fifo)
    daemon = start_daemon(repo.path, "-j", "1")
    async with DaemonClient(daemon.socket) as client:
        large = await client.submit(requests=[held(fifo, gate), *quick("large", 5)])
        read_pids(fifo, 1)
        small = await client.submit(requests=quick("small", 1))
        gate.touch()
        assert (await client.wait(small.session_id)).status == "complete"
        assert (await client.wait(large.session_id)).status == "complete"
    assert run_order(daemon.state_dir)[:3] == ["held", "small0", "large0"]


async def test_a_higher_priority_session_runs_first(
    repo: GitRepo, start_daemon: StartDaemon, tmp_path: Path
) -> None:
    """Priority before fairness: a later session of higher priority runs before an earlier one."""
    fifo, gate = tmp_path / "fifo", tmp_path / "gate"
    os.mkfifo(fifo)
    daemon = start_daemon(repo.path, "-j", "1")
    async with DaemonClient(daemon.socket) as client:
        first = await client.submit(requests=[held(fifo, gate)])
        read_pids(fifo, 1)
        low = await client.submit(requests=quick("low", 2))
        high = await client.submit(requests=quick("high", 2), priority=5)
        gate.touch()
        for submitted in (first, low, high):
            assert (await client.wait(submitted.session_id)).status == "complete"
    assert run_order(daemon.state_dir) == ["held", "high0", "high1", "low0", "low1"]
