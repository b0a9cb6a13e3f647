"""The store's schema: made once per state dir, one process at a time."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError
from sqlmodel import SQLModel

from parallel_orch.exceptions import StoreError
from parallel_orch.store import tables  # noqa: F401  (the tables register on the metadata)


def create_schema(engine: Engine, lock: Path) -> None:
    """Create the tables that are missing, one process at a time. Blocks: call in a thread.

    SQLite runs DDL outside the driver's transactions, so two processes opening a
    fresh state dir at once would both find no tables and both create them; an
    ``flock`` on ``lock`` makes the second wait and then find them.
    """
    try:
        fd = _lock_file(lock)
    except OSError as exc:
        raise StoreError(f"cannot lock {lock}: {exc.strerror}; check permissions") from exc
    try:
        with engine.begin() as conn:
            SQLModel.metadata.create_all(conn)
            conn.execute(text("SELECT 1"))
    except OperationalError as exc:
        raise StoreError(
            f"cannot open store {engine.url.database}: {exc.orig}; check permissions"
        ) from exc
    finally:
        os.close(fd)  # closing drops the flock


def _lock_file(path: Path) -> int:
    """An exclusive ``flock`` on ``path``, waiting for it; the open descriptor."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
    except BaseException:
        os.close(fd)
        raise
    return fd
