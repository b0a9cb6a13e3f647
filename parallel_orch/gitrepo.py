"""Facts about the repository that git answers: its top level, and what refs name.

Every value a user gives (a path, a ref) reaches git after ``--end-of-options``
or as a path, never where git would read it as an option.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Sequence
from pathlib import Path

from parallel_orch.exceptions import RefError, RepoError

#: git's messages in English whatever the user's locale: they are parsed and shown as is.
C_LOCALE = {"LC_ALL": "C", "LANGUAGE": "C"}

SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")  # SHA-1 or SHA-256 object names


def _git(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            ["git", "-C", str(cwd), *args], capture_output=True, text=True, check=False
        )
    except OSError as exc:
        raise RepoError(f"cannot run git: {exc}; install git") from exc


class GitFailed(Exception):
    """A git command exited non-zero; ``stderr`` is what it said."""

    def __init__(self, argv: Sequence[str], code: int, stderr: str) -> None:
        super().__init__(f"{' '.join(argv)} exited {code}: {git_error(stderr)}")
        self.stderr = stderr


def run_git(cwd: Path, *args: str) -> str:
    """``git ARGS`` in ``cwd`` (blocks); its output, less the last newline.

    A plain ``subprocess.run``: GitPython costs ~70 ms to import and runs
    ``git version`` twice before its first command, on ``run``'s way to its
    first attempt.

    :raises GitFailed: if git exits non-zero.
    :raises OSError: if ``cwd`` is gone or git cannot be run.
    """
    argv = ["git", *args]
    done = subprocess.run(
        argv, cwd=cwd, capture_output=True, text=True, env={**os.environ, **C_LOCALE}, check=False
    )
    if done.returncode != 0:
        raise GitFailed(argv, done.returncode, done.stderr)
    return done.stdout.removesuffix("\n")


def git_error(stderr: str) -> str:
    """The useful line of git's complaint."""
    return stderr.strip().removeprefix("stderr: ").strip().strip("'").strip()


def toplevel(start: Path) -> Path:
    """The git top level that contains ``start``.

    :raises RepoError: if ``start`` is not inside a git work tree.
    """
    out = _git(start, "rev-parse", "--show-toplevel")
    if out.returncode != 0:
        raise RepoError(
            f"{start} is not inside a git repository; run from a git checkout or pass --repo"
        )
    return Path(out.stdout.strip())


def check_repo(repo: Path) -> Path:
    """The repo's top level, once it is known to have a commit.

    :raises RepoError: if ``repo`` is not a git repository or has no commits.
    """
    try:
        top = toplevel(repo) if repo.is_dir() else None
    except RepoError:
        top = None
    if top is None:
        raise RepoError(f"{repo} is not a git repository; run inside one or pass --repo PATH")
    if _git(top, "rev-parse", "--verify", "--quiet", "HEAD^{commit}").returncode != 0:
        raise RepoError(f"{top} has no commits yet; commit something first")
    return top


def resolve_refs(repo: Path, refs: Sequence[str]) -> dict[str, str | RefError]:
    """Resolve each distinct ref to a commit SHA (or the reason it does not), in one git call."""
    unique = list(dict.fromkeys(refs))
    if not unique:
        return {}
    out = _git(repo, "rev-parse", "--end-of-options", *[f"{r}^{{commit}}" for r in unique])
    # some gits echo the --end-of-options marker back: keep only what rev-parse resolved
    shas = [s for s in out.stdout.split() if s != "--end-of-options"] if out.returncode == 0 else []
    if len(shas) == len(unique) and all(SHA.fullmatch(s) for s in shas):
        return dict(zip(unique, shas, strict=True))
    resolved: dict[str, str | RefError] = {}
    for ref in unique:  # at least one is bad: resolve one by one for exact messages
        one = _git(repo, "rev-parse", "--verify", "--end-of-options", f"{ref}^{{commit}}")
        sha = one.stdout.strip()
        if one.returncode == 0 and SHA.fullmatch(sha):
            resolved[ref] = sha
        else:
            why = git_error(one.stderr) or f"exit code {one.returncode}"
            if ref.startswith("-"):
                why = "a ref never starts with '-'"
            resolved[ref] = RefError(f"ref {ref!r} does not resolve to a commit: {why}")
    return resolved


def exclude_from_status(repo: Path, path: Path) -> None:
    """Keep ``path`` out of `git status` (via ``info/exclude``) when it lives inside ``repo``."""
    try:
        rel = path.relative_to(repo)
    except ValueError:
        return
    out = _git(repo, "rev-parse", "--git-path", "info/exclude")
    if out.returncode != 0:
        raise RepoError(f"cannot find {repo}'s info/exclude: {git_error(out.stderr)}")
    exclude = Path(out.stdout.strip())
    if not exclude.is_absolute():
        exclude = repo / exclude
    line = f"/{rel.as_posix()}/"
    text = exclude.read_text() if exclude.exists() else ""
    if line not in text.splitlines():
        exclude.parent.mkdir(parents=True, exist_ok=True)
        with exclude.open("a") as fh:
            fh.write(("" if text.endswith("\n") or not text else "\n") + line + "\n")
