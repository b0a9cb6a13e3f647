"""The store's write path: one sqlite3 connection, writers in turn, checkpoints off the loop."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import anyio

from parallel_orch.coalesce import Coalescer
from parallel_orch.exceptions import StoreError
from parallel_orch.store.flush import QuietFlusher

if TYPE_CHECKING:
    from sqlalchemy.engine.interfaces import DBAPIConnection
    from sqlalchemy.pool import ConnectionPoolEntry

BUSY_TIMEOUT_MS = 10_000
INLINE_SYNC_SECONDS = 0.002  # synced commits this fast (median of the last few) run on the loop
SYNC_TIMES_KEPT = 8
BULK_ROWS = 500  # rows of a synced batch beyond which its statements run in a thread
NEARLY_FULL_BYTES = 64 * 1024  # free space under which an I/O error means a full disk

T = TypeVar("T")


def on_connect(
    dbapi_conn: DBAPIConnection | sqlite3.Connection, _record: ConnectionPoolEntry | None
) -> None:
    """Every connection's settings: WAL, foreign keys, and a wait for the write lock."""
    cursor = dbapi_conn.cursor()
    cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA journal_mode = WAL")
    cursor.execute("PRAGMA synchronous = NORMAL")  # WAL + NORMAL: durable across process crashes
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.close()


#: SQLite's messages for the codes below, for errors raised without their code (opening).
_CODE_BY_TEXT = {
    "unable to open database file": sqlite3.SQLITE_CANTOPEN,
    "attempt to write a readonly database": sqlite3.SQLITE_READONLY,
    "database or disk is full": sqlite3.SQLITE_FULL,
    "disk I/O error": sqlite3.SQLITE_IOERR,
}


def describe(path: Path | str, exc: BaseException) -> str:
    """A store failure as one line saying what is wrong and what to do about it."""
    text = str(exc).strip() or type(exc).__name__
    code = getattr(exc, "sqlite_errorcode", None)
    code = code & 0xFF if isinstance(code, int) else _CODE_BY_TEXT.get(text)
    errno = getattr(exc, "errno", None)
    if code == sqlite3.SQLITE_IOERR and _no_space(path):
        code = sqlite3.SQLITE_FULL  # SQLite says "disk I/O error" when a write finds no room
    if code == sqlite3.SQLITE_CANTOPEN and _read_only(path):
        code = sqlite3.SQLITE_READONLY  # a WAL store on a read-only mount cannot even open
    if code == sqlite3.SQLITE_FULL or errno == 28:  # ENOSPC
        return f"store {path}: the disk is full ({text}); free some space and run again"
    if code == sqlite3.SQLITE_READONLY or errno == 30:  # EROFS
        return (
            f"store {path} is read-only ({text}); make it and its folder writable, "
            "or pass --state-dir"
        )
    if code == sqlite3.SQLITE_CANTOPEN or errno == 13:  # EACCES
        return f"cannot open store {path} ({text}); check its permissions, or pass --state-dir"
    return f"store {path}: {text}"


