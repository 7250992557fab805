"""Run slots shared by the replicas of one database: the per-user and global caps count them.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "run_slots",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("instance_id", sa.String(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("taken_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_run_slots_instance_id", "run_slots", ["instance_id"])
    op.create_index("ix_run_slots_user_id", "run_slots", ["user_id"])


def downgrade() -> None:
    op.drop_index("ix_run_slots_user_id", table_name="run_slots")
    op.drop_index("ix_run_slots_instance_id", table_name="run_slots")
    op.drop_table("run_slots")
