"""Making a pooled worktree a clean checkout again: one read-only look first, repairs if needed.

The full clean is two git processes: ``checkout --force --detach SHA`` (tracked
files, the index, HEAD) and ``clean -ffdx`` (everything untracked or ignored,
sparing ``keep`` and, at the same commit, ``__pycache__/``). Most attempts
change nothing git tracks, so after a clean this module remembers what the
worktree's git side looked like (:class:`CleanState`) and, the next time,
looks before it repairs:

- The worktree's ``.git`` link, its git dir's entries (a lock, ``MERGE_HEAD``,
  a rebase folder...), ``HEAD`` (still ``SHA``, detached) and the index (its
  size and trailing checksum, or all of it when it has none) must be as left.
  Anything else (a commit, a branch, a staged change, a skip-worktree or
  assume-unchanged flag, a git killed holding ``index.lock``) takes the full
  clean. Setup's marker is ours, and not compared.
- Then one ``git ls-files --others --directory --modified --deleted`` with the
  clean's own exclude patterns: with the index as left (equal to the commit's
  tree), it lists every tracked file whose content, type or mode differs from
  the commit (git's own stat-then-content check, as ``checkout`` uses) and
  every untracked or ignored path, empty folders and nested repositories
  included, that ``git clean -ffdx`` with the same ``-e`` patterns removes.
  Nothing listed: nothing to do. Only untracked paths: ``git clean`` alone.
  A tracked file changed: the full clean.

What a clean leaves is also written to the worktree's git dir
(:data:`STATE`, beside setup's marker, likewise ours and not compared), so a
new process's first clean of a worktree an earlier one left clean is a look
too: the look, not the record, says whether anything changed since, by hand
or otherwise. A worktree whose state is unknown (no record, moved to another
commit, a git error) gets the full clean. A checkout can leave index entries
"racily clean" (written in the second the index was), which every later look
would have to hash again; the first look that finds nothing, a second later,
refreshes the index once (``git update-index --refresh``).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import anyio

from parallel_orch import gitrepo, runner, setup
from parallel_orch.exceptions import WorktreeError

#: Python's bytecode caches: spared by a clean that stays at the same commit.
BYTECODE = "__pycache__/"
#: In the worktree's git dir: the tests run there since its ``__pycache__`` folders were
#: last dropped (see :mod:`parallel_orch.worktree`).
RAN = "parallel-orch-ran"
#: In the worktree's git dir: its git side as the last clean left it (:func:`save_state`).
STATE = "parallel-orch-clean"
#: Files in the worktree's git dir that are ours, not git's: not compared.
OURS = frozenset({setup.MARKER, f".{setup.MARKER}.tmp", RAN, STATE, f".{STATE}.tmp"})
CHECKSUM = 32  # bytes at the index's end compared (SHA-256's size; SHA-1's 20 end there)


@dataclass(frozen=True, slots=True)
class CleanState:
    """The worktree's git side right after it was made clean (see the module docstring)."""

    link: bytes  # the worktree's .git file
    entries: frozenset[str]  # its git dir's names, less ours
    head: bytes
    index: bytes  # the index's size and checksum, or its whole content
    index_second: int  # the index's mtime, whole seconds
    refreshed: bool = False  # its entries were refreshed after it was written


