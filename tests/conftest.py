"""Shared fixtures: git identity, a real repo in tmp_path, a fast config."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from parallel_orch import ParallelTestConfig
from tests.helpers import GitRepo, MakeConfig, MakeRepo, make_git_repo

#: CI machines have no git identity and may have any global config: give every
#: git call (ours and the engine's) the same identity and no user config.
GIT_ENV = {
    "GIT_AUTHOR_NAME": "parallel-orch tests",
    "GIT_AUTHOR_EMAIL": "tests@parallel-orch.invalid",
    "GIT_COMMITTER_NAME": "parallel-orch tests",
    "GIT_COMMITTER_EMAIL": "tests@parallel-orch.invalid",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_TERMINAL_PROMPT": "0",
}


@pytest.fixture(autouse=True, scope="session")
def git_identity() -> Iterator[None]:
    """Every test runs with the identity and config isolation of :data:`GIT_ENV`."""
    with pytest.MonkeyPatch.context() as mp:
        for key, value in GIT_ENV.items():
            mp.setenv(key, value)
        for key in [k for k in os.environ if k.startswith("PARALLEL_ORCH_")]:
            mp.delenv(key)  # the suite may itself run under parallel-orch
        yield


@pytest.fixture
def make_repo(tmp_path: Path) -> MakeRepo:
    """Factory: ``make_repo(name="repo", files=None)`` creates a committed repo under tmp_path."""

    def make(name: str = "repo", files: Mapping[str, str] | None = None) -> GitRepo:
        return make_git_repo(tmp_path / name, files)

    return make


@pytest.fixture
def repo(make_repo: MakeRepo) -> GitRepo:
    """A repo with README.md, src/app.py and a .gitignore (build/, *.log), one commit on main."""
    return make_repo()


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A scratch dir outside repo and worktrees, for files that must outlive attempts."""
    path = tmp_path / "outside"
    path.mkdir()
    return path


@pytest.fixture
def make_config(tmp_path: Path, repo: GitRepo) -> MakeConfig:
    """Factory: a fast config for ``repo`` (2 workers, 0.5 s kill grace); overrides as kwargs."""

    def make(**overrides: Any) -> ParallelTestConfig:
        values: dict[str, Any] = {
            "repo": repo.path,
            "num_workers": 2,
            "kill_grace_seconds": 0.5,
            "state_dir": tmp_path / "state",
            "worktree_base_dir": tmp_path / "worktrees",
            "default_timeout": 60.0,
        }
        values.update(overrides)
        return ParallelTestConfig(**values)

    return make


@pytest.fixture
def config(make_config: MakeConfig) -> ParallelTestConfig:
    """The default fast config for ``repo``."""
    return make_config()
