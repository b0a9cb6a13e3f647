"""Unsynced commits reach the disk once writes go quiet, so a submit's synced commit that
comes later writes out only its own pages (see ``parallel_orch/store/flush.py``)."""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest

from parallel_orch import TestRequest
from parallel_orch.store import NewExecution, Store, flush, open_store
from tests.helpers import one_test_session

CACHESTAT = 451  # Linux 6.5+, x86_64 and arm64 alike
QUIET = 0.05


class _Range(ctypes.Structure):
    _fields_ = [("off", ctypes.c_uint64), ("len", ctypes.c_uint64)]


class _Stat(ctypes.Structure):
    _fields_ = [(name, ctypes.c_uint64) for name in ("cache", "dirty", "writeback", "ev", "rev")]


def dirty_pages(path: Path) -> int:
    """Pages of ``path`` in the page cache not yet written to the disk (``cachestat(2)``)."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY)
    try:
        stat = _Stat()
        if libc.syscall(CACHESTAT, fd, ctypes.byref(_Range(0, 0)), ctypes.byref(stat), 0):
            errno = ctypes.get_errno()
            pytest.skip(
                f"this kernel has no cachestat(2) to see dirty pages ({os.strerror(errno)})"
            )
        return int(stat.dirty)
    finally:
        os.close(fd)


@asynccontextmanager
async def store_with_session(tmp_path: Path) -> AsyncIterator[Store]:
    """A store whose writes go quiet after :data:`QUIET`, with session ``s`` in it."""
    probe = tmp_path / "probe"
    probe.write_bytes(b"x" * 8192)
    if not dirty_pages(probe):  # tmpfs, say: nothing there is ever written out
        pytest.skip(f"{tmp_path}'s filesystem keeps no dirty pages to see flushed")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(flush, "QUIET_SECONDS", QUIET)
        async with open_store(tmp_path) as store:
            await one_test_session(store, "s")
            yield store


async def until(done: Callable[[], bool]) -> None:
    """Until ``done()``, looking every fifth of the quiet spell; 5 s at most."""
    with anyio.fail_after(5):
        while not done():  # noqa: ASYNC110 (what is awaited is a thread's work or the disk)
            await anyio.sleep(QUIET / 5)


async def plain_writes(store: Store, count: int, gap: float = 0.0) -> None:
    for n in range(count):
        await store.set_notify_status("s", f"try {n}")
        await anyio.sleep(gap)


async def test_unsynced_writes_reach_the_disk_once_writes_go_quiet(tmp_path: Path) -> None:
    """Writes committed without a sync are flushed in one go soon after the last of them."""
    async with store_with_session(tmp_path) as store:
        flusher = store._writer.flusher
        await plain_writes(store, 5)  # in one step of the loop: quiet only after the last
        # Whether their pages are still dirty now is the kernel's business: another
        # process's fsync on this filesystem can have written them out meanwhile.
        await until(lambda: flusher.flushes > 0)
        assert dirty_pages(Path(f"{store.path}-wal")) == 0
        await anyio.sleep(QUIET * 4)
        assert flusher.flushes == 1


async def test_writes_that_keep_coming_are_not_flushed_meanwhile(tmp_path: Path) -> None:
    """Writes closer together than the quiet spell: no flush until they stop, then one."""
    async with store_with_session(tmp_path) as store:
        flusher = store._writer.flusher
        await plain_writes(store, 20, gap=QUIET / 10)
        during = flusher.flushes
        await until(lambda: flusher.flushes > during)
    assert during <= 1  # a stall of the whole quiet spell on a loaded machine, at most
    assert flusher.flushes == during + 1


async def test_a_synced_commit_leaves_nothing_to_flush(tmp_path: Path) -> None:
    """Writes followed at once by a synced commit (a submit): nothing is flushed after it."""
    async with store_with_session(tmp_path) as store:
        await plain_writes(store, 5)
        await store.add_executions("s", [NewExecution(TestRequest(id="u", command="true"), "b")])
        assert dirty_pages(Path(f"{store.path}-wal")) == 0  # the commit synced them all
        await anyio.sleep(QUIET * 4)
        assert store._writer.flusher.flushes == 0


_Thread = threading.Thread  # the plain one, while the test puts _Closing in its place


class _Closing(_Thread):
    """A flush's thread whose ``start`` first closes the flusher from another thread."""

    flusher: flush.QuietFlusher
    failures: list[BaseException]

    def start(self) -> None:
        closer = _Thread(target=self._close)
        closer.start()
        closer.join()
        super().start()

    def _close(self) -> None:
        try:
            self.flusher.close()
        except BaseException as exc:
            self.failures.append(exc)


async def test_closing_as_a_flush_starts_is_safe(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store closed (from another thread, as ``Store.close`` is) just as a flush's
    thread is made: closing neither fails nor leaves a flush to come after it."""
    wal = tmp_path / "wal"
    wal.write_bytes(b"")
    flusher = flush.QuietFlusher(wal, quiet_seconds=0.001)
    failures: list[BaseException] = []
    monkeypatch.setattr(_Closing, "flusher", flusher, raising=False)
    monkeypatch.setattr(_Closing, "failures", failures, raising=False)
    monkeypatch.setattr(threading, "Thread", _Closing)
    flusher.wrote()
    await until(lambda: flusher._thread is not None or bool(failures))
    monkeypatch.undo()
    if flusher._thread is not None:
        flusher._thread.join()
    assert failures == []
    assert flusher.flushes == 0  # closed first: the flush did nothing
