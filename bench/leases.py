"""Warm leases against a fresh ``git worktree add``.

A generated repo of 20,000 files with 11 commits: the first holds the tree,
each later one changes a few files. We time, with the pool API directly:

- ``same``: lease + release of a pooled worktree at the commit it already
  holds (the pool still checks it out and cleans it: it cannot know what the
  last attempt did to it);
- ``nearby``: lease + release at a commit 10 commits away, alternating
  between the two commits so every lease moves the worktree;
- ``fresh``: ``git worktree add --detach`` + ``git worktree remove --force``,
  what a runner without a pool pays per attempt.

Targets: fresh / same >= 10, fresh / nearby >= 3.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import anyio

from bench.common import (
    Figure,
    bench_main,
    commit_all,
    fmt_ms,
    fresh_dir,
    git,
    init_repo,
    median,
    note,
)
from parallel_orch.worktrees import WorktreePool

DISTANCE = 10  # commits between the two leased commits
FILES_PER_COMMIT = 5
TARGET_SAME = 10.0
TARGET_NEARBY = 3.0


def make_history(repo: Path, files: int) -> list[str]:
    """Commits after the first, each rewriting a few files spread over the tree; all SHAs."""
    shas = [git(repo, "rev-parse", "HEAD")]
    for number in range(1, DISTANCE + 1):
        for k in range(FILES_PER_COMMIT):
            index = (number * 997 + k * 3_989) % files
            path = repo / "src" / f"pkg{index // 100:03d}" / f"f{index:05d}.txt"
            path.write_text(f"file {index}, changed by commit {number}\n")
        shas.append(commit_all(repo, f"change {FILES_PER_COMMIT} files ({number})"))
    return shas


async def time_leases(
    repo: Path, base: Path, near: str, far: str, reps: int
) -> tuple[list[float], list[float]]:
    """Seconds per lease+release at the held commit, and at a commit ``DISTANCE`` away."""
    pool = WorktreePool(repo, base, capacity=1)
    await pool.open()
    try:
        await pool.release(await pool.lease(near))  # creates the worktree, untimed
        # Writing 20,000 files leaves the kernel flushing them for seconds, which slows
        # every stat meanwhile: let it finish before timing, as for the fresh worktrees.
        os.sync()
        same: list[float] = []
        for _ in range(reps):
            started = time.perf_counter()
            await pool.release(await pool.lease(near))
            same.append(time.perf_counter() - started)
        nearby: list[float] = []
        for index in range(reps * 2):
            target = far if index % 2 == 0 else near
            started = time.perf_counter()
            await pool.release(await pool.lease(target))
            nearby.append(time.perf_counter() - started)
    finally:
        await pool.close(remove=True)
    return same, nearby


def time_fresh(repo: Path, base: Path, sha: str, reps: int) -> tuple[list[float], list[float]]:
    """Seconds per ``git worktree add``, and per add + remove."""
    adds: list[float] = []
    totals: list[float] = []
    for index in range(reps):
        path = base / f"fresh-{index}"
        os.sync()  # the previous one's writeback is not this one's cost
        started = time.perf_counter()
        subprocess.run(
            ["git", "-C", str(repo), "worktree", "add", "-q", "--detach", str(path), sha],
            check=True,
        )
        added = time.perf_counter()
        subprocess.run(
            ["git", "-C", str(repo), "worktree", "remove", "--force", str(path)], check=True
        )
        adds.append(added - started)
        totals.append(time.perf_counter() - started)
    return adds, totals


def run(quick: bool) -> list[Figure]:
    # A fresh 20,000-file worktree takes seconds to write: fewer of those than of leases.
    files, reps, fresh_reps = (5_000, 3, 2) if quick else (20_000, 7, 3)
    work = fresh_dir("leases")
    repo = work / "repo"
    init_repo(repo, files)
    shas = make_history(repo, files)
    near, far = shas[0], shas[DISTANCE]
    note(f"repo: {files} files, {len(shas)} commits; {FILES_PER_COMMIT} files change per commit")
    base = work / "pool"
    same, nearby = anyio.run(time_leases, repo, base, near, far, reps)
    adds, fresh = time_fresh(repo, work / "fresh", near, fresh_reps)
    note(f"lease+release, same commit     : {fmt_ms(same)}")
    note(f"lease+release, {DISTANCE} commits away : {fmt_ms(nearby)}")
    note(f"git worktree add               : {fmt_ms(adds)}")
    note(f"git worktree add + remove      : {fmt_ms(fresh)}")
    same_ratio = median(fresh) / median(same)
    nearby_ratio = median(fresh) / median(nearby)
    note(
        f"against add alone: same {median(adds) / median(same):.1f}x, "
        f"nearby {median(adds) / median(nearby):.1f}x"
    )
    return [
        Figure(
            "leases: fresh / warm same commit",
            same_ratio,
            target=f">= {TARGET_SAME:g}",
            met=same_ratio >= TARGET_SAME,
        ),
        Figure(
            f"leases: fresh / warm {DISTANCE} commits away",
            nearby_ratio,
            target=f">= {TARGET_NEARBY:g}",
            met=nearby_ratio >= TARGET_NEARBY,
        ),
    ]


def main(argv: Sequence[str] | None = None) -> None:
    bench_main("warm leases vs git worktree add", run, argv)


if __name__ == "__main__":
    main()
