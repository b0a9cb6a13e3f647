"""Alembic's environment: migrate the connection the store hands over, in batch mode.

SQLite alters a table by copying it (``render_as_batch``); there is no URL here,
so ``alembic`` run by hand needs ``-x`` nothing: the store always passes its
own connection in ``config.attributes["connection"]``.
"""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

from parallel_orch.store import tables  # noqa: F401  (the tables register on the metadata)

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=SQLModel.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
