"""Calls and their ordered events.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "calls",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("channel_id", sa.String(128), nullable=False),
        sa.Column("caller_number", sa.String(64)),
        sa.Column("caller_name", sa.String(128)),
        sa.Column("dialed_number", sa.String(64)),
        sa.Column("flow", sa.String(64), nullable=False),
        sa.Column("flow_args", sa.JSON(), nullable=False),
        sa.Column("server_id", sa.String(128), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("answered_at", sa.DateTime(timezone=True)),
        sa.Column("ended_at", sa.DateTime(timezone=True)),
        sa.Column("end_reason", sa.String(64)),
        sa.PrimaryKeyConstraint("id", name="pk_calls"),
    )
    op.create_index("ix_calls_channel_id", "calls", ["channel_id"])
    op.create_index("ix_calls_started_at", "calls", ["started_at"])
    op.create_table(
        "call_events",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("call_id", sa.String(36), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["call_id"], ["calls.id"], ondelete="CASCADE", name="fk_call_events_call_id_calls"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_call_events"),
        sa.UniqueConstraint("call_id", "seq", name="uq_call_events_call_id"),
    )
    op.create_index("ix_call_events_type", "call_events", ["type"])


def downgrade() -> None:
    op.drop_index("ix_call_events_type", table_name="call_events")
    op.drop_table("call_events")
    op.drop_index("ix_calls_started_at", table_name="calls")
    op.drop_index("ix_calls_channel_id", table_name="calls")
    op.drop_table("calls")
