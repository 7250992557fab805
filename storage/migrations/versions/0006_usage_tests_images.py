"""Runs keep their usage figures, their test results and their plots.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("code_executions") as batch:
        batch.add_column(sa.Column("cpu_time", sa.Float(), nullable=True))
        batch.add_column(sa.Column("memory_peak", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("tests", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("tests_passed", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("tests_total", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("image_count", sa.Integer(), nullable=False, server_default="0"))
    op.create_table(
        "run_images",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("execution_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("mime", sa.String(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["execution_id"], ["code_executions.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_run_images_execution_id", "run_images", ["execution_id"])


def downgrade() -> None:
    op.drop_index("ix_run_images_execution_id", table_name="run_images")
    op.drop_table("run_images")
    with op.batch_alter_table("code_executions") as batch:
        for column in ("image_count", "tests_total", "tests_passed", "tests", "memory_peak"):
            batch.drop_column(column)
        batch.drop_column("cpu_time")
