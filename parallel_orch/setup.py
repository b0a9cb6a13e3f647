"""What a worktree is set up for, and a record of it that outlives the process.

A request's ``setup`` runs once per worktree per :data:`SetupKey`: the
command, the paths that ``keep`` spares from cleaning, and what the setup was
made from. That is the commit, unless the plan names ``setup_inputs``: then
it is the content of those files at the commit (their blob or tree ids, read
from git without a checkout), so a matrix over refs that share a lock file
sets each worktree up once.

The key is recorded in a marker in the worktree's own git dir (never in its
files, which cleaning removes), written when a setup succeeds and removed
before one starts. A new process trusts a marker only while the kept paths
are still there.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from parallel_orch.gitrepo import run_git

log = logging.getLogger(__name__)

#: (what it was made from: a commit or an inputs digest, setup command, keep paths).
SetupKey = tuple[str, str, tuple[str, ...]]
MARKER = "parallel-orch-setup.json"
INPUTS_PREFIX = "inputs:"


@dataclass(frozen=True, slots=True)
class Basis:
    """What a setup at one commit is made from, and the inputs missing there."""

    key: str  # the commit, or "inputs:<digest>"
    missing: tuple[str, ...] = ()


def basis(repo: Path, sha: str, inputs: Sequence[str]) -> Basis:
    """The commit, or the digest of ``inputs``' object ids at ``sha`` (absent ones counted).

    :raises GitFailed: if git cannot read the commit.
    """
    if not inputs:
        return Basis(sha)
    material = []
    missing = []
    for raw in inputs:
        # One path per call: given together, git lists a folder's children, not the folder,
        # when another input lies inside it (or the path ends in "/").
        path = raw.strip("/")
        found = None
        listed = run_git(repo, "ls-tree", "--full-tree", "-z", sha, "--", path)
        for entry in filter(None, listed.split("\0")):
            meta, _, name = entry.partition("\t")
            if name == path:
                found = meta.split()[2]  # a blob's id, or a folder's tree id
        if found is not None:
            material.append(f"{path} {found}")
        else:
            material.append(f"{path} absent")
            missing.append(raw)
    digest = hashlib.sha256("\n".join(material).encode()).hexdigest()[:20]
    return Basis(INPUTS_PREFIX + digest, tuple(missing))


def git_dir(worktree: Path) -> Path | None:
    """The worktree's own git dir (``.git`` is a file naming it), or None."""
    try:
        return git_dir_named(worktree, (worktree / ".git").read_text(encoding="utf-8"))
    except OSError:
        return None


def git_dir_named(worktree: Path, link: str) -> Path | None:
    """The git dir a worktree's ``.git`` file (its text: ``link``) names, or None."""
    text = link.strip()
    if not text.startswith("gitdir:"):
        return None
    found = Path(text.removeprefix("gitdir:").strip())
    return found if found.is_absolute() else (worktree / found).resolve()


def kept_paths_there(worktree: Path, keep: Sequence[str]) -> bool:
    """Every ``keep`` pattern still matches something in the worktree."""
    for pattern in keep:
        clean = pattern.strip("/")
        if not clean:
            continue
        if glob.has_magic(clean):
            if not glob.glob(clean, root_dir=worktree):
                return False
        elif not (worktree / clean).exists():
            return False
    return True


def read_marker(worktree: Path) -> SetupKey | None:
    """The key a past setup recorded here, if its kept paths are still there."""
    where = git_dir(worktree)
    if where is None:
        return None
    try:
        data = json.loads((where / MARKER).read_text(encoding="utf-8"))
        key: SetupKey = (str(data["basis"]), str(data["setup"]), tuple(map(str, data["keep"])))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return key if kept_paths_there(worktree, key[2]) else None


def write_marker(worktree: Path, key: SetupKey) -> None:
    """Record that ``worktree`` is set up for ``key`` (whole or not at all)."""
    where = git_dir(worktree)
    if where is None:
        return
    tmp = where / f".{MARKER}.tmp"
    try:
        tmp.write_text(
            json.dumps({"basis": key[0], "setup": key[1], "keep": list(key[2])}),
            encoding="utf-8",
        )
        os.replace(tmp, where / MARKER)
    except OSError as exc:  # a missing record costs a setup next time, nothing more
        log.warning("cannot record the setup of %s: %s", worktree, exc)


def clear_marker(worktree: Path) -> None:
    """Forget any recorded setup: before one starts, after one fails."""
    where = git_dir(worktree)
    if where is not None:
        with contextlib.suppress(OSError):
            (where / MARKER).unlink(missing_ok=True)
