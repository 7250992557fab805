"""Users have a role: ``user``, or ``admin`` (warms the pool ahead, reads statistics).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A server default, so existing rows (on any database) become plain users.
    op.add_column("users", sa.Column("role", sa.String(), nullable=False, server_default="user"))


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.drop_column("role")
