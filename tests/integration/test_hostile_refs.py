"""Refs are values, never git options: a hostile ref is an error for its request alone."""

from __future__ import annotations

from pathlib import Path

from parallel_orch import ExecutionStatus, ParallelTestConfig, SessionStatus, TestRequest
from tests.e2e.cli import run_cli
from tests.e2e.conftest import write_plan
from tests.helpers import GitRepo, orchestrator

HOSTILE = ("--all", "-h", "--git-dir=/", "--output={out}")


async def test_refs_that_look_like_options_are_errors_and_cost_the_pool_nothing(
    config: ParallelTestConfig, repo: GitRepo, tmp_path: Path
) -> None:
    """--all, -h, --output=FILE as refs: each request ends error; the pool keeps its worktrees."""
    out = tmp_path / "written-by-git"
    refs = [ref.format(out=out) for ref in HOSTILE]
    requests = [TestRequest(id=f"t{i}", command="true", ref=ref) for i, ref in enumerate(refs)]
    requests.append(TestRequest(id="fine", command="true"))
    async with orchestrator(config) as orch:
        for _ in range(2):
            report = await orch.run_tests(requests)
            registered = len(repo.worktree_list())
            assert report.status == SessionStatus.PARTIAL_SUCCESS
            results = {r.test_id: r for r in report.completed_tests}
            assert results.pop("fine").status == ExecutionStatus.PASSED
            for result, ref in zip(results.values(), refs, strict=True):
                assert result.status == ExecutionStatus.ERROR
                assert result.error == (
                    f"ref {ref!r} does not resolve to a commit: a ref never starts with '-'"
                )
                assert result.attempts == ()  # never queued, never given a worktree
    assert not out.exists()
    assert registered == len(repo.worktree_list()) >= 2  # the main one and the pool's


def test_run_with_an_option_as_ref_says_so_in_one_line(repo: GitRepo) -> None:
    """`run --ref=--all` fails its test with a clear error and no traceback."""
    write_plan(repo.path, "one.toml", '[[test]]\nid = "a"\nrun = "true"\n')
    result = run_cli(["run", "plans", "--ref=--all"], cwd=repo.path)
    assert result.returncode == 1, result.stderr
    assert "ref '--all' does not resolve to a commit: a ref never starts with '-'" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr
