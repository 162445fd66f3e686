"""A Korean call end to end: sandbox Asterisk, a SIPp caller who dials the language choice
(extension 403), presses 2, and goes on in Korean: the Korean banking flow speaks with espeak-ng's
Korean voice, hears the caller with Vosk's Korean model, and blocks the right card at the demo
bank. A caller who dials the Korean number (402) gets Korean from the first word."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pytest

from ivr_server.dialog.spec.loader import load_flow
from ivr_server.media.g711 import ulaw_decode, ulaw_encode
from ivr_server.speech.tts.engines import load_tts_engine
from ivr_server.speech.tts.synthesizer import Synthesizer
from tests.conftest import REPO
from tests.e2e.test_banking_call import events_of, place
from tests.e2e.test_voice_call import audio_of
from tests.support.audio import best_match, espeak_voice, piper
from tests.support.sipp import Keys, Pause, SippCall, Speak, scenario

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("asterisk")]

KOREAN = load_flow(REPO / "flows" / "banking-ko.yaml")
WELCOME = load_flow(REPO / "flows" / "welcome.yaml")
MARGIN_MS = 1200


async def korean_pcm(text: str) -> np.ndarray:
    """``text`` as the server says it in Korean (espeak-ng ko at 8 kHz)."""
    synth = Synthesizer(load_tts_engine("espeak", voice="ko"))
    try:
        pcm, _ = await synth.render(text, 8000)
    finally:
        synth.close()
    return pcm


async def korean_ms(name: str, **slots: str) -> int:
    """How long the Korean flow's prompt takes to say, plus a margin for the reply."""
    text = KOREAN.prompts[name].text["ko"].render(slots)
    return int(len(await korean_pcm(text)) / 8) + MARGIN_MS


async def test_a_caller_who_presses_2_is_served_in_korean_to_the_end(
    database_url: str, bank: str, tmp_path: Path
) -> None:
    choose = WELCOME.prompts["choose"].text
    said_yes = tmp_path / "ne.ul"
    steps = [
        Pause(
            int(len(piper(choose["en"].render({}), 8000)) / 8)
            + int(len(await korean_pcm(choose["ko"].render({}))) / 8)
            + MARGIN_MS
        ),  # fmt: skip
        Keys("2"),  # 한국어
        Pause(await korean_ms("welcome")),
        Keys("3"),  # 카드 분실 (the keypad works everywhere)
        Pause(await korean_ms("ask_last4")),
        Keys("4421#"),
        Pause(await korean_ms("confirm_last4", last4="4421")),
        Speak(said_yes, int(espeak_voice("네", said_yes, voice="ko") * 1000) + 400),  # yes, in Korean
        Pause(await korean_ms("blocked", last4="4421") + await korean_ms("anything_else")),
        Keys("9"),  # 없어요: goodbye in Korean, and the server hangs up
    ]
    call = SippCall(scenario(steps, tmp_path, bye_timeout_ms=40000), service="403", workdir=tmp_path)
    datagrams = await place(database_url, bank, call, tmp_path)

    async with httpx.AsyncClient() as http:
        made = (await http.get(f"{bank}/_calls")).json()
    events, end_reason, turns = await events_of(database_url)
    assert [(c["path"], c["body"]) for c in made] == [("/cards/block", {"last4": "4421"})], turns
    assert end_reason == "completed", turns
    switched = [e.payload for e in events if e.type == "flow_switched"]
    assert switched == [{"previous": "welcome", "flow": "banking-ko"}], switched
    assert {"language": "ko"} in [e.payload for e in events if e.type == "language"]
    ended = [e.payload for e in events if e.type == "flow_ended"]
    assert [(e["flow"], e["outcome"]) for e in ended] == [("welcome", "switched"), ("banking-ko", "hangup")]
    assert ended[1]["states"] == ["welcome", "lost_card", "block_card", "anything_else", "goodbye"], ended
    # The spoken Korean "네" was recognized by the Korean model and taken as the confirmation.
    assert any(t.startswith("caller: 네") for t in turns), turns

    # The caller heard the card blocked in Korean, as the server's espeak-ng ko voice says it.
    heard = np.concatenate(
        [pcm for _, pcm in audio_of([d for d in datagrams if d.dst_port == call.media_port])]
    )
    blocked = KOREAN.prompts["blocked"].text["ko"].render({"last4": "4421"})
    needle = ulaw_decode(ulaw_encode(await korean_pcm(blocked)))[: 8000 * 2]  # its first 2 s
    score, offset = best_match(heard, needle)
    assert score > 0.9, f"the Korean confirmation did not reach the caller (score {score:.2f}): {turns}"


async def test_the_korean_number_answers_in_korean_from_the_first_word(
    database_url: str, bank: str, tmp_path: Path
) -> None:
    balance = KOREAN.prompts["balance"].text["ko"].render({"balance": "1234.56"})
    after_tool = int(len(await korean_pcm(balance)) / 8) + await korean_ms("anything_else")
    steps = [
        Pause(await korean_ms("welcome")),
        Keys("1"),  # 잔액
        Pause(await korean_ms("ask_account")),
        Keys("12345678#"),
        Pause(after_tool),
        Keys("9"),  # 없어요
    ]
    call = SippCall(scenario(steps, tmp_path, bye_timeout_ms=40000), service="402", workdir=tmp_path)
    datagrams = await place(database_url, bank, call, tmp_path)

    async with httpx.AsyncClient() as http:
        made = (await http.get(f"{bank}/_calls")).json()
    events, end_reason, turns = await events_of(database_url)
    assert [c["path"] for c in made] == ["/accounts/12345678/balance"], turns
    assert end_reason == "completed", turns
    (ended,) = [e.payload for e in events if e.type == "flow_ended"]
    assert ended["flow"] == "banking-ko" and ended["outcome"] == "hangup", ended
    assert {"language": "ko"} in [e.payload for e in events if e.type == "language"]
    # The first words the caller heard were the Korean greeting, in the Korean voice.
    heard = np.concatenate(
        [pcm for _, pcm in audio_of([d for d in datagrams if d.dst_port == call.media_port])]
    )
    greeting = KOREAN.prompts["welcome"].text["ko"].render({})
    score, offset = best_match(
        heard[: 8000 * 8], ulaw_decode(ulaw_encode(await korean_pcm(greeting)))[:16000]
    )
    assert score > 0.9 and offset < 8000 * 3, (
        f"no Korean greeting first (score {score:.2f} at {offset / 8000:.1f} s)"
    )
