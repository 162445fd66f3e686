"""The first flows, written against ``CallControl`` so they never touch ARI or RTP directly.

``digits``: greet, collect DTMF until # (or a timeout), read the digits back, say goodbye.
``echo``:   the admin's media check; the caller hears themself until they hang up.
``voice``:  the speech check: ask, listen, say back what was heard; the keypad when speech fails.

The dialplan picks the flow: ``Stasis(ivr-server,digits)``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol

import structlog

from ivr_server.config import Settings
from ivr_server.dialog.dtmf import DtmfCollector, DtmfResult, digit_prompt
from ivr_server.media.g711 import Pcm
from ivr_server.speech.asr.base import LanguageModel
from ivr_server.speech.voice import Heard, Said

log = structlog.get_logger(__name__)


class CallControl(Protocol):
    """What a flow can do with its call."""

    settings: Settings

    def now(self) -> float:
        """Monotonic seconds."""
        ...

    async def play(self, prompt_ids: Sequence[str], *, stop_on_dtmf: bool = False) -> bool:
        """Play prompts back to back; False if a key press or hangup cut them short."""
        ...

    async def next_dtmf(self, timeout_s: float) -> tuple[str, float] | None:
        """The next key pressed (with its arrival time), or None after ``timeout_s``."""
        ...

    @property
    def speech_ready(self) -> bool:
        """Whether say() and listen() have engines behind them."""
        ...

    def prompt_text(self, prompt_id: str) -> str:
        """The text of a prompt in prompts.toml (say() finds it pre-rendered in the cache)."""
        ...

    async def say(
        self,
        text: str,
        *,
        barge_in: bool = True,
        min_speech_ms: int | None = None,
        phrases: Sequence[str] | None = None,
        model: LanguageModel | None = None,
    ) -> Said:
        """Speak ``text`` with TTS, sentence by sentence; the caller may interrupt it (heard with
        ``phrases`` or ``model``, as listen() would)."""
        ...

    async def warm_transfer(
        self, target: Mapping[str, str], variables: Mapping[str, str], whisper: str
    ) -> str:
        """Ring the agent at ``target["endpoint"]`` while the caller holds, whisper to the agent,
        and bridge the two once the agent accepts: "bridged"; else why not (busy, no_answer,
        declined, failed), and the caller is back with the flow."""
        ...

    async def listen(
        self,
        phrases: Sequence[str] | None = None,
        *,
        model: LanguageModel | None = None,
        no_input_ms: int | None = None,
        end_silence_ms: int | None = None,
        max_ms: int | None = None,
    ) -> Heard:
        """The caller's next turn: their words, no input, a key, or why recognition failed.
        ``phrases`` restricts recognition to those; ``model`` is a flow's compiled resources."""
        ...

    def open_audio(self) -> asyncio.Queue[Pcm]:
        """Start receiving the caller's audio as 20 ms frames (oldest dropped when full)."""
        ...

    def send_live(self, pcm: Pcm) -> None:
        """Send one 20 ms frame to the caller as soon as the media clock allows."""
        ...

    @property
    def caller_key(self) -> str | None:
        """The caller's number as a keyed hash (privacy/caller_id.py): None without a number or
        a key. Flows with ``returning:`` know a returning caller by it."""
        ...

    def audit(self, kind: str, **payload: Any) -> None:
        """An append-only, hash-chained audit event of this call (redacted on the way)."""
        ...

    def record(self, event_type: str, **payload: Any) -> None:
        """Append an event to the call's record in the store."""
        ...

    def secure_input(self, on: bool) -> None:
        """While on, the caller's keys and words are neither logged nor stored in clear."""
        ...

    async def transfer(
        self, context: str, extension: str, priority: int, variables: Mapping[str, str]
    ) -> None:
        """Send the caller to the dialplan with ``variables`` set on the channel; the call ends here."""
        ...

    def use_language(self, language: str) -> bool:
        """Speak and recognize ``language`` from now on; False when the server has no voice for it."""
        ...

    def switch_flow(self, name: str) -> bool:
        """When the running flow returns, the call goes on in flow ``name``; False if not served."""
        ...


Flow = Callable[[CallControl], Awaitable[None]]


async def collect_digits(call: CallControl, collector: DtmfCollector) -> DtmfResult:
    while collector.result is None:
        pressed = await call.next_dtmf(collector.deadline() - call.now())
        if pressed is None:
            collector.expire(call.now())
        else:
            collector.feed(*pressed)
    return collector.result


async def digits_flow(call: CallControl) -> None:
    await call.play(["greeting"], stop_on_dtmf=True)
    # The first-digit timeout runs from the end of the greeting; keys pressed during it count.
    await collect_and_read_back(call)


async def collect_and_read_back(call: CallControl) -> None:
    s = call.settings
    collector = DtmfCollector(
        started_at=call.now(),
        first_digit_timeout_s=s.dtmf_first_digit_timeout_s,
        inter_digit_timeout_s=s.dtmf_inter_digit_timeout_s,
        max_digits=s.dtmf_max_digits,
    )
    result = await collect_digits(call, collector)
    call.record("dtmf_collected", digits=result.digits, reason=result.reason, ignored=collector.ignored)
    log.info("flow.digits_collected", count=len(result.digits), reason=result.reason)
    if result.digits:
        await call.play(["you_entered", *map(digit_prompt, result.digits), "goodbye"])
    else:
        await call.play(["no_digits", "goodbye"])


async def echo_flow(call: CallControl) -> None:
    inbox = call.open_audio()
    await call.play(["echo_intro"])
    while not inbox.empty():  # what the caller said over the intro is not echoed
        inbox.get_nowait()
    frames = 0
    try:
        async with asyncio.timeout(call.settings.echo_max_s):  # one timer, not one per frame
            while True:
                call.send_live(await inbox.get())
                frames += 1
    except TimeoutError:
        pass
    finally:
        call.record("echo", frames=frames)


async def voice_flow(call: CallControl) -> None:
    if not call.speech_ready:
        log.warning("flow.voice_without_speech", fallback="digits")
        await digits_flow(call)
        return
    heard = Heard("no_input")
    for prompt in ("voice_greeting", "voice_reprompt"):
        await call.say(call.prompt_text(prompt))
        heard = await call.listen()
        if heard.outcome != "no_input" and (heard.outcome != "speech" or heard.text):
            break
    if heard.outcome == "speech" and heard.text:
        # The lead-in is its own piece, pre-rendered: the reply starts from the cache.
        reply = f"{call.prompt_text('you_said')} {heard.text}. {call.prompt_text('goodbye')}"
        await call.say(reply, barge_in=False)
        return
    # Speech failed or the caller prefers keys: the keypad, never silence.
    log.info("flow.voice_to_keypad", outcome=heard.outcome, reason=heard.reason)
    call.record("fallback", to="dtmf", outcome=heard.outcome, reason=heard.reason)
    if heard.outcome != "dtmf":
        await call.say(call.prompt_text("voice_keypad"))
    await collect_and_read_back(call)


FLOWS: dict[str, Flow] = {"digits": digits_flow, "echo": echo_flow, "voice": voice_flow}
