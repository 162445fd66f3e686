"""Tables. Migrations in migrations/ create them; this module is what the code writes to."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    UniqueConstraint,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_name)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# Column sizes the writer truncates to, so an oversized value never blocks the queue.
SIZES = {
    "channel_id": 128,
    "caller_number": 64,
    "caller_name": 128,
    "dialed_number": 64,
    "flow": 64,
    "end_reason": 64,
    "server_id": 128,
    "type": 64,
}

calls = Table(
    "calls",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("channel_id", String(128), nullable=False, index=True),
    Column("caller_number", String(64)),
    Column("caller_name", String(128)),
    Column("dialed_number", String(64)),
    Column("flow", String(64), nullable=False),
    Column("flow_args", JSON, nullable=False),
    Column("server_id", String(128), nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False, index=True),
    Column("answered_at", DateTime(timezone=True)),
    Column("ended_at", DateTime(timezone=True)),
    Column("end_reason", String(64)),
)

call_events = Table(
    "call_events",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("call_id", String(36), ForeignKey("calls.id", ondelete="CASCADE"), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("type", String(64), nullable=False),
    Column("payload", JSON, nullable=False),
    UniqueConstraint("call_id", "seq"),
    Index("ix_call_events_type", "type"),
)
