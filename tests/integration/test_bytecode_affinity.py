"""A test goes back to a worktree where it ran at the commit: its modules' bytecode is there."""

from __future__ import annotations

import sys
from pathlib import Path

from parallel_orch import ParallelTestConfig, SessionStatus, TestRequest
from parallel_orch.scrub import RAN
from parallel_orch.setup import git_dir
from tests.helpers import GitRepo, MakeConfig, MakeRepo, orchestrator

MODULES = {"mod_a.py": "A = 1\n", "mod_b.py": "B = 2\n", "README.md": "r\n"}
WRITE = {"PYTHONDONTWRITEBYTECODE": ""}  # empty: Python writes bytecode
DONT_WRITE = {"PYTHONDONTWRITEBYTECODE": "1"}


def pyc(name: str) -> str:
    return f"__pycache__/{name}.{sys.implementation.cache_tag}.pyc"


def importing(name: str, barrier: Path, env: dict[str, str]) -> TestRequest:
    """A test that imports ``name`` once both tests have started (so each has a worktree)."""
    wait = f"touch {barrier}/{name}; while [ $(ls {barrier} | wc -l) -lt 2 ]; do sleep 0.01; done"
    return TestRequest(id=name, command=f'{wait}; {sys.executable} -c "import {name}"', env=env)


async def run(config: ParallelTestConfig, requests: list[TestRequest]) -> dict[str, str]:
    """A new orchestrator (a new pool adopting the worktrees, as a new CLI process does)
    runs ``requests``; each test's worktree."""
    async with orchestrator(config) as orch:
        report = await orch.run_tests(requests)
    assert report.status == SessionStatus.COMPLETE, [t.error for t in report.completed_tests]
    return {t.test_id.rsplit("::", 1)[-1]: t.attempts[-1].worktree for t in report.completed_tests}


def repo_with_modules(make_repo: MakeRepo) -> GitRepo:
    return make_repo(name="mods", files=MODULES)


async def test_each_test_runs_again_where_its_module_is_compiled(
    make_repo: MakeRepo, make_config: MakeConfig, outside: Path
) -> None:
    """Two tests that imported their modules in two worktrees each find their own .pyc in the
    worktree a later run gives them, one test a run."""
    repo = repo_with_modules(make_repo)
    config = make_config(repo=repo.path)
    first = await run(
        config, [importing("mod_a", outside, WRITE), importing("mod_b", outside, WRITE)]
    )
    assert first["mod_a"] != first["mod_b"]
    assert (Path(first["mod_a"]) / pyc("mod_a")).exists()
    assert not (Path(first["mod_a"]) / pyc("mod_b")).exists()
    one_worker = make_config(repo=repo.path, num_workers=1)
    for name in ("mod_a", "mod_b"):  # without a preference both would get the same worktree
        warm = TestRequest(id=name, command=f"test -f {pyc(name)}")
        again = await run(one_worker, [warm])
        assert again[name] == first[name]


async def test_nothing_is_recorded_when_python_writes_no_bytecode(
    make_repo: MakeRepo, make_config: MakeConfig, outside: Path
) -> None:
    """With PYTHONDONTWRITEBYTECODE set the attempts compile nothing to come back to: no
    worktree records them; with it empty, each records the test it ran."""
    repo = repo_with_modules(make_repo)
    config = make_config(repo=repo.path)
    (outside / "off").mkdir()
    ran = await run(
        config,
        [importing(n, outside / "off", DONT_WRITE) for n in ("mod_a", "mod_b")],
    )
    for worktree in ran.values():
        assert record(Path(worktree)) == [], worktree
    (outside / "on").mkdir()
    ran = await run(config, [importing(n, outside / "on", WRITE) for n in ("mod_a", "mod_b")])
    assert [len(record(Path(w))) for w in ran.values()] == [2, 2]  # the commit, one test


async def test_the_record_goes_with_the_bytecode_when_the_commit_changes(
    make_repo: MakeRepo, make_config: MakeConfig, outside: Path
) -> None:
    """A worktree moved to another commit loses its __pycache__ and with it its record: the
    test it ran is no longer sent back to it."""
    repo = repo_with_modules(make_repo)
    config = make_config(repo=repo.path, num_workers=1)
    old = repo.head()
    (outside / "1").mkdir()
    (outside / "1" / "other").touch()  # one test alone passes the barrier
    ran = await run(config, [importing("mod_a", outside / "1", WRITE)])
    worktree = Path(ran["mod_a"])
    assert record(worktree)[:1] == [old]
    new = repo.commit({"mod_c.py": "C = 3\n"})
    moved = await run(config, [TestRequest(id="other", command="true", ref=new)])
    assert moved["other"] == str(worktree)  # the only worktree there is
    assert not (worktree / pyc("mod_a")).exists()
    assert record(worktree) == []


def record(worktree: Path) -> list[str]:
    """A worktree's record of the tests run there: its commit, then a line a test."""
    where = git_dir(worktree)
    assert where is not None
    path = where / RAN
    return path.read_text().splitlines() if path.exists() else []
