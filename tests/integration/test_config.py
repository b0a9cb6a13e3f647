"""ParallelTestConfig precedence: flags, then PARALLEL_ORCH_*, then pyproject, then defaults."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from parallel_orch import ParallelTestConfig, RepoError
from parallel_orch.exceptions import ConfigError
from tests.helpers import GitRepo


def write_pyproject(repo: GitRepo, body: str) -> None:
    (repo.path / "pyproject.toml").write_text(f"[tool.parallel-orch]\n{body}")


def test_defaults_come_from_the_repo_around_the_cwd(
    repo: GitRepo, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without settings, repo is the git top level of the cwd and paths derive from it."""
    (repo.path / "src").mkdir(exist_ok=True)
    monkeypatch.chdir(repo.path / "src")
    config = ParallelTestConfig()
    assert config.repo == repo.path.resolve()
    assert config.num_workers == (os.cpu_count() or 1)
    assert config.resolved_state_dir == repo.path.resolve() / ".parallel-orch"
    assert config.resolved_worktree_dir == repo.path.resolve().parent / "repo.worktrees"


def test_pyproject_then_environment_then_flags(
    repo: GitRepo, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each layer overrides the one below it, field by field."""
    write_pyproject(repo, "num_workers = 3\ndefault_timeout = 42\nmax_failures = 7\n")
    monkeypatch.chdir(repo.path)
    config = ParallelTestConfig()
    assert (config.num_workers, config.default_timeout, config.max_failures) == (3, 42.0, 7)
    monkeypatch.setenv("PARALLEL_ORCH_NUM_WORKERS", "5")
    monkeypatch.setenv("PARALLEL_ORCH_DEFAULT_TIMEOUT", "9")
    config = ParallelTestConfig()
    assert (config.num_workers, config.default_timeout, config.max_failures) == (5, 9.0, 7)
    config = ParallelTestConfig(num_workers=1)
    assert (config.num_workers, config.default_timeout, config.max_failures) == (1, 9.0, 7)


def test_pyproject_of_the_repo_given_by_flag_is_used(
    repo: GitRepo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--repo elsewhere reads that repo's pyproject, not the cwd's."""
    write_pyproject(repo, "kill_grace_seconds = 1.5\n")
    monkeypatch.chdir(tmp_path)
    assert ParallelTestConfig(repo=repo.path).kill_grace_seconds == 1.5


def test_unreadable_pyproject_is_a_config_error(
    repo: GitRepo, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A broken pyproject.toml is reported as such, naming the file."""
    (repo.path / "pyproject.toml").write_text("[tool.parallel-orch\n")
    monkeypatch.chdir(repo.path)
    with pytest.raises(ConfigError, match=r"pyproject\.toml"):
        ParallelTestConfig()


def test_outside_a_repo_without_repo_setting_raises(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Outside any git repository the default repo cannot be found: RepoError."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(RepoError, match="not inside a git repository"):
        ParallelTestConfig()
