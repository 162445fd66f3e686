"""Secure paths in a real call, then a scan: the server process (JSON logs), the store (every
table) and the agent's screen pop must hold no card number and no secure slot value.

The caller keys the 8-digit account number (a secure slot) to hear the balance, then asks for an
agent, whose screen pop gets the call's context. (Spoken card numbers are masked on the same path,
but the bundled recognizer does not hear 16 digits reliably enough for a call test; the writer and
redactor tests feed them in as text.)"""

from __future__ import annotations

import asyncio
import json
import signal
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import MetaData, select

from ivr_server.privacy.redact import Redactor, SecureValues
from ivr_server.store.audit_trail import recent, verify_store
from ivr_server.store.database import create_engine
from tests.conftest import REPO, fresh_database
from tests.e2e.test_banking_call import ScreenPop, prompt_ms, spoken
from tests.support.server_process import migrate, read_until, start
from tests.support.sipp import Keys, Pause, SippAgent, SippCall, agent_scenario, scenario

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("asterisk")]

ACCOUNT = "12345678"  # the demo bank's account: the secure slot's value
SAID = (
    "get me an agent, my card number is four one one one, one one one one, one one one one, one one one one"
)


async def dump_store(url: str) -> list[dict[str, Any]]:
    engine = create_engine(url)
    try:
        meta = MetaData()
        async with engine.connect() as conn:
            await conn.run_sync(meta.reflect)
            rows = [
                {"table": t.name, **dict(r)}
                for t in meta.sorted_tables
                for r in (await conn.execute(select(t))).mappings()
            ]
    finally:
        await engine.dispose()
    return rows


def decoded(value: Any) -> Any:
    """``value`` with the JSON held in its strings (a store's payload columns) decoded, so that
    the scan sees their keys."""
    if isinstance(value, str) and value[:1] in "{[":
        try:
            return decoded(json.loads(value))
        except ValueError:
            return value
    if isinstance(value, dict):
        return {k: decoded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [decoded(v) for v in value]
    return value


def personal(value: Any) -> Counter[str]:
    """The personal data the redactor finds in ``value``, read as the server's redaction reads
    it: identifiers (``channel_id`` "1796581808.123", a UUID) are not a caller's data, even when
    their digits look like a card's."""
    found: Counter[str] = Counter()
    Redactor(SecureValues()).value(decoded(value), found)
    return found


def flagged(items: list[Any], kind: str) -> list[str]:
    """The items (log lines, rows) in which ``kind`` is found: what a failure shows."""
    return [json.dumps(i, default=str)[:300] for i in items if personal(i)[kind]]


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
async def test_no_card_or_secure_value_in_logs_store_or_webhooks(
    kind: str, bank: str, tmp_path: Path
) -> None:
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "banking.yaml").write_text((REPO / "flows" / "banking.yaml").read_text())
    steps = [
        Pause(prompt_ms("welcome")),
        Keys("1"),  # balance
        Pause(prompt_ms("ask_account")),
        Keys(ACCOUNT),
        Pause(prompt_ms("balance", balance="1234.56") + prompt_ms("anything_else")),
        spoken("I want to speak to an agent.", tmp_path, "agent"),
        Pause(prompt_ms("to_agent") + 1000 + prompt_ms("agents_busy")),
        Keys("0"),  # the agent leg was busy: the dialplan's queue, with the context
    ]
    call = SippCall(
        scenario(steps, tmp_path, bye_timeout_ms=30000), service="400", workdir=tmp_path, timeout_s=120
    )
    agent = SippAgent(agent_scenario("busy", tmp_path), tmp_path)
    await agent.start()
    async with fresh_database(kind, tmp_path) as url, ScreenPop() as pop:
        env = {
            "IVR_FLOWS_DIR": str(flows),
            "IVR_DATABASE_URL": url,
            "IVR_METRICS_PORT": "19467",
            "IVR_MEDIA_PORT_MIN": "41300",
            "IVR_MEDIA_PORT_MAX": "41399",
            "IVR_ARI_PASSWORD": "ivr-sandbox",
            "IVR_TOOLS_SERVICES": json.dumps({"bank": {"url": bank}}),
            "IVR_HANDOFF_WEBHOOK_URL": pop.url,
            "IVR_AUDIT_KEY": "privacy-test-key",
            "IVR_LOG_LEVEL": "debug",
        }
        await migrate(env)
        proc = await start(env)
        lines: list[dict] = []
        await read_until(proc, "ari.reconciled", lines)
        sipp = await call.run()
        await read_until(proc, "call.ended", lines)
        flow = [(x["event"], x.get("words"), x.get("intent")) for x in lines if "call_id" in x]
        assert sipp == 0, f"{call.errors()[-500:]}\n{flow}"
        await asyncio.sleep(1.0)  # the webhook's retry after its first 503
        async with httpx.AsyncClient() as http:
            metrics = (await http.get("http://127.0.0.1:19467/metrics")).text
        proc.send_signal(signal.SIGTERM)
        _, rest = await asyncio.wait_for(proc.communicate(), 30)
        lines += [json.loads(line) for line in rest.decode().splitlines()]
        assert proc.returncode == 0, lines[-3:]
        store = await dump_store(url)
        engine = create_engine(url)
        try:
            assert (await verify_store(engine, b"privacy-test-key")).intact
            audited = {e.kind for e in await recent(engine, 500)}
        finally:
            await engine.dispose()

    async with httpx.AsyncClient() as http:
        made = [(c["method"], c["path"]) for c in (await http.get(f"{bank}/_calls")).json()]
    assert ("GET", f"/accounts/{ACCOUNT}/balance") in made, made  # the secure value was really used
    assert {"decision", "tool_call", "transfer", "call_ended", "config_change"} <= audited, audited
    # What a caller could put in the metrics is names and labels: a sample's value is a number the
    # server computed (a latency sum such as 4.1230456789012345 looks like a card to the finder).
    labels = [line.rsplit(" ", 1)[0] for line in metrics.splitlines() if not line.startswith("#")]
    places = (("logs", lines), ("store", store), ("webhooks", pop.received), ("metric labels", labels))
    for where, items in places:
        assert ACCOUNT not in json.dumps(items, default=str), f"the secure account number is in the {where}"
        found = personal(items)
        for kind in ("card", "national_id", "iban"):
            assert found[kind] == 0, f"{found[kind]} {kind} in the {where}: {flagged(items, kind)[:5]}"
    assert ACCOUNT not in metrics and "ivr_calls_ended_total" in metrics
    assert pop.received, "the agent's screen pop got nothing"
    await agent.finish()
