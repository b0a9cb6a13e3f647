"""One pooled worktree, and the pool's folder on disk as git knows it.

:class:`Worktree` is a worktree's state as the pool tracks it;
:class:`WorktreeDir` does the git side of the pool's folder: reconcile with
``git worktree list`` at start, add, remove, replace, all under a ``flock``
on ``<base>/.pool.lock`` because concurrent ``git worktree add`` races on
``.git``. Each pooled worktree is held by an ``flock`` on its own lock file
for as long as this process owns it, so two orchestrators on one repo never
share a worktree and a crashed owner's worktrees become free again.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import anyio

from parallel_orch import setup
from parallel_orch.exceptions import RepoError, WorktreeError
from parallel_orch.gitrepo import GitFailed, run_git
from parallel_orch.scrub import RAN, CleanState, load_state
from parallel_orch.setup import SetupKey

log = logging.getLogger(__name__)

LOCK_DIR = ".locks"
POOL_LOCK = ".pool.lock"
NAME_PREFIX = "wt-"


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
    git_state: CleanState | None = None  # as its last clean left it, for the next to compare
    #: Tests run here with bytecode written since its ``__pycache__`` was last dropped
    #: (:func:`run_key` of each): their modules are compiled here.
    ran: set[str] = field(default_factory=set)

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


def run_key(test_id: str) -> str:
    """A test's entry in :attr:`Worktree.ran` and its record: short, one line, any id."""
    return hashlib.blake2b(test_id.encode(), digest_size=8).hexdigest()


def read_ran(path: Path, sha: str | None) -> set[str]:
    """What the record in the worktree's git dir says ran there, if written at ``sha``.

    The record is its commit on the first line, then one :func:`run_key` a line.
    """
    where = setup.git_dir(path)
    try:
        lines = (where / RAN).read_text(encoding="ascii").splitlines() if where else []
    except (OSError, ValueError):
        return set()
    return set(lines[1:]) if lines and sha is not None and lines[0] == sha else set()


def remember_ran(wt: Worktree, test_id: str) -> None:
    """Note that ``test_id`` ran in ``wt`` at its commit, in memory and in its record.

    Appending a line: cheap enough inline, and once per test and commit.
    """
    key = run_key(test_id)
    if key in wt.ran or wt.sha is None:
        return
    where = setup.git_dir(wt.path)
    first = not wt.ran
    wt.ran.add(key)
    if where is None:
        return
    try:
        with open(where / RAN, "w" if first else "a", encoding="ascii") as record:
            record.write(f"{wt.sha}\n{key}\n" if first else f"{key}\n")
    except OSError as exc:  # a lost record costs some compiling, nothing more
        log.debug("cannot record a test run in %s: %s", wt.path, exc)


def forget_ran(wt: Worktree) -> None:
    """Its ``__pycache__`` folders go: nothing is compiled there any more."""
    wt.ran.clear()
    where = setup.git_dir(wt.path)
    if where is not None:
        with contextlib.suppress(OSError):
            (where / RAN).unlink(missing_ok=True)


def _stale(path: Path, entry: dict[str, str]) -> bool:
    """A registered worktree that `git worktree prune` would drop (git says "prunable"
    since 2.31; its folder gone, for any git), or will once unlocked."""
    return "prunable" in entry or not path.exists()


def git_error(exc: GitFailed) -> str:
    return exc.stderr.strip().removeprefix("stderr: ").strip().strip("'").strip() or str(exc)


def open_lock(path: Path) -> int:
    """A lock file, open for ``flock`` (created when missing).

    :raises WorktreeError: naming the file, if it cannot be opened (another owner's,
        a read-only file system, a folder in its place).
    """
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise WorktreeError(
            f"cannot open the pool's lock file {path}: {exc.strerror}; remove it or give it "
            "to this user (or pass another worktree dir)"
        ) from exc


def try_flock(path: Path) -> int | None:
    fd = open_lock(path)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def release_flock(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)  # closing drops the flock


