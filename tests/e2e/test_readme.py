"""The README's Python examples run as written, in a repo shaped as they expect."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.cli import PROJECT_ROOT, cli_argv, cli_env
from tests.helpers import GitRepo

PLAN = '[[test]]\nid = "all"\nrun = "true"\n[[test]]\nid = "again"\nrun = ["true"]\n'


def readme_examples() -> list[str]:
    text = (PROJECT_ROOT / "README.md").read_text()
    return re.findall(r"```python\n(.*?)```", text, re.DOTALL)


@pytest.fixture
def readme_repo(repo: GitRepo) -> GitRepo:
    """A repo with plans/unit.toml committed, as the README's examples assume."""
    repo.commit({"plans/unit/suite.toml": PLAN}, "plans")
    return repo


def run_example(code: str, repo: GitRepo, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "example.py"
    script.write_text(code)
    return subprocess.run(
        [sys.executable, str(script)],
        cwd=repo.path,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


def test_readme_has_the_three_python_examples() -> None:
    """The README shows async with, events() and the daemon client."""
    examples = readme_examples()
    assert len(examples) == 3
    assert "async with ParallelTestOrchestrator" in examples[0]
    assert "orch.events()" in examples[1]
    assert "DaemonClient" in examples[2]


@pytest.mark.slow
@pytest.mark.parametrize("index", [0, 1])
def test_readme_orchestrator_examples_run(readme_repo: GitRepo, tmp_path: Path, index: int) -> None:
    """`python script.py` with the README's orchestrator examples exits 0 and reports."""
    result = run_example(readme_examples()[index], readme_repo, tmp_path)
    assert result.returncode == 0, result.stderr
    assert ("complete" if index == 0 else "session.finished") in result.stdout


@pytest.mark.slow
def test_readme_client_example_runs_against_a_daemon(readme_repo: GitRepo, tmp_path: Path) -> None:
    """The README's DaemonClient example submits, watches and reports through a real daemon."""
    with subprocess.Popen(
        cli_argv("daemon", "-j", "2"),
        cwd=readme_repo.path,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as daemon:
        try:
            assert daemon.stdout is not None
            assert daemon.stdout.readline().strip().endswith(".sock")  # listening
            result = run_example(readme_examples()[2], readme_repo, tmp_path)
            assert result.returncode == 0, result.stderr
            assert result.stdout.splitlines()[-1] == "complete"
        finally:
            daemon.terminate()
            daemon.wait(timeout=60)
