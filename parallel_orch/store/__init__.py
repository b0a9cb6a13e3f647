"""The SQLite record: sessions, executions, attempts. SQL and SQLModel live only here.

WAL mode so readers never block the writer, foreign keys on, short
transactions. A request is committed ``pending`` before its submit returns.
Modules: :mod:`~.tables` (the SQLModel tables: the schema the migrations in
:mod:`~.schema` are checked against), :mod:`~.records` (the plain records
callers pass in and get back), :mod:`~.writer` (the one write path),
:mod:`~.writes` (the SQL of each write), :mod:`~.reads`, :mod:`~.queries` and
:mod:`~.history` (the reads) and :mod:`~.api` (:class:`Store`). Reads and
writes run on plain ``sqlite3``: SQLAlchemy, SQLModel and Alembic are imported
only to make or upgrade a store.
"""

from typing import TYPE_CHECKING

from parallel_orch.lazy import exports

if TYPE_CHECKING:
    from parallel_orch.store.api import DB_FILENAME, Store, open_store
    from parallel_orch.store.records import (
        AttemptEnd,
        AttemptRecord,
        CaseRecord,
        ExecutionEnd,
        ExecutionProgress,
        ExecutionRecord,
        NewExecution,
        OutcomeCounts,
        SessionRecord,
        SessionSnapshot,
        utcnow,
    )

__all__ = [
    "DB_FILENAME",
    "AttemptEnd",
    "AttemptRecord",
    "CaseRecord",
    "ExecutionEnd",
    "ExecutionProgress",
    "ExecutionRecord",
    "NewExecution",
    "OutcomeCounts",
    "SessionRecord",
    "SessionSnapshot",
    "Store",
    "open_store",
    "utcnow",
]

_API = ("DB_FILENAME", "Store", "open_store")
__getattr__ = exports(
    __name__,
    {
        name: "parallel_orch.store.api" if name in _API else "parallel_orch.store.records"
        for name in __all__
    },
)
