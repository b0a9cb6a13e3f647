"""Crash soak: 20 kill -9s of the daemon at random moments while tests run, with and
without --resume. Nothing acknowledged is lost, nothing is left running, the pool heals."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from parallel_orch import procs
from tests.e2e.cli import run_cli
from tests.e2e.conftest import StartDaemon, query, write_plan
from tests.helpers import GitRepo

# About a hundred CLI processes and 21 daemon starts: minutes on a loaded 2-core machine.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]

SEED = 20261129
KILLS = 20
TESTS_PER_SESSION = 4
POOL_CAPACITY = 3  # two workers and the spare


def plan(rng: random.Random) -> str:
    """Four tests of random length, one of them starting a child of its own."""
    tests = [
        f'[[test]]\nid = "t{n}"\nrun = "sleep {rng.choice(["0.05", "0.2", "0.5", "1"])}"\n'
        for n in range(TESTS_PER_SESSION - 1)
    ]
    tests.append('[[test]]\nid = "child"\nrun = "sleep 2 & sleep 0.3; wait"\n')
    return "".join(tests)


def test_twenty_kill_9s_lose_nothing_acknowledged_and_leave_nothing_behind(
    repo: GitRepo, start_daemon: StartDaemon
) -> None:
    """After 20 random kill -9s and restarts: every acknowledged request is in the store."""
    rng = random.Random(SEED)
    acknowledged: list[str] = []
    for kill in range(KILLS):
        resume = kill % 2 == 1
        daemon = start_daemon(repo.path, *(["--resume"] if resume else []))
        for _ in range(rng.randint(1, 3)):
            write_plan(repo.path, "soak.toml", plan(rng))
            sent = run_cli(["submit", "plans", "--socket", str(daemon.socket)], cwd=repo.path)
            assert sent.returncode == 0, sent.stderr
            acknowledged.append(sent.stdout.split()[0])
        time.sleep(rng.uniform(0.0, 0.8))  # a random moment: tests starting, running, ending
        daemon.kill()

    final = start_daemon(repo.path, "--resume")
    for session_id in acknowledged:  # the resumed ones finish; the others were interrupted
        watched = run_cli(["watch", session_id, "--socket", str(final.socket)], cwd=repo.path)
        assert watched.returncode in (0, 1, 130), watched.stdout + watched.stderr
    state = final.state_dir
    for session_id in acknowledged:
        (status,) = query(state, "SELECT status FROM sessions WHERE id = ?", session_id)[0]
        requests = query(state, "SELECT status FROM executions WHERE session_id = ?", session_id)
        assert len(requests) == TESTS_PER_SESSION, (session_id, requests)
        assert status != "running" and all(s not in ("pending", "running") for (s,) in requests)
        assert procs.session_groups(session_id) == set(), f"{session_id} left processes"
    running = query(state, "SELECT count(*) FROM attempts WHERE status = 'running'")
    assert running == [(0,)]
    entries = repo.worktree_list()
    assert 1 < len(entries) <= 1 + POOL_CAPACITY, entries
    for entry in entries:
        assert "locked" not in entry and "prunable" not in entry, entry
        assert Path(entry["worktree"]).is_dir(), entry
