"""Tables. Migrations in migrations/ create them; this module is what the code writes to."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
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
    "engine": 64,
    "model": 128,
    "outcome": 32,
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
    # When the event bus took it (store/event_bus.py); NULL: not yet. Events recorded before the
    # column existed count as published (history, not news).
    Column("published_at", DateTime(timezone=True)),
    UniqueConstraint("call_id", "seq"),
    Index("ix_call_events_type", "type"),
    Index(
        "ix_call_events_unpublished",
        "id",
        postgresql_where=text("published_at IS NULL"),
        sqlite_where=text("published_at IS NULL"),
    ),
)

# One row per turn. Caller turns: what the recognizer heard, where in the call (ms from media
# start), and end of speech -> first reply audio. System turns: what was said, by which engine,
# from the prompt cache or synthesized.
turns = Table(
    "turns",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("call_id", String(36), ForeignKey("calls.id", ondelete="CASCADE"), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("role", String(8), nullable=False),  # caller | system
    Column("at", DateTime(timezone=True), nullable=False),
    Column("text", Text, nullable=False),
    Column("confidence", Float),
    Column("engine", String(64)),
    Column("model", String(128)),
    Column("start_ms", Integer),
    Column("end_ms", Integer),
    Column("latency_ms", Integer),
    Column("cached", Boolean),
    Column("outcome", String(32), nullable=False),
    Column("detail", JSON, nullable=False),
    UniqueConstraint("call_id", "seq"),
)

# A caller handed to a person: what the agent's screen pop gets, and whether it got there.
handoffs = Table(
    "handoffs",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("call_id", String(36), ForeignKey("calls.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("target", String(128), nullable=False),  # context,extension,priority
    Column("flow", String(128)),  # name@version
    Column("intent", String(64)),
    Column("summary", Text, nullable=False),
    Column("context", JSON, nullable=False),  # the channel variables set (no secure slot is among them)
    Column("webhook_status", String(64), nullable=False),  # pending, delivered, failed: ..., not_configured
    Column("webhook_attempts", Integer, nullable=False),
)

# The audit trail: append-only and hash-chained (ivr_server/audit/chain.py). ``seq`` is the place
# in the chain, given when the row is written; ``body`` is the canonical text the hash covers.
# No foreign key to calls: the trail outlives the call records that retention removes.
audit_events = Table(
    "audit_events",
    metadata,
    Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=False),
    Column("event_id", String(36), nullable=False, unique=True),
    Column("at", DateTime(timezone=True), nullable=False, index=True),
    Column("kind", String(64), nullable=False, index=True),
    Column("call_id", String(36), index=True),
    Column("body", Text, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
)

# Flows deployed into the store: each version's text, by content hash. Per flow at most one
# version is ``active`` and at most one ``candidate`` (which takes ``canary_percent`` of new calls).
flow_deployments = Table(
    "flow_deployments",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("flow", String(64), nullable=False),
    Column("version_number", Integer, nullable=False),
    Column("content_hash", String(64), nullable=False),
    Column("source", Text, nullable=False),
    Column("status", String(16), nullable=False),  # candidate, active, retired, replaced, rolled_back
    Column("canary_percent", Integer, nullable=False),
    Column("deployed_at", DateTime(timezone=True), nullable=False),
    Column("deployed_by", String(128), nullable=False),
    Column("changed_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("flow", "version_number"),
    Index("ix_flow_deployments_status", "status"),
)

# Returning callers (dialog/returning.py): per caller and flow, the task they hung up in the
# middle of. The caller is a keyed hash of their number, never the number; ``slots`` holds no
# secure slot and nothing the redaction step would mask. Deleted when offered, when the caller
# finishes a call, and by retention after ``expires_at`` (the flow's keep_hours).
saved_tasks = Table(
    "saved_tasks",
    metadata,
    Column("caller", String(64), primary_key=True),  # HMAC-SHA256, hex
    Column("flow", String(64), primary_key=True),
    Column("flow_version", String(64), nullable=False),
    Column("state", String(64), nullable=False),
    Column("intent", String(64), nullable=False),
    Column("slots", JSON, nullable=False),
    Column("saved_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False, index=True),
)

# Servers sharing the store (telephony/rescue.py): each writes ``seen_at`` (the database's clock)
# every fraction of a second; a server silent past IVR_RESCUE_AFTER_S is taken for dead and
# its calls on the same Asterisk are sent on by a live one. A server that stops cleanly deletes
# its row.
servers = Table(
    "servers",
    metadata,
    Column("id", String(128), primary_key=True),  # host/ari_app, as calls.server_id
    Column("asterisk", String(256), nullable=False),  # the ARI address: who can reach its calls
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("seen_at", DateTime(timezone=True), nullable=False),
)
