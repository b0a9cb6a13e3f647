"""A worktree's setup is remembered across runs and keyed on what it depends on."""

from __future__ import annotations

from pathlib import Path

import anyio

from parallel_orch import ParallelTestConfig, TestRequest
from tests.helpers import GitRepo, MakeConfig, orchestrator


def setup_counting(counter: Path) -> str:
    """A setup that makes .venv/ready and counts its runs outside the worktree."""
    return f"echo x >> {counter} && mkdir -p .venv && touch .venv/ready && sleep 0.2"


def one_worker(make_config: MakeConfig) -> ParallelTestConfig:
    return make_config(num_workers=1, spare_worktrees=0)


def runs(counter: Path) -> int:
    return len(counter.read_text().splitlines()) if counter.exists() else 0


async def test_a_second_run_on_a_warm_pool_runs_no_setup(
    make_config: MakeConfig, outside: Path
) -> None:
    """A new orchestrator (a new `run`) trusts the first one's setup while .venv/ is there."""
    counter = outside / "setups"
    request = TestRequest(
        id="t", command="test -f .venv/ready", setup=setup_counting(counter), keep=(".venv/",)
    )
    for _ in range(2):
        async with orchestrator(one_worker(make_config)) as orch:
            report = await orch.run_tests([request])
        assert report.tests_passed == 1
    assert runs(counter) == 1


async def test_setup_runs_again_when_its_kept_paths_are_gone(
    make_config: MakeConfig, outside: Path
) -> None:
    """A recorded setup whose .venv/ was removed is not trusted: it runs again."""
    counter = outside / "setups"
    request = TestRequest(
        id="t", command="test -f .venv/ready", setup=setup_counting(counter), keep=(".venv/",)
    )
    config = one_worker(make_config)
    async with orchestrator(config) as orch:
        await orch.run_tests([request])
    for venv in config.resolved_worktree_dir.glob("*/.venv"):
        (venv / "ready").unlink()
        venv.rmdir()
    async with orchestrator(config) as orch:
        report = await orch.run_tests([request])
    assert report.tests_passed == 1
    assert runs(counter) == 2


async def test_setup_inputs_key_the_setup_on_file_content_not_the_commit(
    repo: GitRepo, make_config: MakeConfig, outside: Path
) -> None:
    """Refs sharing a lock file set a worktree up once; a changed lock file sets it up again."""
    repo.commit({"requirements.lock": "a==1\n"}, "lock")
    first = repo.head()
    second = repo.commit({"src.py": "x = 2\n"}, "code only")
    third = repo.commit({"requirements.lock": "a==2\n"}, "new lock")
    counter = outside / "setups"
    requests = [
        TestRequest(
            id=f"t{n}",
            command="test -f .venv/ready",
            ref=ref,
            setup=setup_counting(counter),
            setup_inputs=("requirements.lock", "pyproject.toml"),
            keep=(".venv/",),
            priority=-n,
        )
        for n, ref in enumerate([first, second, third])
    ]
    async with orchestrator(one_worker(make_config)) as orch:
        report = await orch.run_tests(requests)
    assert report.tests_passed == 3
    assert runs(counter) == 2  # first and second share the lock file; third does not


async def test_a_missing_setup_input_counts_as_absent_and_says_so(
    config: ParallelTestConfig, outside: Path
) -> None:
    """A setup_inputs path absent at the commit: keyed as absent, named in the log."""
    request = TestRequest(
        id="t", command="true", setup="true", setup_inputs=("no-such.lock",), keep=(".venv/",)
    )
    async with orchestrator(config) as orch:
        report = await orch.run_tests([request])
    (test,) = report.completed_tests
    assert test.status == "passed"
    log = await anyio.Path(test.attempts[0].log_path).read_text()
    assert "setup_inputs: no-such.lock does not exist at commit" in log


async def test_setup_time_is_its_own_phase(config: ParallelTestConfig) -> None:
    """The setup's seconds are recorded apart and not counted in the test's duration."""
    request = TestRequest(id="t", command="true", setup="sleep 0.5", keep=(".venv/",))
    async with orchestrator(config) as orch:
        report = await orch.run_tests([request])
    (attempt,) = report.completed_tests[0].attempts
    assert attempt.setup_seconds is not None and attempt.setup_seconds >= 0.5
    assert attempt.duration_seconds is not None and attempt.duration_seconds < 0.5


async def test_a_folder_input_keys_on_its_content_however_it_is_spelled(
    repo: GitRepo, make_config: MakeConfig, outside: Path
) -> None:
    """`src/` (or `src` beside a file inside it) changes the key when a file in it changes."""
    repo.commit({"src/a.py": "x = 1\n", "src/sub/b.py": "y = 1\n"}, "src")
    first = repo.head()
    second = repo.commit({"src/a.py": "x = 2\n"}, "change inside src")
    counter = outside / "setups"
    requests = [
        TestRequest(
            id=f"t{n}",
            command="test -f .venv/ready",
            ref=ref,
            setup=setup_counting(counter),
            setup_inputs=("src/", "src/sub/b.py"),
            keep=(".venv/",),
            priority=-n,
        )
        for n, ref in enumerate([first, second])
    ]
    async with orchestrator(one_worker(make_config)) as orch:
        report = await orch.run_tests(requests)
    assert report.tests_passed == 2
    assert runs(counter) == 2  # src/a.py changed: the second commit needs its own setup
    log = await anyio.Path(report.completed_tests[0].attempts[0].log_path).read_text()
    assert "does not exist" not in log


def test_a_dotted_input_keys_on_the_file_it_names(repo: GitRepo) -> None:
    """`./requirements.lock` keys on the lock file's content: found, and a change to the
    file changes the key (it was keyed as absent, so a new lock never set up again)."""
    from parallel_orch import setup

    repo.commit({"requirements.lock": "a==1\n"}, "lock")
    first = repo.head()
    repo.commit({"requirements.lock": "a==2\n"}, "bump")
    (inputs,) = {
        TestRequest(id="t", command="true", setup="make", setup_inputs=(spelled,)).setup_inputs
        for spelled in ("./requirements.lock", "requirements.lock", ".//requirements.lock")
    }
    before = setup.basis(repo.path, first, inputs)
    after = setup.basis(repo.path, repo.head(), inputs)
    assert before.missing == after.missing == ()
    assert before.key != after.key
