"""The clean between attempts: looking first and repairing only what changed leaves exactly
what the full checkout + clean leaves, whatever the test did to its worktree."""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
from pathlib import Path

import anyio
import pytest

from parallel_orch.exceptions import WorktreeError
from parallel_orch.scrub import OURS, RAN, STATE, CleanState, clean
from parallel_orch.worktrees import WorktreePool
from tests.helpers import GitRepo, git

KEEP = ("cache/", "*.md")  # the second also matches a tracked file, README.md

#: What a test may do to its worktree, as shell run there. ``$GD``: its git dir.
TRASH = {
    "nothing": "true",
    "untracked file": "echo junk > junk.txt",
    "untracked in a tracked folder": "echo junk > src/junk.py",
    "ignored file and folder": "echo log > debug.log && mkdir -p build && echo o > build/a.o",
    "empty folder": "mkdir empty",
    "nested empty folders": "mkdir -p a/b/c",
    "nested repository": "mkdir nested && git -C nested init -q && touch nested/f",
    "kept and bytecode": "mkdir -p cache src/__pycache__ && touch cache/x src/__pycache__/m.pyc",
    "bytecode in a new folder": "mkdir -p new/__pycache__ && touch new/m.py new/__pycache__/m.pyc",
    "kept by a pattern": "echo n > notes.md && mkdir -p doc && echo n > doc/a.md",
    "name with a newline": "touch 'odd\nname' 'sp ace'",
    "modified file": "echo changed >> src/app.py",
    "deleted file": "rm README.md",
    "deleted folder": "rm -r src",
    "mode change": "chmod +x README.md",
    "file to symlink": "rm README.md && ln -s src/app.py README.md",
    "file to folder": "rm README.md && mkdir README.md && touch README.md/x",
    "same size, other content": "printf '# DEMO\\n' > README.md",
    "touched, same content": "touch -d 2001-01-01 README.md",
    "commit": "echo c >> README.md && git commit -qam c",
    "branch checkout": 'git checkout -q -b "other-$(basename "$PWD")"',
    "soft reset of a commit": "echo c >> README.md && git commit -qam c && git reset -q --soft @~",
    "staged change": "echo staged >> README.md && git add README.md",
    "staged, restored": "echo s >> README.md && git add README.md && git checkout -q @ README.md",
    "staged deletion": "git rm -q --cached src/app.py",
    "intent to add": "touch new.txt && git add -N new.txt",
    "skip-worktree": "git update-index --skip-worktree README.md && echo hidden >> README.md",
    "assume-unchanged": "git update-index --assume-unchanged README.md && echo hidden >> README.md",
    "a file in the git dir": 'echo x > "$GD/MERGE_MSG"',
    "a git killed holding the index lock": 'touch "$GD/index.lock"',
    "HEAD pointing at a ref by hand": 'echo "ref: refs/heads/main" > "$GD/HEAD"',
}


def add_worktree(repo: GitRepo, path: Path, sha: str) -> Path:
    repo.git("worktree", "add", "-q", "--detach", str(path), sha)
    return path


def trash(worktree: Path, script: str) -> None:
    gitdir = git(worktree, "rev-parse", "--absolute-git-dir")
    subprocess.run(
        ["bash", "-ec", script], cwd=worktree, env={**os.environ, "GD": gitdir}, check=True
    )


def fingerprint(worktree: Path) -> dict[str, object]:
    """Everything a next attempt could see: files (type, mode, content), index, HEAD, git dir."""
    files: dict[str, tuple[str, int, str]] = {}
    for root, dirs, names in os.walk(worktree):
        for name in [*dirs, *names]:
            full = Path(root, name)
            rel = str(full.relative_to(worktree))
            if rel == ".git" or rel.startswith("nested/.git/"):
                continue
            info = full.lstat()
            if stat.S_ISLNK(info.st_mode):
                files[rel] = ("link", 0, os.readlink(full))
            elif stat.S_ISDIR(info.st_mode):
                files[rel] = ("dir", 0, "")
            else:
                digest = hashlib.sha256(full.read_bytes()).hexdigest()
                files[rel] = ("file", info.st_mode & 0o111, digest)
    gitdir = Path(git(worktree, "rev-parse", "--absolute-git-dir"))
    return {
        "files": files,
        "index": git(worktree, "ls-files", "-s", "-v"),  # modes, blobs and flags
        "status": git(worktree, "status", "--porcelain", "--ignored", "-uall"),
        "head": (gitdir / "HEAD").read_text(),
        "gitdir": sorted(os.listdir(gitdir)),
    }


