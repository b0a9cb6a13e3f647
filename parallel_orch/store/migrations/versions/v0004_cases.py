"""Per-case JUnit results, why a JUnit file could not be read, a session's report options.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cases",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "attempt_id",
            sa.Integer(),
            sa.ForeignKey("attempts.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("classname", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("file", sa.String(), nullable=True),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("time", sa.Float(), nullable=True),
        sa.Column("message", sa.String(), nullable=True),
    )
    op.create_index("ix_cases_attempt_id", "cases", ["attempt_id"])
    with op.batch_alter_table("attempts") as batch:
        batch.add_column(sa.Column("junit_error", sa.String(), nullable=True))
        batch.add_column(sa.Column("setup_seconds", sa.Float(), nullable=True))
        batch.add_column(sa.Column("sharded", sa.Boolean(), nullable=True))
    with op.batch_alter_table("sessions") as batch:
        batch.add_column(
            sa.Column("options_json", sa.String(), nullable=False, server_default="{}")
        )
        batch.add_column(sa.Column("notify_status", sa.String(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        batch.drop_column("notify_status")
        batch.drop_column("options_json")
    with op.batch_alter_table("attempts") as batch:
        batch.drop_column("sharded")
        batch.drop_column("setup_seconds")
        batch.drop_column("junit_error")
    op.drop_index("ix_cases_attempt_id", table_name="cases")
    op.drop_table("cases")
