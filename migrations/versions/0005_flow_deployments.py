"""Versioned flows: deployed into the store with a content hash and a version number.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "flow_deployments",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True),
        sa.Column("flow", sa.String(64), nullable=False),
        sa.Column("version_number", sa.Integer(), nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("canary_percent", sa.Integer(), nullable=False),
        sa.Column("deployed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deployed_by", sa.String(128), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_flow_deployments"),
        sa.UniqueConstraint("flow", "version_number", name="uq_flow_deployments_flow"),
    )
    op.create_index("ix_flow_deployments_status", "flow_deployments", ["status"])


def downgrade() -> None:
    op.drop_index("ix_flow_deployments_status", table_name="flow_deployments")
    op.drop_table("flow_deployments")
