"""Returning callers end to end below the telephone: the engine keeps the task a caller hung up
in the middle of and offers it on their next call, on SQLite and PostgreSQL through the real
writer; a secure slot or personal data never reaches the saved task; a database that is down or
silent costs the caller at most the lookup timeout; retention deletes saved tasks past their
time; migration 0006 goes up and down on both back ends."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, inspect, select
from sqlalchemy.ext.asyncio import AsyncEngine

from ivr_server.dialog.engine import Engine
from ivr_server.dialog.flowtest import ScriptPort
from ivr_server.dialog.returning import MemoryTasks, SavedTask, TaskMemory
from ivr_server.dialog.session import Session
from ivr_server.dialog.spec.loader import check_text
from ivr_server.dialog.spec.model import Flow
from ivr_server.observability.metrics import Metrics
from ivr_server.privacy.caller_id import caller_hash
from ivr_server.store.audit_trail import recent
from ivr_server.store.database import alembic_config, create_engine, upgrade
from ivr_server.store.outbox import Outbox
from ivr_server.store.retention import RetentionPolicy, apply_retention
from ivr_server.store.saved_tasks import StoredTasks, TaskSaved
from ivr_server.store.schema import saved_tasks
from ivr_server.store.writer import OP_KINDS, StoreWriter
from tests.conftest import fresh_database

PAY = """
flow: pay
start: menu
handoff: bye
returning: {window_min: 30, keep_hours: 2}
prompts:
  menu: "How can I help?"
  ask_account: "Your account number?"
  ask_amount: "How much?"
  ask_phone: "Your phone number for the receipt?"
  ask_day: "Which day?"
  paid: "Paid {amount:amount} on {day}."
  bye: "Bye."
  returning_offer: "Welcome back. Finish your {task}?"
intents:
  payment: {keywords: [pay, payment]}
  bye: {keywords: [goodbye]}
slots:
  account: {type: digits, length: 8, prompt: ask_account, secure: true}
  amount: {type: amount, prompt: ask_amount}
  phone: {type: digits, length: 10, prompt: ask_phone}
  day: {type: date, prompt: ask_day}
states:
  menu:
    say: menu
    listen: [payment, bye]
    on:
      - {intent: payment, goto: pay}
      - {intent: bye, goto: bye}
      - {event: no_match, goto: bye}
      - {event: no_input, goto: bye}
  pay:
    collect: [account, amount, phone, day]
    do: [{say: paid}]
    on: [{event: done, goto: menu}, {event: no_match, goto: bye}, {event: no_input, goto: bye}]
  bye:
    say: bye
    do: [hangup]
