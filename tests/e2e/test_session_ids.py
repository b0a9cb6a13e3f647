"""Session ids given by prefix: matched literally, and never a guess among several."""

from __future__ import annotations

import json
import os
from pathlib import Path

import anyio
import pytest

from parallel_orch import ParallelTestConfig, TestRequest
from parallel_orch.exceptions import AmbiguousSessionError, SessionNotFoundError
from parallel_orch.store import open_store
from tests.e2e.cli import run_cli
from tests.e2e.conftest import StartDaemon, hold_plan, read_pids, write_plan
from tests.helpers import GitRepo, orchestrator


async def make_sessions(config: ParallelTestConfig, *session_ids: str) -> None:
    """Finished one-test sessions with these ids in ``config``'s store."""
    async with orchestrator(config) as orch:
        for session_id in session_ids:
            request = TestRequest(id="t", command="true")
            await orch.wait_for_session(await orch.create_session([request], session_id=session_id))


async def test_a_prefix_matches_literally_and_must_name_one_session(
    config: ParallelTestConfig,
) -> None:
    """'5' naming two sessions is an error listing both; '%' and '_' match only themselves."""
    await make_sessions(config, "5aaaaaaaaaaa", "5bbbbbbbbbbb", "c_cccccccccc")
    async with open_store(config.resolved_state_dir) as store:
        with pytest.raises(AmbiguousSessionError) as ambiguous:
            await store.get_session("5")
        assert "5aaaaaaaaaaa" in ambiguous.value.message
        assert "5bbbbbbbbbbb" in ambiguous.value.message
        assert (await store.get_session("5a")).id == "5aaaaaaaaaaa"
        assert (await store.get_session("c_")).id == "c_cccccccccc"
        for wildcard in ("%", "_", "5%", "c%c"):
            with pytest.raises(SessionNotFoundError, match="no session"):
                await store.get_session(wildcard)


async def test_show_with_an_ambiguous_prefix_exits_2_listing_the_candidates(
    repo: GitRepo, config: ParallelTestConfig
) -> None:
    """`show 5` when two sessions start with 5 prints both and exits 2, showing neither."""
    await make_sessions(config, "5aaaaaaaaaaa", "5bbbbbbbbbbb")
    state = ["--state-dir", str(config.resolved_state_dir)]
    result = await anyio.to_thread.run_sync(lambda: run_cli(["show", "5", *state], cwd=repo.path))
    assert result.returncode == 2, result.stdout
    assert "matches several sessions" in result.stderr
    assert "5aaaaaaaaaaa" in result.stderr and "5bbbbbbbbbbb" in result.stderr
    assert result.stdout == "" and "Traceback" not in result.stderr


@pytest.mark.slow
def test_cancel_percent_cancels_nothing(
    repo: GitRepo, start_daemon: StartDaemon, tmp_path: Path
) -> None:
    """`cancel %` is no session at all (exit 2); the running session goes on."""
    fifo = tmp_path / "pids"
    os.mkfifo(fifo)
    write_plan(repo.path, "hold.toml", hold_plan(fifo, ["held"]))
    daemon = start_daemon(repo.path)
    socket = ["--socket", str(daemon.socket)]
    submitted = run_cli(["submit", "plans", *socket], cwd=repo.path)
    assert submitted.returncode == 0, submitted.stderr
    session_id = submitted.stdout.split()[0]
    read_pids(fifo, 1)
    refused = run_cli(["cancel", "%", *socket], cwd=repo.path)
    assert refused.returncode == 2 and "no session '%'" in refused.stderr
    status = json.loads(run_cli(["status", session_id, "--json", *socket], cwd=repo.path).stdout)
    assert status["status"] == "running"
    cancelled = run_cli(["cancel", session_id, *socket], cwd=repo.path)
    assert cancelled.returncode == 0, cancelled.stderr
