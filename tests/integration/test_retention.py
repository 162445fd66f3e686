"""Retention on SQLite and PostgreSQL: each kind of data goes when its window has passed, with one
audit event saying how much; nothing younger is touched, a dry run changes nothing."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from ivr_server.store.audit_trail import recent, verify_store
from ivr_server.store.queries import call_events_of, turns_of
from ivr_server.store.retention import RetentionPolicy, apply_retention
from ivr_server.store.schema import calls, handoffs
from ivr_server.store.writer import CallEvent, CallStarted, Handoff, Turn
from tests.integration.test_audit import write
from tests.integration.test_cli import cli

NOW = datetime.now(UTC).replace(microsecond=0)  # the CLI test runs on the real clock
AGES = {"c400": 400, "c100": 100, "c40": 40, "c1": 1}  # days old


def a_call(call_id: str, days: int) -> list[object]:
    at = NOW - timedelta(days=days)
    return [
        CallStarted(call_id, f"ch-{call_id}", "+15550100", "Ann Caller", "400", "banking", [], "t", at),
        Turn(call_id, 1, "caller", at, "I lost my card", "silence"),
        Turn(call_id, 2, "system", at, "The card ending 4421 is blocked.", "completed"),
        CallEvent(call_id, 1, at, "dtmf", {"digit": "4"}),
        CallEvent(call_id, 2, at, "dtmf_collected", {"digits": "4421"}),
        CallEvent(call_id, 3, at, "answered", {}),
        Handoff(
            f"h-{call_id}",
            call_id,
            at,
            "ivr-agents,100,1",
            "banking@1",
            "agent",
            "banking: agent (last4=4421)",
            {"IVR_SLOT_LAST4": "4421"},
            "delivered",
        ),  # fmt: skip
    ]


async def seeded(engine: AsyncEngine) -> None:
    await write(engine, *[op for call_id, days in AGES.items() for op in a_call(call_id, days)])


async def state(engine: AsyncEngine) -> dict[str, tuple[object, ...]]:
    out: dict[str, tuple[object, ...]] = {}
    async with engine.connect() as conn:
        rows = {r.id: r for r in (await conn.execute(select(calls))).all()}
        pops = {r.call_id: r.summary for r in (await conn.execute(select(handoffs))).all()}
    for call_id in AGES:
        if call_id not in rows:
            continue
        texts = tuple(t.text for t in await turns_of(engine, call_id))
        types = tuple(e.type for e in await call_events_of(engine, call_id))
        out[call_id] = (rows[call_id].caller_number, texts, types, pops[call_id])
    return out


async def test_each_kind_goes_after_its_window_with_one_audit_event(engine: AsyncEngine) -> None:
    await seeded(engine)
    before = await state(engine)
    dry = await apply_retention(engine, RetentionPolicy(), NOW, None, dry_run=True)
    assert dry.removed["calls_deleted"] == 1 and await state(engine) == before
    assert await recent(engine, 10, kind="retention") == []

    report = await apply_retention(engine, RetentionPolicy(30, 90, 365), NOW, None)
    kept = ("I lost my card", "The card ending 4421 is blocked.")
    emptied = ("", "")
    assert await state(engine) == {
        "c100": (None, emptied, ("dtmf:expired", "dtmf_collected:expired", "answered"), ""),
        "c40": ("+15550100", emptied, ("dtmf:expired", "dtmf_collected:expired", "answered"), ""),
        "c1": ("+15550100", kept, ("dtmf", "dtmf_collected", "answered"), "banking: agent (last4=4421)"),
    }
    assert report.removed == {
        "call_events_deleted": 3, "turns_deleted": 2, "handoffs_deleted": 1, "calls_deleted": 1,
        "turns_emptied": 4, "key_events_emptied": 4, "handoffs_emptied": 2, "caller_ids_cleared": 1,
        "saved_tasks_deleted": 0,
    }  # fmt: skip
    (audited,) = await recent(engine, 10, kind="retention")
    assert audited.payload["removed"] == report.removed
    assert audited.payload["cutoffs"]["calls"] == (NOW - timedelta(days=365)).isoformat()
    assert (await verify_store(engine, None)).intact

    again = await apply_retention(engine, RetentionPolicy(30, 90, 365), NOW, None)
    assert not any(again.removed.values())  # already done: nothing twice


async def test_zero_keeps_forever(engine: AsyncEngine) -> None:
    await seeded(engine)
    before = await state(engine)
    report = await apply_retention(engine, RetentionPolicy(0, 0, 0, 0), NOW, None)
    # saved tasks still go once past their flow's keep_hours (none here)
    assert report.removed == {"saved_tasks_deleted": 0} and await state(engine) == before


async def test_the_cli_runs_it(database_url: str, engine: AsyncEngine) -> None:
    await seeded(engine)
    env = {"IVR_DATABASE_URL": database_url, "IVR_RETENTION_CALLS_DAYS": "30"}
    dry = cli("retention", "run", "--dry-run", env=env)
    assert dry.returncode == 0, dry.stderr
    assert (
        "would remove: call_events_deleted 9, turns_deleted 6, handoffs_deleted 3, calls_deleted 3"
        in dry.stdout
    )
    done = cli("retention", "run", "--json", env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["removed"]["calls_deleted"] == 3  # c400, c100, c40
    assert set(await state(engine)) == {"c1"}
