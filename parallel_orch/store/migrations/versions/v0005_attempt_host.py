"""The machine an attempt ran on: a Dask worker's address on a fleet, "" here.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("attempts") as batch:
        batch.add_column(sa.Column("host", sa.String(), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("attempts") as batch:
        batch.drop_column("host")
