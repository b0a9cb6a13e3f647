"""Alembic migrations of the store's schema; run by :mod:`parallel_orch.store.schema`."""
