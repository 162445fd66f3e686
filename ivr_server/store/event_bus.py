"""Call events out to a message bus (Redis Streams) for other systems: CRM, analytics, a wallboard.

The path is the store's own: a call event is journaled in the local outbox, committed to the
database, and only then taken by the publisher, which sends the oldest events not yet published
(``published_at IS NULL``) and marks them in the same transaction once the bus has them. So an
event reaches the bus at least once: a bus that is down delays it (nothing is lost: the database
holds it), a publisher that dies between sending and marking sends it again on the next run. Each
entry carries ``event_id`` ("<call id>:<seq>"), the same on a resend: consumers drop what they
have seen. Several servers on one PostgreSQL each run a publisher: each sends its own calls'
events, so a call's events go out in order, and takes over another's that wait longer than
TAKEOVER_S (that server is gone); a batch is claimed with ``FOR UPDATE SKIP LOCKED``, so two
publishers never send the same events at once.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import structlog
from redis.exceptions import RedisError
from sqlalchemy import ColumnElement, and_, func, or_, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from ivr_server.errors import ConfigError
from ivr_server.observability.metrics import Metrics
from ivr_server.store.schema import call_events, calls

log = structlog.get_logger(__name__)

RETRY_MAX_S = 10.0
TAKEOVER_S = 30.0  # another server's events this old are published by whoever is here


@dataclass(frozen=True)
class BusEvent:
    """One call event as the bus carries it (flat string fields: a stream entry's)."""

    event_id: str
    call_id: str
    seq: int
    at: datetime
    type: str
    flow: str
    server_id: str
    payload: dict[str, Any]

    def fields(self) -> dict[str, str]:
        return {
            "event_id": self.event_id,
            "call_id": self.call_id,
            "seq": str(self.seq),
            "at": self.at.isoformat(),
            "type": self.type,
            "flow": self.flow,
            "server_id": self.server_id,
            "payload": json.dumps(self.payload, sort_keys=True, default=str),
        }


class Bus(Protocol):
    async def send(self, events: Sequence[BusEvent]) -> None:
        """All of ``events``, in order, or an exception (then none counts as sent)."""
        ...

    async def aclose(self) -> None: ...


class RedisStream:
    """XADD to one stream, capped near ``maxlen`` entries (the oldest trimmed: the store keeps
    the record; the bus is a feed)."""

    def __init__(self, url: str, stream: str, maxlen: int, timeout_s: float = 5.0) -> None:
        import redis.asyncio as redis

        if not url.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigError(f"IVR_BUS_URL: a redis:// (or rediss://, unix://) URL, not {url!r}")
        self.stream, self.maxlen = stream, maxlen
        self.client = redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)

    async def send(self, events: Sequence[BusEvent]) -> None:
        async with self.client.pipeline(transaction=False) as pipe:
            for event in events:
                pipe.xadd(self.stream, event.fields(), maxlen=self.maxlen, approximate=True)  # type: ignore[arg-type]
            await pipe.execute()

    async def aclose(self) -> None:
        await self.client.aclose()


async def publish_batch(
    engine: AsyncEngine,
    bus: Bus,
    limit: int = 200,
    server_id: str | None = None,
    takeover_s: float = TAKEOVER_S,
) -> int:
    """Send the oldest unpublished events (at most ``limit``) and mark them; returns how many.
    The claim, the send and the mark are one transaction: a failed send leaves them unpublished.
    With ``server_id``: that server's calls, and others' events older than ``takeover_s`` (their
    server is gone or stuck), so a call's events go out in order, by one publisher."""
    e, c = call_events.c, calls.c
    mine: ColumnElement[bool] = e.published_at.is_(None)
    if server_id is not None:
        stale = e.at < datetime.now(UTC) - timedelta(seconds=takeover_s)
        mine = and_(mine, or_(c.server_id == server_id, stale))
    claim = (
        select(e.id, e.call_id, e.seq, e.at, e.type, e.payload, c.flow, c.server_id)
        .join(calls, calls.c.id == e.call_id)
        .where(mine)
        .order_by(e.id)
        .limit(limit)
        .with_for_update(of=call_events, skip_locked=True)
    )
    async with engine.begin() as conn:
        rows = (await conn.execute(claim)).all()
        if not rows:
            return 0
        events = [
            BusEvent(
                f"{r.call_id}:{r.seq}",
                r.call_id,
                r.seq,
                _aware(r.at),
                r.type,
                r.flow,
                r.server_id,
                dict(r.payload),
            )  # fmt: skip
            for r in rows
        ]
        await bus.send(events)
        now = datetime.now(UTC)
        await conn.execute(update(call_events).where(e.id.in_([r.id for r in rows])).values(published_at=now))
    return len(rows)


async def backlog(engine: AsyncEngine) -> int:
    """Events not yet published."""
    async with engine.connect() as conn:
        n = await conn.scalar(select(func.count()).where(call_events.c.published_at.is_(None)))
    return int(n or 0)


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)  # SQLite gives naive UTC


async def keep_publishing(
    engine: AsyncEngine,
    bus: Bus,
    metrics: Metrics | None = None,
    every_s: float = 0.5,
    batch: int = 200,
    server_id: str | None = None,
) -> None:
    """Publish until cancelled: a full batch goes again at once, an empty one waits ``every_s``;
    a bus or database failure is logged when it starts and when it clears, and retried with
    backoff (the events wait in the database)."""
    failing: str | None = None
    delay = every_s
    while True:
        try:
            sent = await publish_batch(engine, bus, batch, server_id)
        except (SQLAlchemyError, OSError, RedisError) as err:
            if metrics is not None:
                metrics.bus_failures.inc()
            reason = f"{type(err).__name__}: {err}"[:300]
            if failing is None:
                log.warning("bus.publish_failed", error=reason, retry_in_s=round(delay, 1))
            failing, delay = reason, min(delay * 2, RETRY_MAX_S)
            await asyncio.sleep(delay)
            continue
        if failing is not None:
            log.info("bus.publish_recovered", after=failing)
            failing, delay = None, every_s
        if metrics is not None and sent:
            metrics.bus_published.inc(sent)
        if sent < batch:
            await asyncio.sleep(every_s)