class WorktreeDir:
    """The pool's folder: the git commands that add, remove and reconcile its worktrees.

    Every method blocks (git, the file system): call them in a thread.
    """

    def __init__(self, repo: Path, base_dir: Path) -> None:
        self.repo = repo
        self.base_dir = base_dir

    def _worktree(self, *args: str) -> str:
        return run_git(self.repo, "worktree", *args)

    def lock_path(self, name: str) -> Path:
        return self.base_dir / LOCK_DIR / f"{name}.lock"

    def make(self) -> None:
        try:
            (self.base_dir / LOCK_DIR).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise WorktreeError(
                f"cannot create worktree dir {self.base_dir}: {exc.strerror}"
            ) from exc

    @contextmanager
    def _pool_flock(self) -> Iterator[None]:
        fd = open_lock(self.base_dir / POOL_LOCK)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _registered(self) -> dict[Path, dict[str, str]]:
        entries: dict[Path, dict[str, str]] = {}
        current: dict[str, str] = {}
        for line in [*self._worktree("list", "--porcelain").splitlines(), ""]:
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

    def reconcile(self, capacity: int) -> list[Worktree]:
        """Prune stale entries, adopt up to ``capacity`` free worktrees, remove orphan folders."""
        adopted: list[Worktree] = []
        with self._pool_flock():
            registered = self._registered()
            stale = [path for path, entry in registered.items() if _stale(path, entry)]
            if stale:  # a prune and a second listing only when there is something to prune
                self._unlock_vanished(registered)
                self._worktree("prune")
                registered = self._registered()
            for path, entry in registered.items():
                if not self._is_pooled(path) or "locked" in entry:  # locked: preserved
                    continue
                fd = try_flock(self.lock_path(path.name))
                if fd is None:
                    continue  # another live orchestrator owns it
                if len(adopted) >= capacity:
                    release_flock(fd)
                    continue
                adopted.append(
                    Worktree(
                        path=path,
                        sha=entry.get("HEAD"),
                        lock_fd=fd,
                        setup_key=setup.read_marker(path),  # set up by an earlier process
                        ran=read_ran(path, entry.get("HEAD")),
                        git_state=load_state(path),  # left clean by an earlier process: a look
                    )
                )
            for child in self.base_dir.iterdir():
                if not child.name.startswith(NAME_PREFIX) or child in registered:
                    continue
                fd = try_flock(self.lock_path(child.name))
                if fd is None:
                    continue
                log.info("removing orphan worktree directory %s", child)
                shutil.rmtree(child, ignore_errors=True)
                self.lock_path(child.name).unlink(missing_ok=True)
                release_flock(fd)
        return adopted

    def _unlock_vanished(self, registered: dict[Path, dict[str, str]]) -> None:
        """A preserved worktree the user deleted after inspecting it: prune skips
        locked entries, so unlock it first or it stays registered for ever."""
        for path, entry in registered.items():
            if self._is_pooled(path) and "locked" in entry and not path.exists():
                try:
                    self._worktree("unlock", str(path))
                except GitFailed as exc:
                    log.warning("cannot unlock vanished worktree %s: %s", path, git_error(exc))

    def remove_all(self, worktrees: list[Worktree]) -> None:
        with self._pool_flock():
            for wt in worktrees:
                self._remove_one(wt)
            self._worktree("prune")

    def _remove_one(self, wt: Worktree) -> None:
        try:
            self._worktree("remove", "--force", "--force", str(wt.path))
        except GitFailed:
            shutil.rmtree(wt.path, ignore_errors=True)
        self.lock_path(wt.name).unlink(missing_ok=True)

    def readd(self, wt: Worktree, sha: str) -> None:
        with self._pool_flock():
            try:
                self._worktree("remove", "--force", "--force", str(wt.path))
            except GitFailed:
                shutil.rmtree(wt.path, ignore_errors=True)
                self._worktree("prune")
            self._add(wt.path, sha)
        wt.setup_key = None
        wt.git_state = None
        wt.ran = set()  # its git dir, the record in it, went with it
        setup.clear_marker(wt.path)

    def _add(self, path: Path, sha: str) -> None:
        try:
            self._worktree("add", "--quiet", "--detach", "--force", str(path), sha)
        except GitFailed as exc:
            raise WorktreeError(f"git worktree add {path} failed: {git_error(exc)}") from exc

    def create(self, sha: str) -> Worktree:
        """A new worktree at ``sha``, locked for this process.

        :raises WorktreeError: if git cannot add it or its lock cannot be taken.
        """
        path = self.base_dir / f"{NAME_PREFIX}{secrets.token_hex(4)}"
        try:
            fd = try_flock(self.lock_path(path.name))
        except OSError as exc:
            raise WorktreeError(f"cannot lock new worktree {path}: {exc}") from exc
        if fd is None:  # astronomically unlikely name clash
            raise WorktreeError(f"worktree name {path.name} is taken")
        try:
            with self._pool_flock():
                self._add(path, sha)
        except OSError as exc:  # the pool's lock file or folder
            release_flock(fd)
            raise WorktreeError(f"cannot add worktree {path}: {exc}") from exc
        except BaseException:
            release_flock(fd)
            raise
        return Worktree(path=path, sha=sha, lock_fd=fd, clean=True)

    def preserve(self, wt: Worktree, reason: str) -> None:
        """Lock ``wt`` in git with ``reason`` and give up its flock: it leaves the pool."""
        try:
            self._worktree("lock", "--reason", reason, str(wt.path))
        except GitFailed as exc:
            log.warning("cannot lock preserved worktree %s: %s", wt.path, git_error(exc))
        release_flock(wt.lock_fd)


def validate_worktree_dir(repo: Path, base_dir: Path) -> None:
    """Worktrees must live outside the repo's working tree.

    :raises RepoError: if ``base_dir`` is inside ``repo``.
    """
    if base_dir == repo or repo in base_dir.parents:
        raise RepoError(
            f"worktree dir {base_dir} is inside the repo {repo}; choose a path outside it"
        )
