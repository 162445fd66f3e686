"""The event bus: which call events it has taken (published_at), and an index of those it has not.

Events already recorded count as published: the bus carries what happens from now on, not the
history (that is in the store, for `calls show` and the audit trail).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("call_events", sa.Column("published_at", sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE call_events SET published_at = at")
    op.create_index(
        "ix_call_events_unpublished",
        "call_events",
        ["id"],
        postgresql_where=sa.text("published_at IS NULL"),
        sqlite_where=sa.text("published_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_call_events_unpublished", table_name="call_events")
    with op.batch_alter_table("call_events") as batch:
        batch.drop_column("published_at")
