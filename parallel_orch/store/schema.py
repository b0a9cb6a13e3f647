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
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, inspect, text
from sqlalchemy.exc import OperationalError

from parallel_orch.exceptions import StoreError

if TYPE_CHECKING:
    from alembic.config import Config

#: The revision this release writes; a test checks it is the migrations' head.
SCHEMA_REVISION = "0003"
BASELINE = "0001"  # the first release's schema, before stores carried a version
MIGRATIONS = Path(__file__).with_name("migrations")


def create_schema(engine: Engine, lock: Path) -> None:
    """Bring the store to :data:`SCHEMA_REVISION`, one process at a time. Blocks: call
    in a thread.

    An ``flock`` on ``lock`` serialises processes opening the same state dir: the
    second waits, then finds the tables made.

    :raises StoreError: if the store cannot be read or written, or is from a newer release.
    """
    try:
        fd = _lock_file(lock)
    except OSError as exc:
        raise StoreError(f"cannot lock {lock}: {exc.strerror}; check permissions") from exc
    try:
        with engine.begin() as conn:
            current = revision_of(conn)
            if current != SCHEMA_REVISION:
                _upgrade(conn, current, str(engine.url.database))
            conn.execute(text("SELECT 1"))
    except OperationalError as exc:
        raise StoreError(
            f"cannot open store {engine.url.database}: {exc.orig}; check permissions"
        ) from exc
    finally:
        os.close(fd)  # closing drops the flock


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
    """An exclusive ``flock`` on ``path``, waiting for it; the open descriptor."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
    except BaseException:
        os.close(fd)
        raise
    return fd
