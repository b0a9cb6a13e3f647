"""Python bytecode through us: the standard library's and the venv's are read where they are,
and the project's own survive the clean between attempts at one commit."""

from __future__ import annotations

import sys
from pathlib import Path

from parallel_orch import ParallelTestConfig, TestRequest
from tests.helpers import MakeConfig, make_git_repo, orchestrator

PY = sys.executable
WRITE_BYTECODE = {"PYTHONDONTWRITEBYTECODE": ""}  # empty: Python writes bytecode again


async def test_no_pycache_prefix_moves_where_bytecode_is_read(config: ParallelTestConfig) -> None:
    """The attempt's Python reads the standard library's own compiled modules."""
    check = (
        f"{PY} -c 'import sys, json, os; "
        "assert sys.pycache_prefix is None, sys.pycache_prefix; "
        "assert os.path.exists(json.__spec__.cached), json.__spec__.cached'"
    )
    async with orchestrator(config) as orch:
        report = await orch.run_tests([TestRequest(id="prefix", command=check)])
    assert report.tests_passed == 1, report.completed_tests[0].attempts[0].error


async def test_the_projects_bytecode_survives_cleaning_at_the_same_commit(
    tmp_path: Path, make_config: MakeConfig
) -> None:
    """The second attempt at a commit finds the first one's compiled module in place."""
    repo = make_git_repo(tmp_path / "pyrepo", {"mod.py": "VALUE = 1\n"})
    config = make_config(repo=repo.path, num_workers=1, spare_worktrees=0)
    seen = tmp_path / "seen"
    seen.mkdir()
    command = (
        f"ls __pycache__ > {seen}/$PARALLEL_ORCH_TEST_ID 2>/dev/null; "
        f"{PY} -c 'import mod' && touch junk.txt"
    )
    requests = [
        TestRequest(id=f"t{n}", command=command, env=WRITE_BYTECODE, priority=-n) for n in (1, 2)
    ]
    async with orchestrator(config) as orch:
        report = await orch.run_tests(requests)
    assert report.tests_passed == 2
    assert (seen / "t1").read_text() == ""
    assert (seen / "t2").read_text().startswith("mod.cpython-")


async def test_bytecode_goes_when_the_worktree_moves_to_another_commit(
    tmp_path: Path, make_config: MakeConfig
) -> None:
    """At another commit the worktree starts without the last commit's compiled modules."""
    repo = make_git_repo(tmp_path / "pyrepo", {"mod.py": "VALUE = 1\n"})
    first = repo.head()
    second = repo.commit({"mod.py": "VALUE = 2\n"})
    config = make_config(repo=repo.path, num_workers=1, spare_worktrees=0)
    seen = tmp_path / "seen"
    seen.mkdir()
    command = (
        f"ls __pycache__ > {seen}/$PARALLEL_ORCH_TEST_ID 2>/dev/null; "
        f"{PY} -c 'import mod; print(mod.VALUE)' > {seen}/$PARALLEL_ORCH_TEST_ID.value"
    )
    requests = [
        TestRequest(id="a", command=command, env=WRITE_BYTECODE, ref=first, priority=2),
        TestRequest(id="b", command=command, env=WRITE_BYTECODE, ref=second, priority=1),
    ]
    async with orchestrator(config) as orch:
        report = await orch.run_tests(requests)
    assert report.tests_passed == 2
    assert (seen / "b").read_text() == ""
    assert (seen / "b.value").read_text().strip() == "2"
