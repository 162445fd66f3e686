"""Returning callers: the task a caller hung up in the middle of, per caller (a keyed hash) and flow.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "saved_tasks",
        sa.Column("caller", sa.String(64), nullable=False),
        sa.Column("flow", sa.String(64), nullable=False),
        sa.Column("flow_version", sa.String(64), nullable=False),
        sa.Column("state", sa.String(64), nullable=False),
        sa.Column("intent", sa.String(64), nullable=False),
        sa.Column("slots", sa.JSON(), nullable=False),
        sa.Column("saved_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("caller", "flow", name="pk_saved_tasks"),
    )
    op.create_index("ix_saved_tasks_expires_at", "saved_tasks", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_saved_tasks_expires_at", table_name="saved_tasks")
    op.drop_table("saved_tasks")