async def clean_or_error(
    worktree: Path, sha: str, last: CleanState | None
) -> tuple[CleanState | None, str | None]:
    """What the clean returned, or the error it raised."""
    try:
        return await clean(worktree, sha, KEEP, keep_bytecode=True, last=last), None
    except WorktreeError as exc:
        return None, str(exc)


@pytest.mark.parametrize("script", TRASH.values(), ids=TRASH.keys())
async def test_a_clean_after_a_look_leaves_what_the_full_clean_leaves(
    repo: GitRepo, tmp_path: Path, script: str
) -> None:
    """Whatever an attempt did, the look-first clean leaves what checkout + clean would have."""
    sha = repo.head()
    looked = add_worktree(repo, tmp_path / "looked", sha)
    full = add_worktree(repo, tmp_path / "full", sha)
    state = await clean(looked, sha, KEEP, keep_bytecode=True)  # a full one: no state yet
    assert state is not None
    trash(looked, script)
    trash(full, script)

    after_look = await clean_or_error(looked, sha, state)
    after_full = await clean_or_error(full, sha, None)

    assert (after_look[1] is None) == (after_full[1] is None), (after_look, after_full)
    if after_full[1] is None:
        cleaned = fingerprint(looked)
        assert cleaned == fingerprint(full)
        # and the next look, with nothing done in between, changes nothing
        assert await clean(looked, sha, KEEP, keep_bytecode=True, last=after_look[0])
        assert fingerprint(looked) == cleaned


async def test_a_look_that_finds_nothing_runs_no_repair(repo: GitRepo, tmp_path: Path) -> None:
    """With nothing changed, the clean leaves every file alone: a restored file would be new."""
    sha = repo.head()
    worktree = add_worktree(repo, tmp_path / "wt", sha)
    state = await clean(worktree, sha, (), keep_bytecode=True)
    before = {p: p.stat().st_mtime_ns for p in worktree.rglob("*") if p.is_file()}
    os.utime(worktree / "README.md", ns=(1, 1))  # a checkout would rewrite it

    await clean(worktree, sha, (), keep_bytecode=True, last=state)

    assert (worktree / "README.md").stat().st_mtime_ns == 1
    assert all(p.stat().st_mtime_ns == t for p, t in before.items() if p.name != "README.md")


async def test_moving_to_another_commit_checks_it_out(repo: GitRepo, tmp_path: Path) -> None:
    """A state recorded at one commit does not stop the clean from moving to another."""
    first = repo.head()
    second = repo.commit({"README.md": "# second\n"})
    worktree = add_worktree(repo, tmp_path / "wt", first)
    state = await clean(worktree, first, ())

    await clean(worktree, second, (), last=state)

    assert git(worktree, "rev-parse", "HEAD") == second
    assert (worktree / "README.md").read_text() == "# second\n"


async def test_the_record_of_tests_run_there_costs_no_repair(repo: GitRepo, tmp_path: Path) -> None:
    """The pool's record of the tests run in a worktree, written in its git dir between two
    cleans, is ours: the look still finds nothing to repair."""
    sha = repo.head()
    worktree = add_worktree(repo, tmp_path / "wt", sha)
    state = await clean(worktree, sha, (), keep_bytecode=True)
    gitdir = Path(git(worktree, "rev-parse", "--absolute-git-dir"))
    (gitdir / RAN).write_text(f"{sha}\n0123456789abcdef\n")
    os.utime(worktree / "README.md", ns=(1, 1))  # a checkout would rewrite it

    await clean(worktree, sha, (), keep_bytecode=True, last=state)

    assert (worktree / "README.md").stat().st_mtime_ns == 1
    assert (gitdir / RAN).exists()


