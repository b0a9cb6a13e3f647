"""Crashes and stops: kill -9 and restart, --resume, SIGTERM drain, forced stops.

Each test checks the store, `git worktree list` and the process table after.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from tests.e2e.cli import run_cli
from tests.e2e.conftest import StartDaemon, hold_plan, query, read_pids, wait_until, write_plan
from tests.helpers import GitRepo, process_alive

pytestmark = pytest.mark.slow


#: Two workers (the daemon fixture's) and the default spare worktree.
POOL_CAPACITY = 3


def statuses(state_dir: Path, table: str, session_id: str) -> list[str]:
    rows = query(
        state_dir, f"SELECT status FROM {table} WHERE session_id = ? ORDER BY id", session_id
    )
    return [r[0] for r in rows]


def session_status(state_dir: Path, session_id: str) -> str:
    return str(query(state_dir, "SELECT status FROM sessions WHERE id = ?", session_id)[0][0])


def assert_no_worktree_leak(repo: GitRepo, capacity: int) -> None:
    """At most the main checkout plus ``capacity`` pooled worktrees, all present on disk."""
    entries = repo.worktree_list()
    assert len(entries) <= 1 + capacity, entries
    for entry in entries:
        assert "prunable" not in entry and Path(entry["worktree"]).is_dir(), entry


def all_dead(pids: list[int]) -> bool:
    return not any(process_alive(pid) for pid in pids)


def submit(repo: GitRepo, socket: Path, *args: str) -> str:
    result = run_cli(["submit", "plans", "--socket", str(socket), *args], cwd=repo.path)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()[0]


def test_kill_9_mid_session_then_restart_interrupts_it_and_kills_its_processes(
    repo: GitRepo, start_daemon: StartDaemon, tmp_path: Path
) -> None:
    """kill -9, restart: every request found, session and attempts interrupted, groups dead."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    write_plan(repo.path, "hold.toml", hold_plan(fifo, ["a", "b", "c"]))
    daemon = start_daemon(repo.path)
    session_id = submit(repo, daemon.socket)
    pids = read_pids(fifo, 2)  # two workers busy, "c" still queued
    daemon.kill()
    assert not all_dead(pids), "attempts run in their own process groups"
    assert daemon.socket.exists()  # left behind: the restart must replace it

    restarted = start_daemon(repo.path)
    wait_until(lambda: all_dead(pids), 10, "the dead daemon's attempts to be killed")
    assert "killed process group" in restarted.log
    assert session_status(restarted.state_dir, session_id) == "interrupted"
    assert statuses(restarted.state_dir, "executions", session_id) == ["interrupted"] * 3
    assert statuses(restarted.state_dir, "attempts", session_id) == ["interrupted"] * 2
    assert_no_worktree_leak(repo, POOL_CAPACITY)
    write_plan(repo.path, "hold.toml", '[[test]]\nid = "after"\nrun = "true"\n')
    assert submit(repo, restarted.socket, "--wait")  # the reclaimed pool works
    assert_no_worktree_leak(repo, POOL_CAPACITY)


def test_kill_9_then_resume_reruns_the_unfinished_requests_in_the_same_session(
    repo: GitRepo, start_daemon: StartDaemon, tmp_path: Path
) -> None:
    """`daemon --resume` after kill -9 re-runs what was unfinished; the session completes."""
    fifo, marks = tmp_path / "fifo", tmp_path / "marks"
    os.mkfifo(fifo)
    marks.mkdir()
    plan = hold_plan(fifo, ["a", "b"], marks=marks) + '[[test]]\nid = "c"\nrun = "true"\n'
    write_plan(repo.path, "hold.toml", plan)
    daemon = start_daemon(repo.path)
    session_id = submit(repo, daemon.socket)
    pids = read_pids(fifo, 2)
    daemon.kill()

    restarted = start_daemon(repo.path, "--resume")
    watched = run_cli(["watch", session_id, "--socket", str(restarted.socket)], cwd=repo.path)
    assert watched.returncode == 0, watched.stdout + watched.stderr
    assert all_dead(pids)
    assert session_status(restarted.state_dir, session_id) == "complete"
    assert statuses(restarted.state_dir, "executions", session_id) == ["passed"] * 3
    attempts = statuses(restarted.state_dir, "attempts", session_id)
    assert sorted(attempts) == ["interrupted"] * 2 + ["passed"] * 3
    assert_no_worktree_leak(repo, POOL_CAPACITY)