async def clean(
    path: Path,
    sha: str,
    keep: tuple[str, ...],
    *,
    keep_bytecode: bool = False,
    last: CleanState | None = None,
) -> CleanState | None:
    """Make the worktree at ``path`` a clean detached checkout of ``sha``, sparing ``keep``.

    With ``keep_bytecode`` (the worktree stays at the commit it was at) the
    ``__pycache__`` folders survive too, so the next attempt does not compile
    the project's modules again. Python checks each ``.pyc`` against its
    source's mtime and size, and a file that ``checkout --force`` restores
    gets a new mtime. Across commits they go: a checkout and an import in
    the same second could leave a same-sized, changed file looking compiled.

    ``last`` is what the previous clean returned: with it, and nothing changed
    that the look cannot see, the look decides what to run. Returns the state
    to pass next time (None: it cannot be read; the next clean is a full one).

    Git runs as processes the event loop waits on, not in a thread: a clean
    follows every attempt, and a thread's GIL hand-offs with the loop cost
    more than the clean's own Python. Git is let finish when the caller is
    cancelled, as a thread would be: a checkout cut short leaves its index locked.

    :raises WorktreeError: if git cannot (the worktree is broken).
    """
    link = _link(path)
    spared = (*keep, BYTECODE) if keep_bytecode else keep
    cleaner = ["clean", "-ffdxq", *(arg for pattern in spared for arg in ("-e", pattern))]
    now = read_state(path, link)
    if last is not None and now is not None and _unchanged(now, last, sha):
        listed = await _look(path, spared)
        if listed is not None and not any(tag != "?" for tag, _ in listed):
            if listed:
                await _git_checked(path, cleaner)
            elif not last.refreshed and int(time.time()) > now.index_second:
                return await _refresh(path, link)
            return replace(now, refreshed=last.refreshed)
    # --force restores deleted and modified tracked files; --detach leaves any branch
    await _git_checked(path, ["checkout", "--quiet", "--force", "--detach", sha])
    await _git_checked(path, cleaner)
    return read_state(path, link)


def _link(path: Path) -> bytes:
    """The worktree's ``.git`` file.

    :raises WorktreeError: if it is missing: git would search upwards and check
        out, then clean, whatever repository encloses the pool.
    """
    try:
        with open(path / ".git", "rb") as file:
            return file.read()
    except OSError as exc:
        raise WorktreeError(f"worktree {path} is broken: its .git file is missing") from exc


def _unchanged(now: CleanState, last: CleanState, sha: str) -> bool:
    """Git's side is as the last clean left it, at ``sha`` and detached."""
    return (
        now.head == f"{sha}\n".encode()
        and now.link == last.link
        and now.entries == last.entries
        and now.head == last.head
        and now.index == last.index
    )


def read_state(path: Path, link: bytes) -> CleanState | None:
    """The git side of the worktree at ``path`` (``link``: its ``.git`` file); None: unreadable."""
    gitdir = setup.git_dir_named(path, link.decode(errors="replace"))
    if gitdir is None:
        return None
    try:
        entries = frozenset(os.listdir(gitdir)) - OURS
        with open(gitdir / "HEAD", "rb") as file:
            head = file.read()
        with open(gitdir / "index", "rb") as file:
            stat = os.fstat(file.fileno())
            tail = os.pread(file.fileno(), CHECKSUM, max(0, stat.st_size - CHECKSUM))
            if not tail.strip(b"\0"):  # written without a checksum (index.skipHash)
                tail = os.pread(file.fileno(), stat.st_size, 0)
    except OSError:
        return None
    index = stat.st_size.to_bytes(8, "little") + tail
    return CleanState(link, entries, head, index, int(stat.st_mtime))


def save_state(path: Path, state: CleanState | None) -> None:
    """Record ``state`` in the worktree's git dir for a later process (None: drop the record).

    Whole or not at all (a rename). A record that cannot be written costs the
    next process a full clean, nothing more.
    """
    gitdir = setup.git_dir(path)
    if gitdir is None:
        return
    try:
        if state is None:
            (gitdir / STATE).unlink(missing_ok=True)
            return
        tmp = gitdir / f".{STATE}.tmp"
        tmp.write_text(json.dumps(_as_json(state)), encoding="ascii")
        os.replace(tmp, gitdir / STATE)
    except OSError:
        return


