"""The WAL flushed once writes go quiet, so that a submit's synced commit syncs only its own.

Most writes (an attempt's start and end, a session's end) commit with
``synchronous = NORMAL``: durable across a crash of the process, not yet on
the disk. The next synced commit (a submit's, before its answer) then pays
for all of them: its ``fdatasync`` writes out every page those commits left
in the page cache. Measured on a daemon whose 20 one-test sessions had ended
50 ms before a burst of 20 submits: the burst's COMMIT took 2.0-2.3 ms,
against 0.6-0.7 ms when the WAL had been flushed meanwhile.

So once no write has come for :data:`QUIET_SECONDS`, the WAL file is
flushed in a thread of its own that nobody waits for. While writes keep
coming (sessions running back to back), nothing is flushed: the disk is
left to the synced commits and the checkpoints.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from pathlib import Path

QUIET_SECONDS = 0.01


class QuietFlusher:
    """Flushes ``wal`` after writes go quiet; :meth:`wrote` after each unsynced commit."""

    def __init__(self, wal: Path, quiet_seconds: float | None = None) -> None:
        self._wal = wal
        self._quiet = QUIET_SECONDS if quiet_seconds is None else quiet_seconds
        self._dirty = False
        self._last = 0.0  # the loop's time of the last unsynced commit
        self._timer: asyncio.TimerHandle | None = None
        self._thread: threading.Thread | None = None
        self._closed = False
        self.flushes = 0  # for tests and figures

    def wrote(self) -> None:
        """A commit left pages unsynced: flush them once writes have gone quiet."""
        loop = asyncio.get_running_loop()
        self._dirty = True
        self._last = loop.time()
        if self._timer is None:  # one timer a quiet spell, not one a write
            self._timer = loop.call_later(self._quiet, self._check, loop)

    def syncing(self) -> None:
        """A synced commit begins: it writes out everything before it (a flush meanwhile
        would only compete with its fsync)."""
        self._dirty = False

    def _check(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        if not self._dirty or self._closed:
            return
        left = self._last + self._quiet - loop.time()
        if left > 0 or self._flushing:  # not quiet yet, or the last flush still runs
            self._timer = loop.call_later(max(left, self._quiet), self._check, loop)
            return
        self._dirty = False
        thread = threading.Thread(target=self._flush, name="store-flush", daemon=True)
        thread.start()
        self._thread = thread  # started: close(), in another thread, may join it

    @property
    def _flushing(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _flush(self) -> None:
        if self._closed:  # closed from another thread as this started
            return
        # A flush missed (the store gone, say) costs nothing: the next synced commit syncs.
        with contextlib.suppress(OSError):
            fd = os.open(self._wal, os.O_RDONLY)
            try:
                os.fdatasync(fd)
            finally:
                os.close(fd)
            self.flushes += 1

    def close(self) -> None:
        """No more flushes; waits for one under way."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._thread is not None:
            self._thread.join()
