"""The audit trail on SQLite and PostgreSQL: chained as written, refused changes, and
`ivr-server audit verify` finding the first edited, deleted, reordered or inserted row."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from ivr_server.audit import chain
from ivr_server.observability.metrics import Metrics
from ivr_server.privacy.redact import Redactor, SecureValues
from ivr_server.store.audit_append import AuditEvent
from ivr_server.store.audit_trail import chain_rows, recent, verify_store
from ivr_server.store.queries import turns_of
from ivr_server.store.writer import CallStarted, StoreWriter, Turn
from tests.integration.test_cli import cli

T0 = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
KEY = b"test-audit-key"


def event(i: int, call_id: str | None = "call-1", **payload: object) -> AuditEvent:
    return AuditEvent(
        "decision", T0 + timedelta(seconds=i), {"i": i, "intent": "balance", **payload}, call_id
    )


async def write(
    engine: AsyncEngine, *ops: object, key: bytes | None = None, redactor: Redactor | None = None
) -> None:
    writer = StoreWriter(engine, Metrics(), audit_key=key, redactor=redactor)
    task = asyncio.create_task(writer.run())
    for op in ops:
        writer.submit(op)  # type: ignore[arg-type]
    assert await writer.flush(10)
    task.cancel()


async def tamper(engine: AsyncEngine, *statements: str) -> None:
    """What someone with the table owner's rights can do: switch the refusal off, then edit."""
    async with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            await conn.execute(text("ALTER TABLE audit_events DISABLE TRIGGER USER"))
        else:
            await conn.execute(text("DROP TRIGGER IF EXISTS audit_events_no_update"))
            await conn.execute(text("DROP TRIGGER IF EXISTS audit_events_no_delete"))
        for statement in statements:
            await conn.exec_driver_sql(statement)


async def ten_events(engine: AsyncEngine, key: bytes | None = None) -> None:
    # Three writers in turn: a restart (or another server) carries the chain on from the store.
    await write(engine, *[event(i) for i in range(1, 5)], key=key)
    await write(engine, *[event(i) for i in range(5, 8)], key=key)
    await write(engine, *[event(i, None) for i in range(8, 11)], key=key)


async def test_events_are_chained_in_order_across_writers(engine: AsyncEngine) -> None:
    await ten_events(engine)
    rows = [r async for r in chain_rows(engine)]
    assert [r.seq for r in rows] == list(range(1, 11))
    assert rows[0].prev_hash == chain.GENESIS
    assert all(b.prev_hash == a.hash for a, b in zip(rows, rows[1:], strict=False))
    assert [json.loads(r.body)["payload"]["i"] for r in rows] == list(range(1, 11))
    verdict = await verify_store(engine, None)
    assert verdict.intact and verdict.rows == 10 and verdict.last_seq == 10


async def test_an_event_sent_again_is_written_once(engine: AsyncEngine) -> None:
    """A batch whose commit outcome was lost is sent again: the event id keeps it single."""
    once = AuditEvent(
        "transfer", T0, {"target": "agents"}, "call-1", event_id="6d1c5a5e-0000-4000-8000-000000000001"
    )
    await write(engine, once, event(2))
    await write(engine, once, event(3))
    rows = [r async for r in chain_rows(engine)]
    assert [r.kind for r in rows] == ["transfer", "decision", "decision"]
    assert (await verify_store(engine, None)).intact


async def test_the_database_refuses_update_and_delete(engine: AsyncEngine) -> None:
    await write(engine, event(1), event(2))
    for statement in (
        "UPDATE audit_events SET kind = 'edited' WHERE seq = 1",
        "DELETE FROM audit_events WHERE seq = 2",
        *(["TRUNCATE audit_events"] if engine.dialect.name == "postgresql" else []),
    ):
        with pytest.raises(DBAPIError, match="append-only"):
            async with engine.begin() as conn:
                await conn.execute(text(statement))
    assert (await verify_store(engine, None)).rows == 2


FORGED_BODY = chain.body(5, "forged-event", T0, "transfer", "call-1", {"amount": 1000})


