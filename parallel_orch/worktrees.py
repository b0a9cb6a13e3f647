"""WorktreePool: warm git worktrees lent to workers, one lease at a time.

Creation, removal and prune are serialised (in this process by a lock, across
processes by ``flock`` on ``<base>/.pool.lock``) because concurrent
``git worktree add`` races on ``.git``; checkouts in different worktrees run
in parallel. Each pooled worktree is held by an ``flock`` on its own lock
file for as long as this process owns it, so two orchestrators on one repo
never share a worktree and a crashed owner's worktrees become free again.

Given a task group (:meth:`WorktreePool.work_in`), the pool cleans a
released worktree in the background at once, sparing the ``keep`` paths of
the attempt that used it, and keeps spare worktrees beyond one per worker:
a worker then leases a worktree that is already clean while the one it just
gave back is scrubbed, so checkout and clean leave the attempt's critical
path. Without one, a worktree is cleaned when it is leased.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import secrets
import shutil
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import anyio
import git
from anyio.abc import TaskGroup

from parallel_orch.exceptions import RefError, RepoError, WorktreeError

log = logging.getLogger(__name__)

LOCK_DIR = ".locks"
POOL_LOCK = ".pool.lock"
NAME_PREFIX = "wt-"
SPARE_RETRY_SECONDS = 60


#: What a worktree's setup was made for: (commit, setup command, keep paths).
SetupKey = tuple[str, str, tuple[str, ...]]


@dataclass(eq=False)
class Worktree:
    """One pooled worktree.

    ``clean`` means untouched since it was made clean at ``sha``, with only the
    paths in ``kept`` spared; ``scrubbing`` is set while a background clean
    runs and fires when it ends.
    """

    path: Path
    sha: str | None
    lock_fd: int
    clean: bool = False
    kept: tuple[str, ...] = ()
    leased: bool = False
    scrubbing: anyio.Event | None = None
    setup_key: SetupKey | None = None  # last set up here for this

    @property
    def name(self) -> str:
        return self.path.name

    def ready_for(self, sha: str, keep: tuple[str, ...]) -> bool:
        """Clean at ``sha``, holding nothing beyond what ``keep`` spares."""
        return self.clean and self.scrubbing is None and self.sha == sha and self.kept in ((), keep)

    def mark_clean(self, sha: str, keep: tuple[str, ...]) -> None:
        self.sha, self.clean, self.kept = sha, True, keep
        # setup's output survives a clean only if the clean spared what setup kept
        if self.setup_key is not None and (not keep or self.setup_key[2] != keep):
            self.setup_key = None


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
        self._tg: TaskGroup | None = None  # for background scrubs and spares
        self._spare_retry_at = 0.0  # monotonic time before which no spare is attempted
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

    def work_in(self, tg: TaskGroup | None) -> None:
        """Scrub released worktrees and add spares in ``tg`` from now on (``None``: stop).

        The task group must outlive every lease and release, and be done
        before :meth:`close`.
        """
        self._tg = tg

    async def close(self, *, remove: bool) -> None:
        """Give up every worktree; remove them from disk and git when ``remove``."""
        self._tg = None
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
        self,
        sha: str,
        *,
        keep: Sequence[str] = (),
        setup: str | None = None,
        avoid: str | None = None,
    ) -> Worktree:
        """A clean worktree checked out (detached) at ``sha``, for this caller alone.

        Prefers, in order: not ``avoid``, at ``sha``, already set up for
        ``setup``, already clean; creates one while under capacity.

        :raises WorktreeError: if no worktree can be made ready.
        """
        keep = tuple(keep)
        async with self._changed:
            while True:
                room = len(self._worktrees) + self._creating < self.capacity
                wt = self._pick(sha, keep, setup, avoid)
                # a retry takes the worktree it failed in only when no other can be had
                if wt is not None and (wt.name != avoid or not room):
                    wt.leased = True
                    break
                if room:
                    self._creating += 1
                    wt = None
                    break
                await self._changed.wait()
            if wt is not None and room and not wt.ready_for(sha, keep):
                self._add_spare(sha)  # so that the next lease finds one ready
        if wt is None:
            created: Worktree | None = None
            try:
                created = await self._create(sha)
            finally:
                with anyio.CancelScope(shield=True):
                    async with self._changed:  # at once, or another lease sees room for one more
                        self._creating -= 1
                        if created is not None:
                            created.leased = True
                            self._worktrees.append(created)
                        self._changed.notify_all()
            wt = created
        try:
            if wt.scrubbing is not None:
                with anyio.CancelScope(shield=True):  # brief, and the worktree is ours now
                    await wt.scrubbing.wait()
            if not wt.ready_for(sha, keep):
                try:
                    await anyio.to_thread.run_sync(_clean, wt.path, sha, keep)
                except WorktreeError:
                    await self._replace(wt, sha)
                wt.mark_clean(sha, keep)
        except BaseException:  # cancelled or broken past repair: back to the pool, not lost
            with anyio.CancelScope(shield=True):
                async with self._changed:
                    wt.leased = False
                    wt.clean = False
                    self._changed.notify_all()
            raise
        wt.kept = keep  # what the scrub after this lease spares
        return wt

    def _pick(
        self, sha: str, keep: tuple[str, ...], setup: str | None, avoid: str | None
    ) -> Worktree | None:
        idle = [wt for wt in self._worktrees if not wt.leased]
        if not idle:
            return None

        def rank(wt: Worktree) -> tuple[bool, bool, bool, bool, bool]:
            return (
                wt.name == avoid,
                wt.sha != sha,
                setup is not None and wt.setup_key != (sha, setup, keep),
                not wt.ready_for(sha, keep),
                wt.scrubbing is None,  # of two not ready, the one being scrubbed is sooner
            )

        return min(idle, key=rank)

    def _add_spare(self, sha: str) -> None:
        """Add a worktree at ``sha`` in the background; call holding ``_changed``."""
        if self._tg is None or time.monotonic() < self._spare_retry_at:
            return
        self._creating += 1

        async def add() -> None:
            with anyio.CancelScope(shield=True):  # a half-made worktree would leak its lock
                wt: Worktree | None = None
                try:
                    wt = await self._create(sha)
                except Exception as exc:  # a spare is a nicety: never fatal
                    self._spare_retry_at = time.monotonic() + SPARE_RETRY_SECONDS
                    log.warning(
                        "cannot add a spare worktree (next try in %ds): %s",
                        SPARE_RETRY_SECONDS,
                        exc,
                    )
                finally:
                    async with self._changed:
                        self._creating -= 1
                        if wt is not None:
                            self._worktrees.append(wt)
                        self._changed.notify_all()

        try:
            self._tg.start_soon(add)
        except RuntimeError:  # the task group has ended
            self._creating -= 1

    def _scrub_soon(self, wt: Worktree) -> None:
        """Clean a released worktree in the background, sparing what its last lease kept."""
        sha, keep = wt.sha, wt.kept
        if self._tg is None or sha is None:
            return
        done = anyio.Event()

        async def scrub() -> None:
            try:
                await anyio.to_thread.run_sync(_clean, wt.path, sha, keep)
                wt.mark_clean(sha, keep)
            except WorktreeError as exc:
                log.info("%s; it is cleaned again or replaced at its next lease", exc.message)
            except Exception:  # never take the orchestrator down: the lease cleans again
                log.exception("scrubbing worktree %s failed", wt.path)
            finally:
                wt.scrubbing = None
                done.set()

        try:
            self._tg.start_soon(scrub)
        except RuntimeError:  # the task group has ended: the next lease cleans it
            return
        wt.scrubbing = done

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
        wt.setup_key = None

    def _add(self, path: Path, sha: str) -> None:
        try:
            self._git.worktree("add", "--quiet", "--detach", "--force", str(path), sha)
        except git.GitCommandError as exc:
            raise WorktreeError(f"git worktree add {path} failed: {_git_error(exc)}") from exc

    async def _create(self, sha: str) -> Worktree:
        path = self.base_dir / f"{NAME_PREFIX}{secrets.token_hex(4)}"
        try:
            fd = _try_flock(self.base_dir / LOCK_DIR / f"{path.name}.lock")
        except OSError as exc:
            raise WorktreeError(f"cannot lock new worktree {path}: {exc}") from exc
        if fd is None:  # astronomically unlikely name clash
            raise WorktreeError(f"worktree name {path.name} is taken")

        def add() -> None:
            try:
                with self._pool_flock():
                    self._add(path, sha)
            except OSError as exc:  # the pool's lock file or folder
                raise WorktreeError(f"cannot add worktree {path}: {exc}") from exc

        try:
            async with self._admin:
                await anyio.to_thread.run_sync(add)
        except BaseException:
            _release_flock(fd)
            raise
        return Worktree(path=path, sha=sha, lock_fd=fd, clean=True)

    async def release(self, wt: Worktree, *, preserve_reason: str | None = None) -> None:
        """Return a leased worktree, to be scrubbed now in the background or at its next lease.

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
            self._scrub_soon(wt)
            self._changed.notify_all()


