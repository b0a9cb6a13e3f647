"""The store's schema: versioned, upgraded in place by Alembic, one process at a time.

A store records the migration it is at in ``alembic_version``. Opening one
that is behind runs the migrations in ``migrations/versions`` up to
:data:`SCHEMA_REVISION`; one from the first release, which had no version
table, is recognised by its tables and taken as revision ``0001``. A store at
a revision this release does not know was written by a newer release: it is
refused, untouched. Alembic is imported only when there is something to do.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, inspect, text
from sqlalchemy.exc import OperationalError

from parallel_orch.exceptions import StoreError
from parallel_orch.store.writer import describe

if TYPE_CHECKING:
    from alembic.config import Config

#: The revision this release writes; a test checks it is the migrations' head.
SCHEMA_REVISION = "0005"
BASELINE = "0001"  # the first release's schema, before stores carried a version
MIGRATIONS = Path(__file__).with_name("migrations")


def create_schema(engine: Engine, lock: Path) -> None:
    """Bring the store to :data:`SCHEMA_REVISION`, one process at a time, and make sure it
    can be written. Blocks: call in a thread.

    An ``flock`` on ``lock`` serialises processes opening the same state dir: the
    second waits, then finds the tables made. A store that cannot be written is
    refused here, before anything runs, rather than at its first write.

    :raises StoreError: if the store cannot be read or written, or is from a newer release.
    """
    path = str(engine.url.database)
    try:
        fd = _lock_file(lock)
    except OSError as exc:
        raise StoreError(
            f"cannot lock {lock}: {exc.strerror}; make the state dir writable or pass --state-dir"
        ) from exc
    try:
        with engine.begin() as conn:
            current = revision_of(conn)
            if current != SCHEMA_REVISION:
                _upgrade(conn, current, path)
        _probe_write(path)
    except (OperationalError, sqlite3.Error) as exc:
        raise StoreError(describe(path, getattr(exc, "orig", None) or exc)) from exc
    finally:
        os.close(fd)  # closing drops the flock


def _probe_write(path: str) -> None:
    """Take the write lock and let it go: a store that cannot be written fails here."""
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("BEGIN IMMEDIATE")
        db.execute("ROLLBACK")
    finally:
        db.close()


def revision_of(conn: Connection) -> str | None:
    """The store's revision; :data:`BASELINE` for a first-release store, None if empty."""
    tables = set(inspect(conn).get_table_names())
    if "alembic_version" in tables:
        row = conn.execute(text("SELECT version_num FROM alembic_version")).first()
        if row is not None:
            return str(row[0])
    return BASELINE if "sessions" in tables else None


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
    return "alembic_version" in inspect(conn).get_table_names()


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
