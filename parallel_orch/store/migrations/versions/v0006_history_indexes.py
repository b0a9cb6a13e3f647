"""Reads across sessions in one index seek, however long the history.

A test's expected duration (its last few executions) and a session's previous
one (the newest of its plan set) were read through an index on ``test_id`` or
``plan_key`` alone: every execution of the test, every session of the plan set,
then sorted. Each submit and each session's end grew with the store. These two
indexes replace those, ordered by creation within the key.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_executions_test_id_created_at", "executions", ["test_id", "created_at"])
    op.drop_index("ix_executions_test_id", "executions")
    op.create_index("ix_sessions_plan_key_created_at", "sessions", ["plan_key", "created_at"])
    op.drop_index("ix_sessions_plan_key", "sessions")


def downgrade() -> None:
    op.create_index("ix_sessions_plan_key", "sessions", ["plan_key"])
    op.drop_index("ix_sessions_plan_key_created_at", "sessions")
    op.create_index("ix_executions_test_id", "executions", ["test_id"])
    op.drop_index("ix_executions_test_id_created_at", "executions")
