"""The banking flow in a real call: sandbox Asterisk, SIPp speaking Piper sentences, the demo
bank as the back end. A caller who lost their card and says the last four digits gets it
blocked and hears so; a caller who asks for a person reaches [ivr-agents] with the context."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from aiohttp import web
from sqlalchemy import select

from ivr_server.dialog.spec.loader import load_flow
from ivr_server.media.g711 import ulaw_decode, ulaw_encode
from ivr_server.speech.tts.engines import load_tts_engine
from ivr_server.speech.tts.synthesizer import Synthesizer
from ivr_server.store.database import create_engine
from ivr_server.store.queries import EventRecord, call_events_of, list_calls, turns_of
from ivr_server.store.schema import handoffs
from tests.conftest import REPO, running_server, sandbox, server_settings, settle
from tests.e2e.test_voice_call import audio_of
from tests.support.audio import best_match, piper, piper_voice
from tests.support.capture import Datagram, LoopbackCapture
from tests.support.sipp import Keys, Pause, SippAgent, SippCall, Speak, Step, agent_scenario, scenario

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("asterisk")]

FLOW = load_flow(REPO / "flows" / "banking.yaml")


def prompt_ms(name: str, **slots: str) -> int:
    """How long the flow's prompt takes to say (Piper, as the server renders it), plus a margin."""
    text = FLOW.prompts[name].text["en"].render(slots)
    return int(len(piper(text, 8000)) / 8) + 1200


async def place(
    database_url: str, bank: str, call: SippCall, tmp_path: Path, **more: object
) -> list[Datagram]:
    from ivr_server.config import ToolService

    service = ToolService(url=bank, breaker_failures=3, breaker_reset_s=30.0)
    settings = server_settings(database_url, tools_services={"bank": service}, **more)
    async with running_server(settings) as server:
        async with LoopbackCapture(tmp_path / "caller.pcap", f"udp port {call.media_port}") as cap:
            assert await call.run() == 0, call.errors()
        await settle(server, 30)
    return cap.datagrams()


async def events_of(url: str) -> tuple[list[EventRecord], str | None, list[str]]:
    """The call's events, its end reason, and its turns as "role: text" (for failure messages)."""
    engine = create_engine(url)
    try:
        (call,) = await list_calls(engine, 5)
        turns = [f"{t.role}: {t.text} ({t.outcome})" for t in await turns_of(engine, call.id)]
        return await call_events_of(engine, call.id), call.end_reason, turns
    finally:
        await engine.dispose()


def spoken(text: str, tmp_path: Path, name: str) -> Speak:
    voice = tmp_path / f"{name}.ul"
    return Speak(voice, int(piper_voice(text, voice) * 1000) + 400)


def blocking_the_card(tmp_path: Path) -> list[Step]:
    """The caller's side from "Please say ... the last four digits": 4421, yes, and key 9 to
    "anything else?" (goodbye, and the server hangs up)."""
    return [
        Pause(prompt_ms("ask_last4")),
        spoken("four, four, two, one.", tmp_path, "digits"),
        Pause(prompt_ms("confirm_last4", last4="4421")),
        spoken("yes.", tmp_path, "yes"),
        Pause(prompt_ms("blocked", last4="4421") + prompt_ms("anything_else")),
        Keys("9"),
    ]


async def test_a_lost_card_is_blocked_after_the_caller_says_its_last_four_digits(
    database_url: str, bank: str, tmp_path: Path
) -> None:
    steps = [
        Pause(prompt_ms("welcome")),
        spoken("I lost my card", tmp_path, "lost"),
        *blocking_the_card(tmp_path),
    ]
    call = SippCall(scenario(steps, tmp_path, bye_timeout_ms=30000), service="400", workdir=tmp_path)
    datagrams = await place(database_url, bank, call, tmp_path)

    async with httpx.AsyncClient() as http:
        made = (await http.get(f"{bank}/_calls")).json()
    events, end_reason, turns = await events_of(database_url)
    assert [(c["method"], c["path"], c["body"]) for c in made] == [
        ("POST", "/cards/block", {"last4": "4421"})
    ], turns
    assert end_reason == "completed"
    (ended,) = [e.payload for e in events if e.type == "flow_ended"]
    assert ended["states"] == ["welcome", "lost_card", "block_card", "anything_else", "goodbye"], ended
    assert ended["tools"] == [["block_card", "ok"]] and ended["intent"] == "done"  # the last one: key 9
    decisions = [e.payload for e in events if e.type == "decision"]
    assert decisions[0]["intent"] == "lost_card" and decisions[0]["flow_version"] == FLOW.version
    assert decisions[0]["model_version"] == ended["model_version"] and ended["model_version"]
    types = [e.type for e in events]  # each decision is recorded when made, not at the end
    assert types.index("decision") < types.index("dtmf") < types.index("flow_ended"), types

    # The caller heard the confirmation: its first sentence, as the server's Piper renders it,
    # is in what reached the caller's side (PocketSphinx alone reads Piper's "blocked" poorly).
    heard = np.concatenate(
        [pcm for _, pcm in audio_of([d for d in datagrams if d.dst_port == call.media_port])]
    )
    synth = Synthesizer(load_tts_engine("piper"))
    try:
        confirmation, _ = await synth.render("The card ending 4 4 2 1 is blocked.", 8000)
    finally:
        synth.close()
    needle = ulaw_decode(ulaw_encode(confirmation))
    score, offset = best_match(heard, needle)
    # On failure, say whether half of it matched (a gap inside the sentence) or none (not played).
    halves = [best_match(heard, half)[0] for half in np.array_split(needle, 2)]
    assert score > 0.9, (
        f"the confirmation did not reach the caller (score {score:.2f} at {offset / 8000:.2f} s; "
        f"halves {halves[0]:.2f}, {halves[1]:.2f}; caller audio {len(heard) / 8000:.1f} s): {turns}"
    )


