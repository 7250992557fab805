"""Server instances with leases; runs stored from their start; history ordered by start.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

RUNS = "code_executions"


def upgrade() -> None:
    op.create_table(
        "instances",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("host", sa.String(), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_instances_expires_at", "instances", ["expires_at"])
    op.add_column(RUNS, sa.Column("instance_id", sa.String(), nullable=True))
    op.drop_index("ix_code_executions_user_id_id", table_name=RUNS)
    op.drop_index("ix_code_executions_user_id_project_id_id", table_name=RUNS)
    op.create_index(
        "ix_code_executions_user_id_created_at_id", RUNS, ["user_id", "created_at", "id"]
    )
    op.create_index(
        "ix_code_executions_user_id_project_id_created_at_id",
        RUNS,
        ["user_id", "project_id", "created_at", "id"],
    )
    op.create_index("ix_code_executions_created_at", RUNS, ["created_at"])
    op.create_index("ix_code_executions_status_instance_id", RUNS, ["status", "instance_id"])


def downgrade() -> None:
    op.drop_index("ix_code_executions_status_instance_id", table_name=RUNS)
    op.drop_index("ix_code_executions_created_at", table_name=RUNS)
    op.drop_index("ix_code_executions_user_id_project_id_created_at_id", table_name=RUNS)
    op.drop_index("ix_code_executions_user_id_created_at_id", table_name=RUNS)
    op.create_index(
        "ix_code_executions_user_id_project_id_id", RUNS, ["user_id", "project_id", "id"]
    )
    op.create_index("ix_code_executions_user_id_id", RUNS, ["user_id", "id"])
    with op.batch_alter_table(RUNS) as batch:
        batch.drop_column("instance_id")
    op.drop_index("ix_instances_expires_at", table_name="instances")
    op.drop_table("instances")
