"""Attempt output: all of it in the log file, a bounded tail in the store."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from parallel_orch import SessionStatus, TestRequest
from parallel_orch.store import open_store
from tests.helpers import MakeConfig, orchestrator

FLOOD_BYTES = 200_000_000


@pytest.mark.slow
async def test_output_flood_goes_to_the_log_and_the_store_keeps_a_bounded_tail(
    make_config: MakeConfig,
) -> None:
    """A command printing 200 MB: the log file has every byte, the DB only log_tail_bytes."""
    config = make_config(log_tail_bytes=4096)
    flood = f"head -c {FLOOD_BYTES} /dev/zero | tr '\\0' 'x'; echo; echo the-end"
    async with orchestrator(config) as orch:
        report = await orch.run_tests([TestRequest(id="flood", command=flood)])
    assert report.status == SessionStatus.COMPLETE
    log_path = anyio.Path(report.completed_tests[0].attempts[0].log_path)
    assert (await log_path.stat()).st_size == FLOOD_BYTES + len("\nthe-end\n")
    async with await anyio.open_file(log_path, "rb") as fh:
        assert await fh.read(16) == b"x" * 16
    async with open_store(config.resolved_state_dir) as store:
        (attempt,) = await store.attempts(report.session_id)
    assert len(attempt.output_tail.encode()) == 4096
    assert attempt.output_tail.endswith("x\nthe-end\n")
    assert (config.resolved_state_dir / "orch.sqlite3").stat().st_size < 10_000_000
    await log_path.unlink()  # 200 MB: do not keep it in pytest's retained temp dirs


async def test_stdout_and_stderr_interleave_in_one_log(make_config: MakeConfig) -> None:
    """stdout and stderr go to the same per-attempt log, in the order written."""
    config = make_config(log_tail_bytes=10)
    command = "echo one; echo two >&2; echo three; printf 'tail-bytes'"
    async with orchestrator(config) as orch:
        report = await orch.run_tests([TestRequest(id="t", command=command)])
    log_path = anyio.Path(report.completed_tests[0].attempts[0].log_path)
    assert await log_path.read_text() == "one\ntwo\nthree\ntail-bytes"
    async with open_store(config.resolved_state_dir) as store:
        (attempt,) = await store.attempts(report.session_id)
    assert attempt.output_tail == "tail-bytes"


async def test_each_attempt_has_its_own_log(make_config: MakeConfig) -> None:
    """A retried test writes one log per attempt."""
    config = make_config()
    request = TestRequest(
        id="t", command='echo "attempt $PARALLEL_ORCH_ATTEMPT"; exit 1', retries=2
    )
    async with orchestrator(config) as orch:
        report = await orch.run_tests([request])
    logs = [Path(a.log_path) for a in report.completed_tests[0].attempts]
    assert len(set(logs)) == 3
    assert [p.read_text() for p in logs] == ["attempt 1\n", "attempt 2\n", "attempt 3\n"]
