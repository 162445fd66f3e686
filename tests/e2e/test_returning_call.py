"""A returning caller in real calls: sandbox Asterisk, SIPp speaking Piper sentences, the demo
bank. The first call says "I lost my card" and hangs up when asked for the card's digits; the
second call from the same number hears "Welcome back. Do you want to finish reporting your lost
card?", says yes, is asked for the digits straight away and gets the card blocked. The store
holds the caller only as a keyed hash, and nothing once the task was offered."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pytest
from sqlalchemy import select

from ivr_server.config import ToolService
from ivr_server.media.g711 import ulaw_decode, ulaw_encode
from ivr_server.privacy.caller_id import caller_hash, caller_id_key
from ivr_server.speech.tts.engines import load_tts_engine
from ivr_server.speech.tts.synthesizer import Synthesizer
from ivr_server.store.database import create_engine
from ivr_server.store.queries import EventRecord, call_events_of, list_calls, turns_of
from ivr_server.store.schema import saved_tasks
from tests.conftest import running_server, server_settings, settle
from tests.e2e.test_banking_call import FLOW, blocking_the_card, prompt_ms, spoken
from tests.e2e.test_voice_call import audio_of
from tests.support.audio import best_match
from tests.support.capture import LoopbackCapture
from tests.support.sipp import Pause, SippCall, scenario

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("asterisk")]

NUMBER = "+15550177"
KEY = "e2e-returning-key"
OFFER = FLOW.prompts["returning_offer_lost_card"].text["en"].render({})


async def rows(url: str) -> list[dict[str, object]]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return [dict(r) for r in (await conn.execute(select(saved_tasks))).mappings().all()]
    finally:
        await engine.dispose()


async def last_call(url: str) -> tuple[list[EventRecord], list[str]]:
    """The newest call's events, and its turns as "role: text (outcome)"."""
    engine = create_engine(url)
    try:
        newest = (await list_calls(engine, 5))[0]
        turns = [f"{t.role}: {t.text} ({t.outcome})" for t in await turns_of(engine, newest.id)]
        return await call_events_of(engine, newest.id), turns
    finally:
        await engine.dispose()


async def test_a_caller_who_hung_up_mid_task_is_offered_to_finish_it(
    database_url: str, bank: str, tmp_path: Path
) -> None:
    service = ToolService(url=bank, breaker_failures=3, breaker_reset_s=30.0)
    settings = server_settings(database_url, tools_services={"bank": service}, returning_caller_key=KEY)
    first = [
        Pause(prompt_ms("welcome")),
        spoken("I lost my card", tmp_path, "lost"),
        Pause(prompt_ms("ask_last4")),
    ]
    second = [
        Pause(prompt_ms("returning_offer_lost_card")),
        spoken("yes, please.", tmp_path, "yes_please"),
        *blocking_the_card(tmp_path),  # asked for the digits straight away
    ]
    hangs_up = SippCall(
        scenario(first, tmp_path, caller=NUMBER, server_hangs_up=False), service="400", workdir=tmp_path
    )
    returns = SippCall(
        scenario(second, tmp_path, caller=NUMBER, bye_timeout_ms=30000), service="400", workdir=tmp_path
    )
    async with running_server(settings) as server:
        assert await hangs_up.run() == 0, hangs_up.errors()
        await settle(server, 30)
        events, turns = await last_call(database_url)
        (kept,) = await rows(database_url)
        async with LoopbackCapture(tmp_path / "caller.pcap", f"udp port {returns.media_port}") as cap:
            assert await returns.run() == 0, returns.errors()
        await settle(server, 30)

    # The first call: abandoned while asked for the digits, kept under a keyed hash only.
    key = caller_id_key(KEY.encode(), None)
    assert kept["caller"] == caller_hash(NUMBER, key) and NUMBER[1:] not in str(kept), kept
    assert (kept["state"], kept["intent"], kept["slots"], kept["flow_version"]) == (
        "lost_card", "lost_card", {}, FLOW.version,
    ), turns  # fmt: skip
    (ended,) = [e.payload for e in events if e.type == "flow_ended"]
    assert ended["outcome"] == "abandoned" and ended["states"] == ["welcome", "lost_card"], ended
    assert [e.payload["action"] for e in events if e.type == "returning"] == ["kept"]

    # The second: offered, resumed at the question it left, the card blocked; nothing kept.
    events, turns = await last_call(database_url)
    assert [e.payload["action"] for e in events if e.type == "returning"] == ["offered", "resumed"], turns
    (ended,) = [e.payload for e in events if e.type == "flow_ended"]
    assert ended["states"] == ["lost_card", "block_card", "anything_else", "goodbye"], turns
    assert turns[0] == f"system: {OFFER} (completed)", turns
    async with httpx.AsyncClient() as http:
        made = (await http.get(f"{bank}/_calls")).json()
    assert [(c["method"], c["path"], c["body"]) for c in made] == [
        ("POST", "/cards/block", {"last4": "4421"})
    ]
    assert await rows(database_url) == []

    # What reached the caller's side holds the offer, as the server's Piper renders it.
    heard = np.concatenate(
        [pcm for _, pcm in audio_of([d for d in cap.datagrams() if d.dst_port == returns.media_port])]
    )
    synth = Synthesizer(load_tts_engine("piper"))
    try:
        offer, _ = await synth.render(OFFER, 8000)
    finally:
        synth.close()
    score, offset = best_match(heard, ulaw_decode(ulaw_encode(offer)))
    assert score > 0.9, (
        f"the offer did not reach the caller (score {score:.2f} at {offset / 8000:.2f} s): {turns}"
    )