def _read_only(path: Path | str) -> bool:
    try:
        return bool(os.statvfs(Path(path).parent).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def _no_space(path: Path | str) -> bool:
    try:
        stats = os.statvfs(Path(path).parent)
    except OSError:
        return False
    return stats.f_bavail * stats.f_frsize < NEARLY_FULL_BYTES


def sql_time(value: datetime) -> str:
    """A UTC time as the tables store it (what SQLAlchemy writes for these columns)."""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


@dataclass(frozen=True, slots=True)
class _Synced:
    fn: Callable[[sqlite3.Connection], Any]
    rows: int  # about how many rows it writes
    then: Callable[[Any], None] | None  # called with fn's result once it is on disk


class Writer:
    """The store's one write path: every write, on one plain sqlite3 connection.

    An attempt's writes come hundreds of times a minute, on its critical path.
    Through SQLAlchemy's async stack each costs milliseconds of CPU (greenlets,
    thread hops, statement building); a prepared statement on a connection of
    its own costs about 20 µs, less than the hop to a thread would. Writers
    take turns here: SQLite admits one at a time, and its busy handler makes
    contending writers sleep (up to 100 ms a try), so queueing them keeps
    submit latency flat under load.

    Nothing here may block the loop for long, so the connection neither waits
    for locks (``busy_timeout = 0``: when another process holds the write lock
    the transaction is retried in a thread, waiting as the store's other
    connections do) nor checkpoints the WAL on commit (an fsync): every
    :data:`CHECKPOINT_EVERY` writes a passive checkpoint runs in a thread of
    its own that no writer waits for. A synced commit's statements run on the
    loop too, and its fsync as well while the disk syncs fast (see
    :meth:`write_synced`).
    """

    CHECKPOINT_EVERY = 200

    def __init__(self, path: Path) -> None:
        self._path = path
        self._turn = anyio.Lock(fast_acquire=True)  # no loop turn when no one else writes
        self._db: sqlite3.Connection | None = None
        self._writes = 0
        self._checkpointer: threading.Thread | None = None
        # One turn before a synced commit: submits ready by then share it (a burst's first
        # submit would otherwise commit alone, the rest waiting for its fsync).
        self._synced: Coalescer[_Synced, Any] = Coalescer(self._commit_synced, gather_turns=1)
        self._sync_times: deque[float] = deque(maxlen=SYNC_TIMES_KEPT)  # seconds, newest last
        self.flusher = QuietFlusher(Path(f"{path}-wal"))  # unsynced commits, once quiet

    @property
    def synced_commits(self) -> int:
        """Transactions :meth:`write_synced` has committed (each one fsync)."""
        return self._synced.batches

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        on_connect(db, None)
        db.execute("PRAGMA busy_timeout = 0")
        db.execute("PRAGMA wal_autocheckpoint = 0")
        return db

    @staticmethod
    def _transaction(db: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
        db.execute("BEGIN IMMEDIATE")
        try:
            result = fn(db)
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:  # a failed COMMIT can leave it open, holding the write lock
                db.execute("ROLLBACK")
            raise
        return result

    def _transaction_waiting(
        self, db: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T]
    ) -> T:
        db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        try:
            return self._transaction(db, fn)
        finally:
            db.execute("PRAGMA busy_timeout = 0")

    def _checkpoint(self) -> None:
        with (  # a checkpoint missed (the store gone, say): the next one makes it
            contextlib.suppress(sqlite3.Error),
            contextlib.closing(sqlite3.connect(self._path, isolation_level=None)) as db,
        ):
            db.execute("PRAGMA wal_checkpoint(PASSIVE)")

    async def write(self, fn: Callable[[sqlite3.Connection], T], *, in_thread: bool = False) -> T:
        """Run ``fn`` in one transaction, in turn with the store's other writers.

        On the loop by default (a few prepared statements); ``in_thread`` for
        bulk writes that take longer than the hop to a thread.
        """
        async with self._turn:
            try:
                if self._db is None:  # in a thread: opening may wait out another's recovery
                    self._db = await anyio.to_thread.run_sync(self._connect)
                db = self._db
                if in_thread:
                    result = await anyio.to_thread.run_sync(self._transaction_waiting, db, fn)
                else:
                    try:
                        result = self._transaction(db, fn)
                    except sqlite3.OperationalError as exc:
                        if exc.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY:
                            raise
                        result = await anyio.to_thread.run_sync(self._transaction_waiting, db, fn)
            except sqlite3.Error as exc:
                raise StoreError(describe(self._path, exc)) from exc
        self.flusher.wrote()
        self._count_write()
        return result

    async def write_synced(
        self,
        fn: Callable[[sqlite3.Connection], T],
        *,
        rows: int = 1,
        then: Callable[[T], None] | None = None,
    ) -> T:
        """Run ``fn`` in a transaction that is on disk when this returns (group commit).

        For what is acknowledged to someone (a submit): ``synchronous = FULL``
        for its commit, so not even a power cut loses it. Calls that arrive
        while one commits share the next transaction and its one fsync, each in
        a savepoint of its own: an exception in one (a duplicate idempotency
        key) undoes that one alone and is raised to its caller. The statements
        run on the loop and the commit, when the disk syncs slowly, in a thread
        (a thread running the statements would wait for the loop's GIL at each
        one); batches of more than :data:`BULK_ROWS` ``rows`` run whole in a thread.

        ``then``, when given, is called on the loop with ``fn``'s result the moment
        the transaction is on disk, in one step for the whole batch, before any
        caller resumes: a burst's submits are answered from there, not each a turn
        of the loop after the one before. What it raises is raised here (the
        transaction stands).

        :raises StoreError: if the transaction cannot be committed.
        """
        result: T = await self._synced.submit(_Synced(fn, rows, then))
        return result

    @property
    def syncs_on_loop(self) -> bool:
        """Whether the next synced commit runs on the event loop (the disk syncs fast)."""
        times = self._sync_times
        return len(times) > 0 and statistics.median(times) <= INLINE_SYNC_SECONDS

    async def _commit_synced(self, batch: Sequence[_Synced]) -> list[Any]:
        fns = [item.fn for item in batch]
        async with self._turn:
            self.flusher.syncing()
            try:
                if self._db is None:
                    self._db = await anyio.to_thread.run_sync(self._connect)
                db = self._db
                outcomes = None
                if sum(item.rows for item in batch) <= BULK_ROWS:
                    outcomes = await self._synced_from_loop(db, fns)
                if outcomes is None:  # bulk, or another process writes: wait in a thread
                    outcomes = await anyio.to_thread.run_sync(self._synced_transaction, db, fns)
            except sqlite3.Error as exc:
                self.flusher.wrote()  # what it would have synced is left to flush
                raise StoreError(describe(self._path, exc)) from exc
        self._count_write()
        for index, (item, outcome) in enumerate(zip(batch, outcomes, strict=True)):
            if item.then is not None and not isinstance(outcome, BaseException):
                try:
                    item.then(outcome)
                except Exception as exc:  # its caller's; the batch's others are not touched
                    outcomes[index] = exc
        return outcomes

    async def _synced_from_loop(
        self, db: sqlite3.Connection, fns: Sequence[Callable[[sqlite3.Connection], Any]]
    ) -> list[Any] | None:
        """The statements on the loop, the commit on the loop or in a thread (by how fast
        the disk syncs); ``None`` when another process holds the write lock."""
        db.execute("PRAGMA synchronous = FULL")
        try:
            try:
                db.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                if exc.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY:
                    raise
                return None
            try:
                outcomes = each_alone(db, fns, self._path)
                if self.syncs_on_loop:
                    took = _commit(db)
                else:
                    took = await anyio.to_thread.run_sync(_commit, db)
                self._sync_times.append(took)  # the disk's time, not the hop's or the loop's
            except BaseException:
                if db.in_transaction:  # a failed COMMIT can leave it open
                    db.execute("ROLLBACK")
                raise
        finally:
            db.execute("PRAGMA synchronous = NORMAL")
        return outcomes

    def _synced_transaction(
        self, db: sqlite3.Connection, fns: Sequence[Callable[[sqlite3.Connection], Any]]
    ) -> list[Any]:
        """Every ``fn`` in one transaction, each in a savepoint, committed with an fsync;
        in a thread, waiting for the write lock."""
        db.execute("PRAGMA synchronous = FULL")
        try:
            started = time.perf_counter()
            outcomes = self._transaction_waiting(db, lambda db: each_alone(db, fns, self._path))
            self._sync_times.append(time.perf_counter() - started)
        finally:
            db.execute("PRAGMA synchronous = NORMAL")
        return outcomes

    def _count_write(self) -> None:
        """Every :data:`CHECKPOINT_EVERY` writes, a checkpoint in a thread of its own that
        nobody waits for (a submit waiting for one was a submit's slowest ack)."""
        self._writes += 1
        running = self._checkpointer is not None and self._checkpointer.is_alive()
        if self._writes % self.CHECKPOINT_EVERY == 0 and not running:
            thread = threading.Thread(target=self._checkpoint, name="store-checkpoint", daemon=True)
            thread.start()
            self._checkpointer = thread  # started: close(), in another thread, may join it

    def close(self) -> None:
        self.flusher.close()
        if self._checkpointer is not None:
            self._checkpointer.join()
        if self._db is not None:
            self._db.close()
            self._db = None


def _commit(db: sqlite3.Connection) -> float:
    """``COMMIT`` (with its fsync); the seconds it took."""
    started = time.perf_counter()
    db.execute("COMMIT")
    return time.perf_counter() - started


def each_alone(
    db: sqlite3.Connection, fns: Sequence[Callable[[sqlite3.Connection], Any]], path: Path
) -> list[Any]:
    """Each ``fn`` in a savepoint of its own: its outcome, or the exception it raised (it
    alone undone; a database error as the :class:`StoreError` saying what of ``path``)."""
    outcomes: list[Any] = []
    for fn in fns:
        db.execute("SAVEPOINT one")
        try:
            outcomes.append(fn(db))
        except Exception as exc:  # this one's own failure: undo it alone
            db.execute("ROLLBACK TO one")
            if isinstance(exc, sqlite3.Error):
                exc = StoreError(describe(path, exc))
            outcomes.append(exc)
        db.execute("RELEASE one")
    return outcomes