#: Hand edits made between two processes' runs: the next one's first lease must see each.
BY_HAND = (
    "nothing",
    "untracked file",
    "kept and bytecode",
    "modified file",
    "same size, other content",
    "deleted file",
    "mode change",
    "staged change",
    "commit",
    "skip-worktree",
    "a file in the git dir",
)


async def lease_in_a_new_pool(repo: GitRepo, base: Path, sha: str, *, leave: str = "") -> Path:
    """A new pool (a new process's) leases one worktree and gives it back, scrubbed after
    the shell ``leave`` ran there; the worktree's path."""
    pool = WorktreePool(repo.path, base, capacity=1)
    await pool.open()
    async with anyio.create_task_group() as tg:
        pool.work_in(tg)
        wt = await pool.lease(sha, keep=KEEP)
        if leave:
            trash(wt.path, leave)
        await pool.release(wt)
    pool.work_in(None)
    await pool.close(remove=False)
    return wt.path


async def test_a_worktree_left_clean_is_only_looked_at_by_the_next_process(
    repo: GitRepo, tmp_path: Path
) -> None:
    """The first lease in a new process of a worktree an earlier one left clean runs the look,
    not checkout + clean: what the last clean left is recorded in the worktree's git dir."""
    sha = repo.head()
    path = await lease_in_a_new_pool(repo, tmp_path / "pool", sha, leave="echo junk > junk.txt")
    gitdir = Path(git(path, "rev-parse", "--absolute-git-dir"))
    assert (gitdir / STATE).exists()
    os.utime(path / "README.md", ns=(1, 1))  # a checkout would rewrite it

    again = await lease_in_a_new_pool(repo, tmp_path / "pool", sha)

    assert again == path
    assert (path / "README.md").stat().st_mtime_ns == 1
    assert not (path / "junk.txt").exists()


async def test_a_record_that_cannot_be_read_costs_a_full_clean(
    repo: GitRepo, tmp_path: Path
) -> None:
    """A damaged record of the last clean is no record: the next process checks out again."""
    sha = repo.head()
    path = await lease_in_a_new_pool(repo, tmp_path / "pool", sha, leave="echo x >> README.md")
    gitdir = Path(git(path, "rev-parse", "--absolute-git-dir"))
    (gitdir / STATE).write_text('{"link": "not hex"')
    os.utime(path / "README.md", ns=(1, 1))

    await lease_in_a_new_pool(repo, tmp_path / "pool", sha)

    assert (path / "README.md").stat().st_mtime_ns != 1  # checked out again
    assert git(path, "status", "--porcelain", "--ignored") == ""


@pytest.mark.parametrize("edit", BY_HAND)
async def test_hand_edits_between_two_processes_are_cleaned_by_the_next(
    repo: GitRepo, tmp_path: Path, edit: str
) -> None:
    """Whatever someone did by hand to a pooled worktree between two runs, the next run's
    first lease leaves what a full checkout + clean leaves."""
    sha = repo.head()
    path = await lease_in_a_new_pool(repo, tmp_path / "pool", sha)
    reference = add_worktree(repo, tmp_path / "reference", sha)
    await clean(reference, sha, KEEP, keep_bytecode=True)
    trash(path, TRASH[edit])
    trash(reference, TRASH[edit])

    await lease_in_a_new_pool(repo, tmp_path / "pool", sha)
    await clean(reference, sha, KEEP, keep_bytecode=True)

    assert seen_by_git(path) == seen_by_git(reference)


def seen_by_git(worktree: Path) -> dict[str, object]:
    """:func:`fingerprint`, less the pool's own files in the git dir."""
    gitdir = Path(git(worktree, "rev-parse", "--absolute-git-dir"))
    return {**fingerprint(worktree), "gitdir": sorted(set(os.listdir(gitdir)) - OURS)}
