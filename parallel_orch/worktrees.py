"""WorktreePool: warm git worktrees lent to workers, one lease at a time.

Creation, removal and prune are serialised (in this process by a lock, across
processes by ``flock`` on ``<base>/.pool.lock``) because concurrent
``git worktree add`` races on ``.git``; checkouts in different worktrees run
in parallel. Each pooled worktree is held by an ``flock`` on its own lock
file for as long as this process owns it, so two orchestrators on one repo
never share a worktree and a crashed owner's worktrees become free again.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import secrets
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import anyio
import git

from parallel_orch.exceptions import RefError, RepoError, WorktreeError

log = logging.getLogger(__name__)

LOCK_DIR = ".locks"
POOL_LOCK = ".pool.lock"
NAME_PREFIX = "wt-"


@dataclass(eq=False)
class Worktree:
    """One pooled worktree. ``clean`` means: untouched since it was reset to ``sha``."""

    path: Path
    sha: str | None
    lock_fd: int
    clean: bool = False
    leased: bool = False
    setup_key: tuple[str, str] | None = None  # (sha, setup) last set up here

    @property
    def name(self) -> str:
        return self.path.name


def _git_error(exc: git.GitCommandError) -> str:
    stderr = exc.stderr.strip() if isinstance(exc.stderr, str) else ""
    return stderr.removeprefix("stderr: ").strip().strip("'").strip() or str(exc)


def _try_flock(path: Path) -> int | None:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _release_flock(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)  # closing drops the flock


class WorktreePool:
    """Lends clean worktrees at a wanted commit; see the module docstring."""

    def __init__(self, repo: Path, base_dir: Path, capacity: int) -> None:
        self.repo = repo
        self.base_dir = base_dir
        self.capacity = capacity
        self._worktrees: list[Worktree] = []
        self._creating = 0
        self._admin = anyio.Lock()  # add / remove / prune, in this process
        self._changed = anyio.Condition()
        self._git = git.Git(str(repo))

    # -- repo facts ---------------------------------------------------------

    @staticmethod
    def check_repo(repo: Path) -> Path:
        """The repo's top level.

        :raises RepoError: if ``repo`` is not a git repository or has no commits.
        """
        try:
            g = git.Git(str(repo))
            top = Path(g.rev_parse("--show-toplevel"))
        except (git.GitCommandError, git.NoSuchPathError, OSError):
            raise RepoError(
                f"{repo} is not a git repository; run inside one or pass --repo PATH"
            ) from None
        try:
            g.rev_parse("--verify", "--quiet", "HEAD^{commit}")
        except git.GitCommandError:
            raise RepoError(f"{top} has no commits yet; commit something first") from None
        return top

    def resolve_refs(self, refs: Sequence[str]) -> dict[str, str | RefError]:
        """Resolve each distinct ref to a commit SHA (or the git error), in one git call."""
        unique = list(dict.fromkeys(refs))
        out: dict[str, str | RefError] = {}
        if not unique:
            return out
        try:
            shas = self._git.rev_parse(*[f"{r}^{{commit}}" for r in unique]).split()
        except git.GitCommandError:
            shas = []
        if len(shas) == len(unique):
            return dict(zip(unique, shas, strict=True))
        for ref in unique:  # at least one is bad: resolve one by one for exact messages
            try:
                out[ref] = self._git.rev_parse("--verify", "--end-of-options", f"{ref}^{{commit}}")
            except git.GitCommandError as exc:
                out[ref] = RefError(f"ref {ref!r} does not resolve to a commit: {_git_error(exc)}")
        return out

    # -- lifecycle ----------------------------------------------------------

    @contextmanager
    def _pool_flock(self) -> Iterator[None]:
        fd = os.open(self.base_dir / POOL_LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    async def open(self) -> None:
        """Reconcile with ``git worktree list``: prune stale entries, adopt or remove orphans."""
        try:
            (self.base_dir / LOCK_DIR).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise WorktreeError(
                f"cannot create worktree dir {self.base_dir}: {exc.strerror}"
            ) from exc
        async with self._admin:
            await anyio.to_thread.run_sync(self._reconcile)

    def _registered(self) -> dict[Path, dict[str, str]]:
        entries: dict[Path, dict[str, str]] = {}
        current: dict[str, str] = {}
        for line in [*self._git.worktree("list", "--porcelain").splitlines(), ""]:
            if not line:
                if "worktree" in current:
                    entries[Path(current["worktree"])] = current
                current = {}
                continue
            key, _, value = line.partition(" ")
            current[key] = value
        return entries

    def _is_pooled(self, path: Path) -> bool:
        return path.parent == self.base_dir and path.name.startswith(NAME_PREFIX)

    def _reconcile(self) -> None:
        with self._pool_flock():
            for path, entry in self._registered().items():
                # A preserved worktree the user deleted after inspecting it: prune skips
                # locked entries, so unlock it first or it stays registered for ever.
                if self._is_pooled(path) and "locked" in entry and not path.exists():
                    try:
                        self._git.worktree("unlock", str(path))
                    except git.GitCommandError as exc:
                        log.warning("cannot unlock vanished worktree %s: %s", path, _git_error(exc))
            self._git.worktree("prune")
            registered = self._registered()
            for path, entry in registered.items():
                if not self._is_pooled(path):
                    continue
                if "locked" in entry:
                    continue  # preserved for inspection
                fd = _try_flock(self.base_dir / LOCK_DIR / f"{path.name}.lock")
                if fd is None:
                    continue  # another live orchestrator owns it
                if len(self._worktrees) >= self.capacity:
                    _release_flock(fd)
                    continue
                self._worktrees.append(Worktree(path=path, sha=entry.get("HEAD"), lock_fd=fd))
            for child in self.base_dir.iterdir():
                if not child.name.startswith(NAME_PREFIX) or child in registered:
                    continue
                fd = _try_flock(self.base_dir / LOCK_DIR / f"{child.name}.lock")
                if fd is None:
                    continue
                log.info("removing orphan worktree directory %s", child)
                shutil.rmtree(child, ignore_errors=True)
                (self.base_dir / LOCK_DIR / f"{child.name}.lock").unlink(missing_ok=True)
                _release_flock(fd)

    async def close(self, *, remove: bool) -> None:
        """Give up every worktree; remove them from disk and git when ``remove``."""
        worktrees, self._worktrees = self._worktrees, []
        if remove:
            async with self._admin:
                await anyio.to_thread.run_sync(self._remove_all, worktrees)
        for wt in worktrees:
            _release_flock(wt.lock_fd)

    def _remove_all(self, worktrees: list[Worktree]) -> None:
        with self._pool_flock():
            for wt in worktrees:
                self._remove_one(wt)
            self._git.worktree("prune")

    def _remove_one(self, wt: Worktree) -> None:
        try:
            self._git.worktree("remove", "--force", "--force", str(wt.path))
        except git.GitCommandError:
            shutil.rmtree(wt.path, ignore_errors=True)
        (self.base_dir / LOCK_DIR / f"{wt.name}.lock").unlink(missing_ok=True)

    # -- leasing ------------------------------------------------------------

    def status(self) -> dict[str, int]:
        leased = sum(wt.leased for wt in self._worktrees)
        return {"worktrees": len(self._worktrees), "leased": leased, "capacity": self.capacity}

    @property
    def worktrees(self) -> list[Worktree]:
        return list(self._worktrees)

    async def lease(
        self, sha: str, *, keep: Sequence[str] = (), avoid: str | None = None
    ) -> Worktree:
        """A clean worktree checked out (detached) at ``sha``, for this caller alone.

        Prefers a worktree already clean at ``sha``, then one at ``sha``, then
        any idle one other than ``avoid``; creates one while under capacity.

        :raises WorktreeError: if no worktree can be made ready.
        """
        async with self._changed:
            while True:
                room = len(self._worktrees) + self._creating < self.capacity
                wt = self._pick(sha, avoid)
                # a retry takes the worktree it failed in only when no other can be had
                if wt is not None and (wt.name != avoid or not room):
                    wt.leased = True
                    break
                if room:
                    self._creating += 1
                    wt = None
                    break
                await self._changed.wait()
        if wt is None:
            try:
                wt = await self._create(sha)
            finally:
                async with self._changed:
                    self._creating -= 1
            wt.leased = True
            async with self._changed:
                self._worktrees.append(wt)
            return wt
        try:
            await anyio.to_thread.run_sync(self._prepare, wt, sha, tuple(keep))
        except WorktreeError:
            await self._replace(wt, sha)
        return wt

    def _pick(self, sha: str, avoid: str | None) -> Worktree | None:
        idle = [wt for wt in self._worktrees if not wt.leased]
        if not idle:
            return None

        def rank(wt: Worktree) -> tuple[bool, bool, bool]:
            return (wt.name == avoid, wt.sha != sha, not wt.clean)

        return min(idle, key=rank)

    def _prepare(self, wt: Worktree, sha: str, keep: tuple[str, ...]) -> None:
        if wt.clean and wt.sha == sha:
            return
        if not (wt.path / ".git").is_file():
            # Without its link file git would search upwards and check out, then clean,
            # whatever repository encloses the pool.
            raise WorktreeError(f"worktree {wt.path} is broken: its .git file is missing")
        g = git.Git(str(wt.path))
        excludes = [arg for pattern in keep for arg in ("-e", pattern)]
        try:
            # --force restores deleted and modified tracked files; --detach leaves any branch
            g.checkout("--quiet", "--force", "--detach", sha)
            g.clean("-ffdxq", *excludes)
        except (git.GitCommandError, git.NoSuchPathError, OSError) as exc:
            msg = _git_error(exc) if isinstance(exc, git.GitCommandError) else str(exc)
            raise WorktreeError(f"worktree {wt.path} is broken: {msg}") from exc
        wt.sha, wt.clean = sha, True
        if not keep:
            wt.setup_key = None  # nothing kept: whatever setup made is gone, run it again

    async def _replace(self, wt: Worktree, sha: str) -> None:
        """Remove a worktree git cannot repair and add a fresh one at the same path."""
        log.warning("replacing broken worktree %s", wt.path)
        async with self._admin:
            await anyio.to_thread.run_sync(self._readd, wt, sha)

    def _readd(self, wt: Worktree, sha: str) -> None:
        with self._pool_flock():
            try:
                self._git.worktree("remove", "--force", "--force", str(wt.path))
            except git.GitCommandError:
                shutil.rmtree(wt.path, ignore_errors=True)
                self._git.worktree("prune")
            self._add(wt.path, sha)
        wt.sha, wt.clean, wt.setup_key = sha, True, None

    def _add(self, path: Path, sha: str) -> None:
        try:
            self._git.worktree("add", "--quiet", "--detach", "--force", str(path), sha)
        except git.GitCommandError as exc:
            raise WorktreeError(f"git worktree add {path} failed: {_git_error(exc)}") from exc

    async def _create(self, sha: str) -> Worktree:
        path = self.base_dir / f"{NAME_PREFIX}{secrets.token_hex(4)}"
        fd = _try_flock(self.base_dir / LOCK_DIR / f"{path.name}.lock")
        if fd is None:  # astronomically unlikely name clash
            raise WorktreeError(f"worktree name {path.name} is taken")

        def add() -> None:
            with self._pool_flock():
                self._add(path, sha)

        try:
            async with self._admin:
                await anyio.to_thread.run_sync(add)
        except BaseException:
            _release_flock(fd)
            raise
        return Worktree(path=path, sha=sha, lock_fd=fd, clean=True)

    async def release(self, wt: Worktree, *, preserve_reason: str | None = None) -> None:
        """Return a leased worktree; it is cleaned at its next lease.

        With ``preserve_reason`` the worktree is locked in git, left on disk for
        inspection and dropped from the pool; a fresh one will take its place.
        """
        if preserve_reason is not None:

            def lock() -> None:
                try:
                    self._git.worktree("lock", "--reason", preserve_reason, str(wt.path))
                except git.GitCommandError as exc:
                    log.warning("cannot lock preserved worktree %s: %s", wt.path, _git_error(exc))

            await anyio.to_thread.run_sync(lock)
            _release_flock(wt.lock_fd)
            async with self._changed:
                self._worktrees.remove(wt)
                self._changed.notify_all()
            return
        async with self._changed:
            wt.leased = False
            wt.clean = False
            self._changed.notify_all()


def validate_worktree_dir(repo: Path, base_dir: Path) -> None:
    """Worktrees must live outside the repo's working tree.

    :raises RepoError: if ``base_dir`` is inside ``repo``.
    """
    if base_dir == repo or repo in base_dir.parents:
        raise RepoError(
            f"worktree dir {base_dir} is inside the repo {repo}; choose a path outside it"
        )