def test_sigterm_lets_running_attempts_finish_and_cancels_the_queue(
    repo: GitRepo, start_daemon: StartDaemon, tmp_path: Path
) -> None:
    """SIGTERM: no new sessions, a running attempt finishes in the grace, the queue is cancelled."""
    fifo, gate = tmp_path / "fifo", tmp_path / "gate"
    os.mkfifo(fifo)
    wait_gate = f'echo $$ > "{fifo}"; while [ ! -e "{gate}" ]; do sleep 0.05; done'
    write_plan(
        repo.path,
        "drain.toml",
        f'[[test]]\nid = "held"\nrun = \'{wait_gate}\'\n[[test]]\nid = "queued"\nrun = "true"\n',
    )
    daemon = start_daemon(repo.path, "-j", "1", "--grace", "60")
    session_id = submit(repo, daemon.socket)
    read_pids(fifo, 1)
    daemon.send_signal(signal.SIGTERM)
    daemon.wait_for_log("send it again to force")
    refused = run_cli(["submit", "plans", "--socket", str(daemon.socket)], cwd=repo.path)
    assert refused.returncode == 3 and "shutting down" in refused.stderr
    gate.touch()
    assert daemon.wait() == 0
    assert not daemon.socket.exists()
    assert statuses(daemon.state_dir, "executions", session_id) == ["passed", "cancelled"]
    assert session_status(daemon.state_dir, session_id) == "cancelled"


@pytest.mark.parametrize("how", ["second signal", "grace expires", "shutdown --now"])
def test_a_forced_stop_cancels_running_attempts_and_leaves_a_consistent_store(
    repo: GitRepo, start_daemon: StartDaemon, tmp_path: Path, how: str
) -> None:
    """A second SIGTERM, an expired grace or `shutdown --now`: attempts cancelled, groups killed."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    write_plan(repo.path, "hold.toml", hold_plan(fifo, ["a", "b"]))
    grace = "0.2" if how == "grace expires" else "600"
    daemon = start_daemon(repo.path, "--grace", grace)
    session_id = submit(repo, daemon.socket)
    pids = read_pids(fifo, 2)
    if how == "shutdown --now":
        result = run_cli(["shutdown", "--now", "--socket", str(daemon.socket)], cwd=repo.path)
        assert result.returncode == 0, result.stderr
    else:
        daemon.send_signal(signal.SIGTERM)
        if how == "second signal":
            daemon.wait_for_log("send it again to force")
            daemon.send_signal(signal.SIGTERM)
    assert daemon.wait(30) == 0
    assert all_dead(pids)
    assert not daemon.socket.exists()
    assert statuses(daemon.state_dir, "executions", session_id) == ["cancelled"] * 2
    assert statuses(daemon.state_dir, "attempts", session_id) == ["cancelled"] * 2
    assert session_status(daemon.state_dir, session_id) == "cancelled"


def test_readers_read_the_store_while_the_daemon_writes(
    repo: GitRepo, start_daemon: StartDaemon
) -> None:
    """`sessions` and `show` from other processes never hit 'database is locked'."""
    tests = "".join(f'[[test]]\nid = "t{n}"\nrun = "true"\n' for n in range(40))
    write_plan(repo.path, "many.toml", tests)
    daemon = start_daemon(repo.path)
    session_id = submit(repo, daemon.socket)
    outputs: list[str] = []
    while session_status(daemon.state_dir, session_id) == "running" or not outputs:
        for args in (["sessions", "--json"], ["show", session_id, "--json"]):
            result = run_cli(args, cwd=repo.path)
            outputs.append(result.stdout + result.stderr)
            assert result.returncode == 0, result.stderr
        query(daemon.state_dir, "SELECT count(*) FROM attempts")
    assert not any("locked" in out for out in outputs)
    assert session_status(daemon.state_dir, session_id) == "complete"