@pytest.mark.parametrize(
    ("statements", "bad_seq", "words"),
    [
        (["UPDATE audit_events SET body = replace(body, '\"i\":5', '\"i\":50') WHERE seq = 5"], 5, "edited"),
        (["UPDATE audit_events SET kind = 'transfer' WHERE seq = 5"], 5, "column kind"),
        (["DELETE FROM audit_events WHERE seq = 5"], 6, "missing"),
        (
            [
                "UPDATE audit_events SET seq = 100 WHERE seq = 4",
                "UPDATE audit_events SET seq = 4 WHERE seq = 5",
                "UPDATE audit_events SET seq = 5 WHERE seq = 100",
            ],
            4,
            "prev_hash",
        ),
        (["DELETE FROM audit_events WHERE seq = 10"], None, ""),  # the tail: see the note in the test
    ],
    ids=["edit-body", "edit-column", "delete", "reorder", "delete-tail"],
)
async def test_verify_names_the_first_tampered_row(
    engine: AsyncEngine, statements: list[str], bad_seq: int | None, words: str
) -> None:
    await ten_events(engine)
    assert (await verify_store(engine, None)).intact
    await tamper(engine, *statements)
    verdict = await verify_store(engine, None)
    if bad_seq is None:
        # Cutting rows off the end leaves a shorter chain that is consistent: the trigger is what
        # stops it, and the head hash (`audit verify` prints it) shows it to whoever noted it.
        assert verdict.intact and verdict.last_seq == 9
        return
    assert verdict.broken is not None, "tampering went unnoticed"
    assert verdict.broken.seq == bad_seq and words in verdict.broken.problem


async def test_an_inserted_row_is_found(engine: AsyncEngine) -> None:
    """A row slipped in at seq 5 (the later ones renumbered). Without a key the forger can make
    its own hash consistent, so the break shows at the next row; with IVR_AUDIT_KEY at itself."""
    for key, bad_seq in ((None, 6), (KEY, 5)):
        if key:  # start again, keyed
            await tamper(engine, "DELETE FROM audit_events")
        await ten_events(engine, key)
        rows = {r.seq: r async for r in chain_rows(engine)}
        forged_hash = chain.link(rows[4].hash, FORGED_BODY)  # the plain hash: the forger has no key
        await tamper(
            engine,
            *[f"UPDATE audit_events SET seq = {s + 100} WHERE seq = {s}" for s in range(10, 4, -1)],
            *[f"UPDATE audit_events SET seq = {s + 1} WHERE seq = {s + 100}" for s in range(5, 11)],
            "INSERT INTO audit_events (seq, event_id, at, kind, call_id, body, prev_hash, hash) VALUES "
            f"(5, 'forged-event', '2026-11-24 09:00:00', 'transfer', 'call-1', '{FORGED_BODY}', "
            f"'{rows[4].hash}', '{forged_hash}')",
        )
        verdict = await verify_store(engine, key)
        assert verdict.broken is not None and verdict.broken.seq == bad_seq, (key, verdict)


async def test_the_cli_verifies_and_names_the_bad_row(database_url: str, engine: AsyncEngine) -> None:
    await ten_events(engine, KEY)
    env = {"IVR_DATABASE_URL": database_url, "IVR_AUDIT_KEY": KEY.decode()}
    intact = cli("audit", "verify", env=env)
    assert intact.returncode == 0, intact.stderr
    assert "audit trail intact: 10 events, last seq 10" in intact.stdout
    keyless = cli("audit", "verify", env={"IVR_DATABASE_URL": database_url})
    assert keyless.returncode == 1 and "verified without it" in keyless.stdout
    await tamper(engine, "UPDATE audit_events SET body = replace(body, 'balance', 'transfer') WHERE seq = 7")
    broken = cli("audit", "verify", "--json", env=env)
    assert broken.returncode == 1, broken.stderr
    report = json.loads(broken.stdout)
    assert report["intact"] is False and report["broken"]["seq"] == 7 and report["rows"] == 7
    listed = cli("audit", "list", "--kind", "decision", "--limit", "3", "--json", env=env)
    assert [e["seq"] for e in json.loads(listed.stdout)] == [8, 9, 10]


async def test_redaction_masks_what_is_stored_and_is_itself_audited(engine: AsyncEngine) -> None:
    secure = SecureValues()
    secure.add("session-1", "8675309")
    card, said = (
        "4111 1111 1111 1111",
        "my card is four one one one one one one one one one one one one one one one",
    )
    await write(
        engine,
        CallStarted("c1", "ch-1", "+15550100", None, "100", "banking", [], "test", T0),
        Turn("c1", 1, "caller", T0, f"{said} and pin 8675309, mail me at ann@example.com", "silence"),
        Turn("c1", 2, "caller", T0, f"it's {card}", "silence"),
        redactor=Redactor(secure),
    )
    texts = [t.text for t in await turns_of(engine, "c1")]
    assert texts == ["my card is [card] and pin [secure], mail me at [email]", "it's [card]"]
    audited = await recent(engine, 10, kind="redaction")
    assert [e.payload for e in audited] == [
        {"where": "Turn", "masked": {"card": 1, "email": 1, "secure": 1}},
        {"where": "Turn", "masked": {"card": 1}},
    ]
    assert all(e.call_id == "c1" for e in audited)
    assert (await verify_store(engine, None)).intact
