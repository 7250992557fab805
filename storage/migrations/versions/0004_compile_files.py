"""Runs keep the program's other files, the compiler's messages and the compile time.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("code_executions") as batch:
        batch.add_column(sa.Column("files", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("compile_output", sa.Text(), nullable=True))
        batch.add_column(sa.Column("compile_time", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("code_executions") as batch:
        batch.drop_column("compile_time")
        batch.drop_column("compile_output")
        batch.drop_column("files")