"""
CALLER = caller_hash("+15550100", b"k" * 32) or ""
FIRST_CALL = [
    {"say": "I want to make a payment"},
    {"keys": "12345678"},  # the account: secure
    {"say": "twenty five dollars"},
    {"keys": "5551234567"},  # a phone number: personal data
    {"hangup": True, "expect": {"state": "pay"}},  # asked for the day
]
RETURN_CALL = [{"say": "yes"}, {"keys": "12345678"}, {"keys": "5551234567"}, {"say": "the third of May"}]


def pay_flow() -> Flow:
    flow, problems = check_text(PAY, "pay.yaml")
    assert flow is not None, [str(p) for p in problems]
    return flow


async def call(
    flow: Flow, turns: list[dict[str, Any]], tasks: TaskMemory, audited: list[tuple[str, dict[str, Any]]]
) -> tuple[Session, ScriptPort]:
    """One call of CALLER; a ``hangup`` turn ends it as a hang-up does (the call is cancelled)."""
    port = ScriptPort([*turns, {"say": "goodbye"}] if not any("hangup" in t for t in turns) else turns)
    engine = Engine(flow, port, caller=CALLER, tasks=tasks, audit=lambda k, p: audited.append((k, p)))
    port.engine = engine
    try:
        session = await engine.run()
    except asyncio.CancelledError:
        assert port.caller_hung_up
        session = engine.session
    assert not port.failures, port.failures
    return session, port


def returning_events(audited: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    return [p for kind, p in audited if kind == "returning"]


async def test_an_abandoned_task_is_offered_and_known_answers_are_not_asked_again() -> None:
    flow, tasks, audited = pay_flow(), MemoryTasks(), []
    first, _ = await call(flow, FIRST_CALL, tasks, audited)
    assert first.outcome == "abandoned"
    saved = tasks.tasks[CALLER, "pay"]
    assert (saved.state, saved.intent, saved.slots) == ("pay", "payment", {"amount": first.slots["amount"]})
    (kept,) = returning_events(audited)
    assert kept["action"] == "kept" and kept["slots"] == ["amount"]
    assert kept["reason"] == "hung up while asked for day; not kept: phone"
    assert "12345678" not in str(audited) + str(saved) and "5551234567" not in str(saved)

    audited.clear()
    second, port = await call(flow, RETURN_CALL, tasks, audited)
    assert second.returning == "resumed" and second.visited == ["pay", "menu", "bye"]
    assert port.heard[0] == "Welcome back. Finish your payment?"
    assert "How much?" not in port.heard  # known from the first call
    assert {"Your account number?", "Your phone number for the receipt?", "Which day?"} <= set(port.heard)
    assert second.slots["amount"] == first.slots["amount"] and second.slots["day"] == "2026-05-03"
    assert [e["action"] for e in returning_events(audited)] == ["offered", "resumed"]
    assert returning_events(audited)[1]["inputs"] == {"said": "yes", "keyed": ""}
    assert tasks.tasks == {}  # offered once


async def test_a_no_starts_as_usual_and_the_offer_is_not_made_again() -> None:
    flow, tasks, audited = pay_flow(), MemoryTasks(), []
    await call(flow, FIRST_CALL, tasks, audited)
    second, port = await call(flow, [{"say": "no thanks"}], tasks, audited)
    assert second.returning == "declined" and second.visited == ["menu", "bye"]
    assert port.heard[:2] == ["Welcome back. Finish your payment?", "How can I help?"]
    third, port = await call(flow, [], tasks, audited)
    assert third.returning is None and port.heard[0] == "How can I help?"


async def test_a_hang_up_at_the_offer_or_an_open_question_keeps_nothing() -> None:
    flow, tasks, audited = pay_flow(), MemoryTasks(), []
    await call(flow, FIRST_CALL, tasks, audited)
    gone, _ = await call(flow, [{"hangup": True}], tasks, audited)  # during the offer
    assert gone.returning == "offered" and tasks.tasks == {}
    done = [*FIRST_CALL[:-1], {"say": "the third of May"}, {"hangup": True, "expect": {"state": "menu"}}]
    finished, _ = await call(flow, done, tasks, audited)
    assert finished.outcome == "abandoned" and "day" in finished.slots and tasks.tasks == {}


async def test_a_flow_without_returning_never_looks() -> None:
    class Refusing:
        async def find(self, caller: str, flow: str) -> SavedTask | None:
            raise AssertionError("looked up")

        def keep(self, caller: str, task: SavedTask, expires_at: datetime) -> None:
            raise AssertionError("kept")

        def forget(self, caller: str, flow: str) -> None:
            raise AssertionError("forgot")

    flow, problems = check_text(PAY.replace("returning: {window_min: 30, keep_hours: 2}\n", "").replace(
        '  returning_offer: "Welcome back. Finish your {task}?"\n', ""), "pay.yaml")  # fmt: skip
    assert flow is not None, [str(p) for p in problems]
    session, _ = await call(flow, FIRST_CALL, Refusing(), [])
    assert session.outcome == "abandoned"


# --- the store ------------------------------------------------------------------------------
@pytest.fixture
async def writer(engine: AsyncEngine) -> AsyncIterator[StoreWriter]:
    w = StoreWriter(engine, Metrics())
    task = asyncio.create_task(w.run())
    yield w
    task.cancel()


async def test_the_store_keeps_one_task_per_caller_and_flow(engine: AsyncEngine, writer: StoreWriter) -> None:
    tasks = StoredTasks(engine, writer.submit, 2.0)
    at = datetime(2026, 12, 6, 10, 0, tzinfo=UTC)
    task = SavedTask("pay", "abc123", "pay", "payment", {"amount": "25.00"}, at)
    tasks.keep(CALLER, task, at + timedelta(hours=2))
    tasks.keep("other", task, at + timedelta(hours=2))
    assert await writer.flush(10)
    assert await tasks.find(CALLER, "pay") == task
    assert await tasks.find(CALLER, "banking") is None
    later = SavedTask("pay", "def456", "pay", "payment", {}, at + timedelta(minutes=5))
    tasks.keep(CALLER, later, at + timedelta(hours=3))  # replaces, within one batch with a forget
    tasks.forget(CALLER, "pay")
    tasks.keep(CALLER, later, at + timedelta(hours=3))
    assert await writer.flush(10)
    assert await tasks.find(CALLER, "pay") == later
    tasks.forget(CALLER, "pay")
    assert await writer.flush(10)
    assert await tasks.find(CALLER, "pay") is None and await tasks.find("other", "pay") == task
    assert writer.rejected == 0


async def test_abandon_then_return_through_the_store(engine: AsyncEngine, writer: StoreWriter) -> None:
    """Two calls of the same caller with the server's own TaskMemory: the second resumes."""
    flow, audited = pay_flow(), []
    tasks = StoredTasks(engine, writer.submit, 2.0)
    await call(flow, FIRST_CALL, tasks, audited)
    assert await writer.flush(10)
    async with engine.connect() as conn:
        (row,) = (await conn.execute(select(saved_tasks))).mappings().all()
    assert (row["caller"], row["state"], row["intent"], row["flow_version"]) == (
        CALLER, "pay", "payment", flow.version,
    )  # fmt: skip
    assert set(row["slots"]) == {"amount"} and "5550100" not in str(dict(row))
    assert row["expires_at"] - row["saved_at"] == timedelta(hours=2)
    second, _ = await call(flow, RETURN_CALL, tasks, audited)
    assert second.returning == "resumed" and "amount" in second.slots
    assert await writer.flush(10)
    async with engine.connect() as conn:
        assert (await conn.execute(select(func.count()).select_from(saved_tasks))).scalar() == 0