def load_state(path: Path) -> CleanState | None:
    """What :func:`save_state` recorded for the worktree at ``path``; None: no usable record.

    Only the next clean's look trusts it, and only as far as it trusts a state
    kept in memory: the record says what the git side was, the look what it is.
    """
    gitdir = setup.git_dir(path)
    if gitdir is None:
        return None
    try:
        data = json.loads((gitdir / STATE).read_text(encoding="ascii"))
        state = CleanState(
            link=bytes.fromhex(data["link"]),
            entries=frozenset(map(str, data["entries"])),
            head=bytes.fromhex(data["head"]),
            index=bytes.fromhex(data["index"]),
            index_second=int(data["index_second"]),
            refreshed=bool(data["refreshed"]),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return state


def _as_json(state: CleanState) -> dict[str, object]:
    return {
        "link": state.link.hex(),
        "entries": sorted(state.entries),
        "head": state.head.hex(),
        "index": state.index.hex(),
        "index_second": state.index_second,
        "refreshed": state.refreshed,
    }


async def _look(path: Path, spared: Sequence[str]) -> list[tuple[str, str]] | None:
    """What ``ls-files`` lists as changed (``C``, ``R``) or untracked (``?``); None if it failed."""
    excludes = [arg for pattern in spared for arg in ("-x", pattern)]
    args = ["ls-files", "-z", "-t", "--others", "--directory", "--modified", "--deleted"]
    try:
        code, out, _ = await _git(path, [*args, *excludes], stdout=True)
    except OSError:
        return None
    if code != 0:
        return None
    listed = [entry.partition(" ") for entry in out.decode(errors="replace").split("\0") if entry]
    return [(tag, name) for tag, _, name in listed]


async def _refresh(path: Path, link: bytes) -> CleanState | None:
    """Refresh the index's entries (git hashes racily clean ones at every look until then)."""
    try:
        code, _, _ = await _git(path, ["update-index", "-q", "--refresh"])
    except OSError:
        return None
    state = read_state(path, link)
    return replace(state, refreshed=True) if code == 0 and state is not None else None


async def _git_checked(path: Path, args: Sequence[str]) -> None:
    """``git ARGS`` in the worktree at ``path``.

    :raises WorktreeError: if it cannot start or fails.
    """
    try:
        code, _, stderr = await _git(path, args)
    except OSError as exc:
        raise WorktreeError(f"worktree {path} is broken: {exc}") from exc
    if code != 0:
        reason = gitrepo.git_error(stderr) or f"git {args[0]} exited {code}"
        raise WorktreeError(f"worktree {path} is broken: {reason}")


async def _git(cwd: Path, args: Sequence[str], *, stdout: bool = False) -> tuple[int, bytes, str]:
    """``git ARGS`` in ``cwd``, waited for on the loop; its exit code, stdout and stderr.

    Output goes to anonymous in-memory files read once git is done: a pipe
    would need reading while git runs, or git would block on a full one.
    Shielded: git is let finish when the caller is cancelled.
    """
    err = os.memfd_create("git-stderr", os.MFD_CLOEXEC)
    out = os.memfd_create("git-stdout", os.MFD_CLOEXEC) if stdout else subprocess.DEVNULL
    try:
        with anyio.CancelScope(shield=True):
            code = await runner.wait_exit(_start_git(cwd, args, out, err))
        stderr = os.pread(err, 64 * 1024, 0).decode(errors="replace")
        return code, _read_all(out) if stdout else b"", stderr
    finally:
        os.close(err)
        if stdout:
            os.close(out)


def _read_all(fd: int) -> bytes:
    return os.pread(fd, os.fstat(fd).st_size, 0)


def _start_git(cwd: Path, args: Sequence[str], stdout: int, stderr: int) -> subprocess.Popen[bytes]:
    """``git ARGS`` started in ``cwd`` (blocks only until it execs, as asyncio's spawning does)."""
    return subprocess.Popen(
        ["git", *args],
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=stderr,
        env={**os.environ, **gitrepo.C_LOCALE},
    )
