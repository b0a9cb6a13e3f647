"""Processes that leave the attempt's group (setsid) are found, killed and reported leaky."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import pytest

from parallel_orch import ParallelTestConfig, PlanError, TestRequest, load_plans
from parallel_orch.runner import command_argv, run_process
from tests.helpers import orchestrator, process_alive, wait_exited


def escaping(pid_file: Path) -> str:
    """A command that starts a sleeper in a session (and group) of its own, waits until it
    is there, then passes."""
    path = shlex.quote(str(pid_file))
    return (
        f"setsid sh -c 'echo $$ > {path}.tmp && mv {path}.tmp {path} && exec sleep 300' & "
        f"until [ -s {path} ]; do sleep 0.01; done"
    )


async def test_the_runner_kills_what_left_the_group_if_it_carries_the_marker(
    tmp_path: Path,
) -> None:
    """A setsid'd child with the attempt's marker is killed and reported; one without is not."""
    marked, unmarked = tmp_path / "marked", tmp_path / "unmarked"
    env = {**os.environ, "PARALLEL_ORCH_TEST_ID": "t", "PARALLEL_ORCH_ATTEMPT": "1"}
    with (tmp_path / "log").open("a+b") as log:
        outcome = await run_process(
            command_argv(escaping(marked)),
            cwd=tmp_path,
            env=env,
            timeout_seconds=30,
            grace_seconds=1,
            log=log,
            marker=[b"PARALLEL_ORCH_TEST_ID=t", b"PARALLEL_ORCH_ATTEMPT=1"],
        )
        other = await run_process(
            command_argv(escaping(unmarked)),
            cwd=tmp_path,
            env=dict(os.environ),
            timeout_seconds=30,
            grace_seconds=1,
            log=log,
            marker=[b"PARALLEL_ORCH_TEST_ID=t", b"PARALLEL_ORCH_ATTEMPT=1"],
        )
    leaked = int(marked.read_text())
    assert outcome.leaked == (leaked,)
    await wait_exited(leaked)
    survivor = int(unmarked.read_text())
    try:
        assert other.leaked == () and process_alive(survivor)
    finally:
        os.kill(survivor, 9)
    assert "killed 1 leaked process(es)" in (tmp_path / "log").read_text()


@pytest.mark.parametrize("policy", ["warn", "fail"])
async def test_an_attempt_that_leaves_a_process_running_is_leaky_in_the_report(
    config: ParallelTestConfig, tmp_path: Path, policy: str
) -> None:
    """The escaped process is killed; the report marks the test leaky; leak='fail' fails it."""
    pid_file = tmp_path / "pid"
    request = TestRequest(id="leaks", command=escaping(pid_file), leak=policy)  # type: ignore[arg-type]
    async with orchestrator(config) as orch:
        report = await orch.run_tests([request])
    (result,) = report.completed_tests
    await wait_exited(int(pid_file.read_text()))
    assert result.leaky and result.attempts[-1].leaked == 1 and report.tests_leaky == 1
    if policy == "warn":
        assert result.status == "passed" and result.error is None
    else:
        assert result.status == "failed"
        assert result.error is not None and "left 1 process(es) running" in result.error


def test_leak_in_a_plan_takes_warn_or_fail(tmp_path: Path) -> None:
    """`leak = "fail"` reaches the request; any other value is a plan error."""
    plan = tmp_path / "p.toml"
    plan.write_text('[defaults]\nleak = "fail"\n[[test]]\nid = "a"\nrun = "true"\n')
    (request,) = load_plans([plan])
    assert request.leak == "fail"
    plan.write_text('[[test]]\nid = "a"\nrun = "true"\nleak = "ignore"\n')
    with pytest.raises(PlanError, match="leak"):
        load_plans([plan])
