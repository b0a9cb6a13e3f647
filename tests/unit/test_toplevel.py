"""Finding a repo's top level: asked of git once per folder, never remembered when absent."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from parallel_orch.exceptions import RepoError
from parallel_orch.gitrepo import toplevel


def test_a_folder_made_a_repo_later_is_found(tmp_path: Path) -> None:
    """`not inside a git repository` is not remembered: after `git init` the same folder is
    found (a daemon or script may ask before the repo exists)."""
    folder = tmp_path / "later"
    (folder / "sub").mkdir(parents=True)
    with pytest.raises(RepoError, match="not inside a git repository"):
        toplevel(folder / "sub")
    subprocess.run(["git", "init", "-q", str(folder)], check=True)
    assert toplevel(folder / "sub") == folder.resolve()


def test_a_folder_is_asked_of_git_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A second question about the same folder (config, its sources, the orchestrator all ask
    before a run's first test) is answered without another git process."""
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    assert toplevel(tmp_path) == tmp_path.resolve()
    monkeypatch.setenv("PATH", str(tmp_path / "no-git-here"))  # git cannot be started now
    assert toplevel(tmp_path) == tmp_path.resolve()
    (tmp_path / "other").mkdir()
    with pytest.raises((RepoError, OSError)):
        toplevel(tmp_path / "other")  # a new folder does need git
