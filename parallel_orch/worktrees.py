"""WorktreePool: warm git worktrees lent to workers, one lease at a time.

The git side (adding, removing, reconciling, the locks that keep two
processes apart) is :class:`~parallel_orch.worktree.WorktreeDir`'s; this
module decides which worktree a lease gets and when it is cleaned.

Given a task group (:meth:`WorktreePool.work_in`), the pool cleans a
released worktree in the background at once, sparing the ``keep`` paths of
the attempt that used it, and keeps spare worktrees beyond one per worker:
a worker then leases a worktree that is already clean while the one it just
gave back is scrubbed, so checkout and clean leave the attempt's critical
path. Without one, a worktree is cleaned when it is leased.

A lease may name the test it is for (``prefer``): a worktree where that test
already ran at the commit (:attr:`~parallel_orch.worktree.Worktree.ran`) holds
the bytecode of the modules it imports, which a clean at the same commit
spares. Another worktree would compile them again: 50-600 ms of CPU for one
pytest file of a real suite, about what the file's cases take.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import anyio
from anyio.abc import TaskGroup

from parallel_orch.exceptions import WorktreeError
from parallel_orch.scrub import clean, save_state
from parallel_orch.setup import SetupKey
from parallel_orch.worktree import Worktree, WorktreeDir, forget_ran, release_flock, run_key

log = logging.getLogger(__name__)

SPARE_RETRY_SECONDS = 60


class WorktreePool:
    """Lends clean worktrees at a wanted commit; see the module docstring."""

    def __init__(self, repo: Path, base_dir: Path, capacity: int) -> None:
        self.repo = repo
        self.base_dir = base_dir
        self.capacity = capacity
        self._dir = WorktreeDir(repo, base_dir)
        self._worktrees: list[Worktree] = []
        self._creating = 0
        self._tg: TaskGroup | None = None  # for background scrubs and spares
        self._spare_retry_at = 0.0  # monotonic time before which no spare is attempted
        self._admin = anyio.Lock()  # add / remove / prune, in this process
        self._changed = anyio.Condition()

    # -- lifecycle ----------------------------------------------------------

    async def open(self) -> None:
        """Reconcile with ``git worktree list``: prune stale entries, adopt or remove orphans."""
        self._dir.make()
        async with self._admin:
            adopted = await anyio.to_thread.run_sync(self._dir.reconcile, self.capacity)
        self._worktrees.extend(adopted)

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
                await anyio.to_thread.run_sync(self._dir.remove_all, worktrees)
        for wt in worktrees:
            release_flock(wt.lock_fd)

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
        setup: SetupKey | None = None,
        avoid: str | None = None,
        prefer: str | None = None,
    ) -> Worktree:
        """A clean worktree checked out (detached) at ``sha``, for this caller alone.

        Prefers, in order: not ``avoid``, already set up for ``setup`` (a setup
        costs more than a checkout), at ``sha``, already clean, where the test
        ``prefer`` ran (its bytecode is there); creates one while under capacity.

        :raises WorktreeError: if no worktree can be made ready.
        """
        keep = tuple(keep)
        want = _Want(sha, keep, setup, avoid, None if prefer is None else run_key(prefer))
        wt = await self._take(want) or await self._take_new(sha)
        try:
            if wt.scrubbing is not None:
                with anyio.CancelScope(shield=True):  # brief, and the worktree is ours now
                    await wt.scrubbing.wait()
            if not wt.ready_for(sha, keep):
                await self._clean(wt, sha, keep, keep_bytecode=wt.sha == sha)
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

    async def _clean(
        self, wt: Worktree, sha: str, keep: tuple[str, ...], *, keep_bytecode: bool
    ) -> None:
        """Clean ``wt`` for a lease at ``sha``, replacing it if git cannot."""
        try:
            await _clean_comparing(wt, sha, keep, keep_bytecode=keep_bytecode)
        except WorktreeError:
            await self._replace(wt, sha)

    async def _take(self, want: _Want) -> Worktree | None:
        """The best idle worktree, leased; None when one is to be created (counted in
        ``_creating``). Waits while every worktree is leased and there is no room."""
        async with self._changed:
            while True:
                room = len(self._worktrees) + self._creating < self.capacity
                wt = self._pick(want)
                # a retry takes the worktree it failed in only when no other can be had
                if wt is not None and (wt.name != want.avoid or not room):
                    wt.leased = True
                    if room and not wt.ready_for(want.sha, want.keep):
                        self._add_spare(want.sha)  # so that the next lease finds one ready
                    return wt
                if room:
                    self._creating += 1
                    return None
                await self._changed.wait()

    async def _take_new(self, sha: str) -> Worktree:
        """Create a worktree into the room :meth:`_take` counted, leased to the caller."""
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
        return created

    def _pick(self, want: _Want) -> Worktree | None:
        idle = [wt for wt in self._worktrees if not wt.leased]
        if not idle:
            return None

        def rank(wt: Worktree) -> tuple[bool, bool, bool, bool, bool, bool]:
            return (
                wt.name == want.avoid,
                want.setup is not None and wt.setup_key != want.setup,
                wt.sha != want.sha,
                # a clean one before one still being scrubbed: a test that is not Python
                # gains nothing where it ran, and would wait for the scrub
                not wt.ready_for(want.sha, want.keep),
                want.ran is not None and want.ran not in wt.ran,
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
                await _clean_comparing(wt, sha, keep, keep_bytecode=True)
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
            await anyio.to_thread.run_sync(self._dir.readd, wt, sha)

    async def _create(self, sha: str) -> Worktree:
        async with self._admin:
            # shielded: a worktree made in the thread must reach the pool, not leak its lock
            with anyio.CancelScope(shield=True):
                created = await anyio.to_thread.run_sync(self._dir.create, sha)
        return created

    async def release(self, wt: Worktree, *, preserve_reason: str | None = None) -> None:
        """Return a leased worktree, to be scrubbed now in the background or at its next lease.

        With ``preserve_reason`` the worktree is locked in git, left on disk for
        inspection and dropped from the pool; a fresh one will take its place.
        """
        if preserve_reason is not None:
            await anyio.to_thread.run_sync(self._dir.preserve, wt, preserve_reason)
            async with self._changed:
                self._worktrees.remove(wt)
                self._changed.notify_all()
            return
        async with self._changed:
            wt.leased = False
            wt.clean = False
            self._scrub_soon(wt)
            self._changed.notify_all()


@dataclass(frozen=True, slots=True)
class _Want:
    """What a lease asks for."""

    sha: str
    keep: tuple[str, ...]
    setup: SetupKey | None
    avoid: str | None  # a worktree's name
    ran: str | None  # a test's run_key: where it ran, its modules are compiled


async def _clean_comparing(
    wt: Worktree, sha: str, keep: tuple[str, ...], *, keep_bytecode: bool
) -> None:
    """:func:`~parallel_orch.scrub.clean` of ``wt``, told what its last clean left; what
    this one leaves is remembered for the next (nothing, if it fails), in memory and, when
    it changed, in its git dir for the next process."""
    if not keep_bytecode:
        forget_ran(wt)
    last, wt.git_state = wt.git_state, None
    wt.git_state = await clean(wt.path, sha, keep, keep_bytecode=keep_bytecode, last=last)
    if wt.git_state != last:
        save_state(wt.path, wt.git_state)
