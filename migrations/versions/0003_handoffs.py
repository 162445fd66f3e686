"""Handoffs: callers handed to a person, with the context the agent's screen pop gets.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "handoffs",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("call_id", sa.String(36), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("target", sa.String(128), nullable=False),
        sa.Column("flow", sa.String(128)),
        sa.Column("intent", sa.String(64)),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("context", sa.JSON(), nullable=False),
        sa.Column("webhook_status", sa.String(64), nullable=False),
        sa.Column("webhook_attempts", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["call_id"], ["calls.id"], ondelete="CASCADE", name="fk_handoffs_call_id_calls"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_handoffs"),
    )
    op.create_index("ix_handoffs_call_id", "handoffs", ["call_id"])


def downgrade() -> None:
    op.drop_index("ix_handoffs_call_id", table_name="handoffs")
    op.drop_table("handoffs")
