"""The SQLite record: sessions, executions, attempts. SQL and SQLModel live only here.

WAL mode so readers never block the writer, foreign keys on, short
transactions. A request is committed ``pending`` before its submit returns.
Modules: :mod:`~.tables` (the SQLModel tables), :mod:`~.records` (the plain
records callers pass in and get back), :mod:`~.writer` (the one write path),
:mod:`~.writes` (the SQL of each write) and :mod:`~.api` (:class:`Store`).
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
