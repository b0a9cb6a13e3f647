"""The store's schema: versioned, upgraded in place by Alembic, one process at a time.

A store records the migration it is at in ``alembic_version``. Opening one
that is behind runs the migrations in ``migrations/versions`` up to
:data:`SCHEMA_REVISION`; one from the first release, which had no version
table, is recognised by its tables and taken as revision ``0001``. A store at
a revision this release does not know was written by a newer release: it is
refused, untouched. The revision is read with plain ``sqlite3``: SQLAlchemy and
Alembic are imported only when there is something to do.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING

from parallel_orch.exceptions import StoreError
from parallel_orch.store.writer import describe, on_connect

if TYPE_CHECKING:
    from alembic.config import Config
    from sqlalchemy import Connection

#: The revision this release writes; a test checks it is the migrations' head.
SCHEMA_REVISION = "0006"
BASELINE = "0001"  # the first release's schema, before stores carried a version
MIGRATIONS = Path(__file__).with_name("migrations")


def create_schema(path: Path, lock: Path) -> None:
    """Bring the store at ``path`` to :data:`SCHEMA_REVISION`, one process at a time, and
    make sure it can be written. Blocks: call in a thread.

    An ``flock`` on ``lock`` serialises processes opening the same state dir: the
    second waits, then finds the tables made. A store that cannot be written is
    refused here, before anything runs, rather than at its first write.

    :raises StoreError: if the store cannot be read or written, or is from a newer release.
    """
    try:
        fd = _lock_file(lock)
    except OSError as exc:
        raise StoreError(
            f"cannot lock {lock}: {exc.strerror}; make the state dir writable or pass --state-dir"
        ) from exc
    try:
        if _revision(path) != SCHEMA_REVISION:
            _migrate(path)
        _probe_write(path)
    except sqlite3.Error as exc:
        raise StoreError(describe(path, exc)) from exc
    finally:
        os.close(fd)  # closing drops the flock


def _revision(path: Path) -> str | None:
    """The store's revision, read on a connection set up as every other (WAL on)."""
    db = sqlite3.connect(path, isolation_level=None)
    try:
        on_connect(db, None)
        return revision_in(db)
    finally:
        db.close()


def revision_in(db: sqlite3.Connection) -> str | None:
    """The store's revision; :data:`BASELINE` for a first-release store, None if empty."""
    listed = db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
    tables = {str(name) for (name,) in listed}
    if "alembic_version" in tables:
        row = db.execute("SELECT version_num FROM alembic_version").fetchone()
        if row is not None:
            return str(row[0])
    return BASELINE if "sessions" in tables else None


def _migrate(path: Path) -> None:
    """Run the migrations (or refuse a newer store) through SQLAlchemy and Alembic."""
    from sqlalchemy import create_engine, event
    from sqlalchemy.exc import OperationalError

    engine = create_engine(f"sqlite:///{path}")
    event.listen(engine, "connect", on_connect)
    try:
        with engine.begin() as conn:
            current = revision_in(_dbapi(conn))
            if current != SCHEMA_REVISION:  # another process may have got there first
                _upgrade(conn, current, str(path))
    except OperationalError as exc:
        raise StoreError(describe(path, exc.orig or exc)) from exc
    finally:
        engine.dispose()


def _dbapi(conn: Connection) -> sqlite3.Connection:
    raw = conn.connection.dbapi_connection
    assert isinstance(raw, sqlite3.Connection)
    return raw


def _probe_write(path: Path) -> None:
    """Take the write lock and let it go: a store that cannot be written fails here."""
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("BEGIN IMMEDIATE")
        db.execute("ROLLBACK")
    finally:
        db.close()


def _upgrade(conn: Connection, current: str | None, path: str) -> None:
    from alembic import command
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

    config = _config(conn)
    if current is not None:
        try:
            ScriptDirectory.from_config(config).get_revision(current)
        except CommandError:
            raise StoreError(
                f"store {path} has schema revision {current!r}, newer than this "
                f"parallel-orch knows ({SCHEMA_REVISION!r}); upgrade parallel-orch or "
                "use another --state-dir"
            ) from None
        if not _has_version_table(conn):
            command.stamp(config, current)  # a first-release store
    command.upgrade(config, SCHEMA_REVISION)


def _has_version_table(conn: Connection) -> bool:
    found = _dbapi(conn).execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'alembic_version'"
    )
    return found.fetchone() is not None


def _config(conn: Connection) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = conn
    return config


def _lock_file(path: Path) -> int:
    """An exclusive ``flock`` on ``path``, waiting for it; the open descriptor.

    An existing lock file that cannot be opened for writing (read-only, another
    owner's) is locked read-only: ``flock`` needs no write access.
    """
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError:
        if not path.exists():
            raise
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
    except BaseException:
        os.close(fd)
        raise
    return fd