async def test_a_caller_who_asks_for_a_person_is_transferred_with_the_context(
    database_url: str, bank: str, tmp_path: Path
) -> None:
    # The warm transfer's agent is busy (tests/e2e/test_warm_transfer.py has the others), so the
    # caller asks again and goes to the dialplan's queue with the context: a blind transfer.
    steps = [
        Pause(prompt_ms("welcome")),
        spoken("I want to speak to an agent.", tmp_path, "agent"),
        Pause(prompt_ms("to_agent") + 1000 + prompt_ms("agents_busy")),
        Keys("0"),
    ]
    call = SippCall(scenario(steps, tmp_path, bye_timeout_ms=30000), service="400", workdir=tmp_path)
    agent = SippAgent(agent_scenario("busy", tmp_path), tmp_path)
    await agent.start()
    async with ScreenPop() as pop:  # the agent desktop's webhook: fails once, then takes it
        await place(
            database_url, bank, call, tmp_path, handoff_webhook_url=pop.url, handoff_webhook_token="s3cret"
        )
    await agent.finish()

    events, end_reason, turns = await events_of(database_url)
    assert end_reason == "transferred", turns
    assert [e.payload["outcome"] for e in events if e.type == "agent_failed"] == ["busy"]
    (handoff,) = [e.payload for e in events if e.type == "handoff"]
    assert (handoff["context"], handoff["extension"]) == ("ivr-agents", "100")
    session = handoff["variables"]["IVR_SESSION_ID"]
    # What the dialplan saw on the channel: [ivr-agents] logs it to the sandbox's console.
    console = Path(sandbox("path").stdout.strip()).parent / "asterisk-console.log"
    lines = [
        line
        for line in console.read_text(errors="replace").splitlines()
        if f"ivr-handoff session={session}" in line
    ]
    assert lines, f"[ivr-agents] never saw session {session}"
    assert (
        f"flow=banking@{FLOW.version} intent=agent status=transferred summary=banking: agent" in lines[0]
    ), lines[0]

    # The handoff is stored, and the screen pop got it (after one 503, retried, same key).
    assert len(pop.received) == 2, pop.received
    first, second = pop.received
    assert (
        first["headers"]["Idempotency-Key"] == second["headers"]["Idempotency-Key"] == handoff["handoff_id"]
    )
    assert second["headers"]["Authorization"] == "Bearer s3cret"
    body = second["body"]
    assert (body["intent"], body["summary"], body["target"]) == (
        "agent",
        "banking: agent",
        "ivr-agents,100,1",
    )
    assert body["context"]["IVR_SESSION_ID"] == session and body["caller"]
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            (row,) = (await conn.execute(select(handoffs))).mappings().all()
    finally:
        await engine.dispose()
    assert (row["id"], row["intent"], row["webhook_status"], row["webhook_attempts"]) == (
        handoff["handoff_id"],
        "agent",
        "delivered",
        2,
    )
    assert row["context"] == body["context"]


class ScreenPop:
    """A real HTTP endpoint for the handoff webhook; answers 503 to the first POST."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.url = ""

    async def __aenter__(self) -> ScreenPop:
        async def take(request: web.Request) -> web.Response:
            self.received.append({"headers": dict(request.headers), "body": await request.json()})
            return web.Response(status=503 if len(self.received) == 1 else 204)

        app = web.Application()
        app.router.add_post("/handoffs", take)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = self.runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}/handoffs"
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.runner.cleanup()


@pytest.mark.parametrize(
    ("said", "intent"),
    [
        # Requests in words that appear in no flow file and no training set.
        ("Somebody took my card out of my bag.", "lost_card"),
        ("How much money is left in my account?", "balance"),
    ],
)
async def test_a_request_in_the_callers_own_words_reaches_its_state(
    database_url: str, bank: str, tmp_path: Path, said: str, intent: str
) -> None:
    """Through Asterisk, heard with the banking flow's compiled resources: the first decision
    is the right intent (acted on, or confirmed when the model is less sure), the call goes to
    that intent's state, and the decision names the resources that heard it."""
    steps = [
        Pause(prompt_ms("welcome")),
        spoken(said, tmp_path, "request"),
        Pause(prompt_ms("confirm_lost_card")),
        spoken("yes.", tmp_path, "yes"),  # the confirmation, if the flow asks for one
        Pause(prompt_ms("ask_last4")),
    ]  # then the caller hangs up: the flow's end records how far it got
    call = SippCall(scenario(steps, tmp_path, server_hangs_up=False), service="400", workdir=tmp_path)
    await place(database_url, bank, call, tmp_path)
    events, _, turns = await events_of(database_url)
    decisions = [e.payload for e in events if e.type == "decision"]
    assert decisions and decisions[0]["intent"] == intent, turns
    assert decisions[0]["kind"] in ("act", "confirm") and decisions[0]["asr_resources_version"], decisions[0]
    (ended,) = [e.payload for e in events if e.type == "flow_ended"]
    assert ended["states"][:2] == ["welcome", intent], (ended["states"], turns)
    assert ended["asr_resources_version"] == decisions[0]["asr_resources_version"]