def test_a_saved_task_survives_the_outbox(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.sqlite3", "sqlite+aiosqlite:///x.db", OP_KINDS)
    try:
        at = datetime(2026, 12, 6, 10, 0, tzinfo=UTC)
        ops = [
            TaskSaved(CALLER, "pay", at, "pay", "v1", "payment", {"amount": "25.00"}, at),
            TaskSaved(CALLER, "pay", at),
        ]
        for op in ops:
            outbox.append(op)
        assert [op for _, op in outbox.load()] == ops
    finally:
        outbox.close()


async def test_a_database_that_is_down_means_no_offer_and_no_wait() -> None:
    """Refused at once: the caller is greeted at once; the call's end removes whatever the store
    may still hold, through the writer (it waits for the database, the caller does not)."""
    flow, audited, submitted = pay_flow(), [], []
    engine = create_engine("postgresql+asyncpg://nobody@127.0.0.1:1/none")
    try:
        started = time.monotonic()
        session, port = await call(flow, [], StoredTasks(engine, submitted.append, 0.5), audited)
        assert time.monotonic() - started < 2.0
    finally:
        await engine.dispose()
    assert port.heard[0] == "How can I help?" and session.returning is None
    (failed,) = returning_events(audited)
    assert failed["action"] == "lookup_failed" and "saved task lookup failed" in failed["reason"]
    assert submitted == [TaskSaved(CALLER, "pay", submitted[0].at)]


@asynccontextmanager
async def silent_database() -> AsyncIterator[AsyncEngine]:
    """An engine whose database takes the connection and never says a word."""
    held: list[asyncio.StreamWriter] = []
    server = await asyncio.start_server(lambda _r, w: held.append(w), "127.0.0.1", 0)
    engine = create_engine(f"postgresql+asyncpg://nobody@127.0.0.1:{server.sockets[0].getsockname()[1]}/x")
    try:
        yield engine
    finally:
        await engine.dispose()
        for w in held:
            w.close()
        server.close()
        await server.wait_closed()


async def test_a_database_that_does_not_answer_costs_the_lookup_timeout() -> None:
    """A peer that takes the connection and says nothing: the greeting comes after the timeout."""
    flow, audited = pay_flow(), []
    async with silent_database() as engine:
        started = time.monotonic()
        _, port = await call(flow, [], StoredTasks(engine, lambda _op: None, 0.3), audited)
        waited = time.monotonic() - started
    assert 0.3 <= waited < 1.5 and port.heard[0] == "How can I help?"
    assert returning_events(audited)[0]["action"] == "lookup_failed"


async def test_a_caller_gone_during_the_lookup_leaves_the_saved_task_alone() -> None:
    submitted: list[object] = []
    port = ScriptPort([])
    async with silent_database() as engine:
        runner = Engine(pay_flow(), port, caller=CALLER, tasks=StoredTasks(engine, submitted.append, 5.0))
        port.engine = runner
        running = asyncio.create_task(runner.run())
        await asyncio.sleep(0.3)
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running
    assert submitted == [] and port.heard == []


# --- retention and the migration ------------------------------------------------------------
async def test_retention_deletes_saved_tasks_past_their_time(
    engine: AsyncEngine, writer: StoreWriter
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    tasks = StoredTasks(engine, writer.submit, 2.0)
    for caller, saved_hours_ago, keep_hours in (("fresh", 1, 24), ("expired", 3, 2), ("capped", 80, 100)):
        at = now - timedelta(hours=saved_hours_ago)
        tasks.keep(caller, SavedTask("pay", "v", "pay", "payment", {}, at), at + timedelta(hours=keep_hours))
    assert await writer.flush(10)
    policy = RetentionPolicy(saved_tasks_hours=72)
    dry = await apply_retention(engine, policy, now, None, dry_run=True)
    assert dry.removed["saved_tasks_deleted"] == 2 and await tasks.find("expired", "pay") is not None
    report = await apply_retention(engine, policy, now, None)
    assert report.removed["saved_tasks_deleted"] == 2
    assert report.cutoffs["saved_tasks"] == (now - timedelta(hours=72)).isoformat()
    assert [await tasks.find(c, "pay") is not None for c in ("fresh", "expired", "capped")] == [
        True,
        False,
        False,
    ]
    (event,) = [e for e in await recent(engine, 10) if e.kind == "retention"]
    assert event.payload["removed"]["saved_tasks_deleted"] == 2
    uncapped = await apply_retention(
        engine, RetentionPolicy(saved_tasks_hours=0), now + timedelta(hours=23), None
    )
    assert uncapped.cutoffs["saved_tasks"] is None and uncapped.removed["saved_tasks_deleted"] == 0


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
async def test_migration_0006_goes_up_and_down(kind: str, tmp_path: Path) -> None:
    from alembic import command

    async with fresh_database(kind, tmp_path) as url:
        engine = create_engine(url)
        try:

            async def tables() -> set[str]:
                async with engine.connect() as conn:
                    return set(await conn.run_sync(lambda c: inspect(c).get_table_names()))

            await asyncio.to_thread(upgrade, url)
            assert "saved_tasks" in await tables()
            await asyncio.to_thread(command.downgrade, alembic_config(url), "0005")
            assert "saved_tasks" not in await tables() and "flow_deployments" in await tables()
            await asyncio.to_thread(upgrade, url)
            assert "saved_tasks" in await tables()
        finally:
            await engine.dispose()
