"""Faults of the machine as a user meets them: each is one line, exit 3, no traceback."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.cli import run_cli
from tests.e2e.conftest import write_plan
from tests.helpers import GitRepo


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A small tmpfs of our own, to make read-only or fill (needs mount: root, CAP_SYS_ADMIN)."""
    mount = tmp_path / "fs"
    mount.mkdir()
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({made.stderr.strip()}); needs CAP_SYS_ADMIN")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    """The single line a failed command printed on stderr."""
    assert result.returncode == 3, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    (line,) = result.stderr.splitlines()
    return line


def test_a_state_dir_on_a_read_only_file_system_says_so(repo: GitRepo, tmpfs: Path) -> None:
    """A store that cannot be written is refused at the start, saying it is read-only."""
    write_plan(repo.path, "one.toml", '[[test]]\nid = "a"\nrun = "true"\n')
    state = ["--state-dir", str(tmpfs / "state")]
    assert run_cli(["run", "plans", "-q", *state], cwd=repo.path).returncode == 0
    subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], check=True)
    line = one_line(run_cli(["run", "plans", "-q", *state], cwd=repo.path))
    assert line.startswith(f"error: store {tmpfs / 'state' / 'orch.sqlite3'} is read-only")
    assert line.endswith("make it and its folder writable, or pass --state-dir")


def test_a_full_disk_says_the_disk_is_full(repo: GitRepo, tmpfs: Path) -> None:
    """No room left for the store: 'the disk is full', not 'check permissions'."""
    write_plan(repo.path, "one.toml", '[[test]]\nid = "a"\nrun = "true"\n')
    state = ["--state-dir", str(tmpfs / "state")]
    assert run_cli(["run", "plans", "-q", *state], cwd=repo.path).returncode == 0
    fd = os.open(tmpfs / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while os.write(fd, b"\0" * 4096):
            pass
    except OSError:
        pass  # full
    finally:
        os.close(fd)
    line = one_line(run_cli(["run", "plans", "-q", *state], cwd=repo.path))
    assert "the disk is full" in line and "free some space" in line
    assert "permissions" not in line


def test_a_pool_lock_that_cannot_be_opened_names_it(repo: GitRepo, tmp_path: Path) -> None:
    """The pool's lock file taken by something else (here a folder): exit 3 naming it."""
    write_plan(repo.path, "one.toml", '[[test]]\nid = "a"\nrun = "true"\n')
    worktrees = tmp_path / "wts"
    (worktrees / ".pool.lock").mkdir(parents=True)
    result = run_cli(
        ["run", "plans", "-q", "--state-dir", str(tmp_path / "state")],
        cwd=repo.path,
        env={"PARALLEL_ORCH_WORKTREE_BASE_DIR": str(worktrees)},
    )
    line = one_line(result)
    assert line.startswith(f"error: cannot open the pool's lock file {worktrees / '.pool.lock'}")