def _clean(path: Path, sha: str, keep: tuple[str, ...]) -> None:
    """Make the worktree at ``path`` a clean detached checkout of ``sha``, sparing ``keep``.

    :raises WorktreeError: if git cannot (the worktree is broken).
    """
    if not (path / ".git").is_file():
        # Without its link file git would search upwards and check out, then clean,
        # whatever repository encloses the pool.
        raise WorktreeError(f"worktree {path} is broken: its .git file is missing")
    g = git.Git(str(path))
    excludes = [arg for pattern in keep for arg in ("-e", pattern)]
    try:
        # --force restores deleted and modified tracked files; --detach leaves any branch
        g.checkout("--quiet", "--force", "--detach", sha)
        g.clean("-ffdxq", *excludes)
    except (git.GitCommandError, git.NoSuchPathError, OSError) as exc:
        msg = _git_error(exc) if isinstance(exc, git.GitCommandError) else str(exc)
        raise WorktreeError(f"worktree {path} is broken: {msg}") from exc


def validate_worktree_dir(repo: Path, base_dir: Path) -> None:
    """Worktrees must live outside the repo's working tree.

    :raises RepoError: if ``base_dir`` is inside ``repo``.
    """
    if base_dir == repo or repo in base_dir.parents:
        raise RepoError(
            f"worktree dir {base_dir} is inside the repo {repo}; choose a path outside it"
        )
