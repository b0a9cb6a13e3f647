"""Which idle worktree a lease takes: a clean one first, then where the test ran."""

from __future__ import annotations

from pathlib import Path

import anyio

from parallel_orch.worktree import Worktree, run_key
from parallel_orch.worktrees import WorktreePool, _Want

SHA = "a" * 40


def pool_of(*worktrees: Worktree) -> WorktreePool:
    """A pool holding ``worktrees`` (none of them on disk: only the choice is asked)."""
    pool = WorktreePool(Path("/nonexistent/repo"), Path("/nonexistent/base"), capacity=3)
    pool._worktrees.extend(worktrees)
    return pool


def test_a_clean_worktree_goes_before_one_still_scrubbed_where_the_test_ran() -> None:
    """Bytecode where a test ran is worth less than not waiting for a scrub: a shell test
    gains nothing from it, and the scrub is on its critical path."""
    ran_here = Worktree(Path("/w/ran"), SHA, lock_fd=-1, scrubbing=anyio.Event())
    ran_here.ran.add(run_key("t1"))
    clean = Worktree(Path("/w/clean"), SHA, lock_fd=-1, clean=True)
    want = _Want(SHA, (), None, None, run_key("t1"))
    assert pool_of(ran_here, clean)._pick(want) is clean


def test_of_two_clean_worktrees_the_one_where_the_test_ran_is_taken() -> None:
    """Among clean worktrees at the commit, the one holding the test's compiled modules."""
    other = Worktree(Path("/w/other"), SHA, lock_fd=-1, clean=True)
    ran_here = Worktree(Path("/w/ran"), SHA, lock_fd=-1, clean=True)
    ran_here.ran.add(run_key("t1"))
    want = _Want(SHA, (), None, None, run_key("t1"))
    assert pool_of(other, ran_here)._pick(want) is ran_here
