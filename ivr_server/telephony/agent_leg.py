"""The agent's side of a warm transfer: an outbound channel into the app, its own media leg for
the whisper, and the agent's answer (key 1 or "yes" takes the call, key 2 or "no" declines).

The call session (session.py) runs it while the caller holds, then bridges the caller to the
agent channel or, when the leg ends any other way, keeps the caller in the flow. Its channels
are claimed for the session before they are created, so their events reach it and a
reconnect never takes them for orphans.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import structlog

from ivr_server.errors import AriError, MediaError
from ivr_server.media.formats import FORMATS
from ivr_server.media.g711 import Pcm
from ivr_server.speech.voice import VoiceIO
from ivr_server.telephony.ari_rest import best_effort
from ivr_server.telephony.call_media import CallMedia

if TYPE_CHECKING:
    from ivr_server.store.writer import Turn
    from ivr_server.telephony.session import CallDeps

log = structlog.get_logger(__name__)
AGENT_APP_ARG = "agent-leg"  # StasisStart args of an answered agent channel: agent-leg,<call id>
ANSWERS = ("yes", "accept", "take it", "no", "decline")
# Q.850 causes a dialled agent's channel ends with before it answers
CAUSES = {17: "busy", 18: "no_answer", 19: "no_answer", 21: "declined", 31: "no_answer"}
ACCEPT_PROMPT = "Press 1 to take the call, or 2 to decline."


def agent_leg_id(call_id: str) -> str:
    """The agent leg's channel id of call ``call_id``."""
    return f"{call_id}-agent-leg"


def agent_media_owner(call_id: str) -> str:
    """Whose media the agent leg's whisper uses: its ExternalMedia channel and bridge are named
    after this (call_media.media_channel_id)."""
    return f"{call_id}-agent"


class AgentLeg:
    def __init__(
        self,
        deps: CallDeps,
        call_id: str,
        endpoint: str,
        caller_id: str,
        claim: Callable[[str], None],
        record: Callable[..., None],
    ) -> None:
        self.deps, self.call_id, self.endpoint, self.caller_id = deps, call_id, endpoint, caller_id
        self.channel_id = agent_leg_id(call_id)
        self.media = CallMedia(
            deps, agent_media_owner(call_id), FORMATS[deps.settings.media_format], self._on_audio
        )
        self.record = record
        for channel in (self.channel_id, self.media.channel_id):
            claim(channel)
        self.answered = asyncio.Event()
        self.gone = asyncio.Event()
        self.gone_cause = 0
        self.voice: VoiceIO | None = None
        self._keys: asyncio.Queue[str] = asyncio.Queue(maxsize=16)
        self._dialled = False
        self.bridged = False
        self._media_closed = False

    @property
    def bridge_id(self) -> str:
        return self.media.bridge_id

    # --- events, from the call manager through the session ------------------------------------
    def on_in_app(self, channel_id: str) -> None:
        if channel_id == self.channel_id:
            self.answered.set()
        elif channel_id == self.media.channel_id:
            self.media.in_app.set()

    def on_gone(self, channel_id: str, cause: int = 0) -> None:
        if channel_id == self.channel_id:
            self.gone_cause = self.gone_cause or cause
            self.gone.set()
        elif channel_id == self.media.channel_id:
            self.media.gone = True

    def on_dtmf(self, digit: str) -> None:
        if not self._keys.full():
            self._keys.put_nowait(digit)

    # --- the leg ------------------------------------------------------------------------------
    async def offer(self, whisper: str, ring_s: int, accept_s: int) -> str:
        """Ring, whisper, wait for the answer: "accepted", or busy / no_answer / declined / failed."""
        s = self.deps.settings
        try:
            self._dialled = True
            await self.deps.rest.originate(endpoint=self.endpoint, channel_id=self.channel_id, app=s.ari_app,
                                           app_args=f"{AGENT_APP_ARG},{self.call_id}", timeout_s=ring_s,
                                           caller_id=self.caller_id)  # fmt: skip
        except AriError as err:
            log.error("agent.dial_failed", endpoint=self.endpoint, error=str(err)[:200])
            return "failed"
        ringing = await self._first(self.answered, ring_s + 2)
        if ringing != "answered":
            return CAUSES.get(self.gone_cause, "failed") if ringing == "gone" else "no_answer"
        self.record("agent_answered", endpoint=self.endpoint)
        try:
            async with asyncio.timeout(s.call_setup_timeout_s):
                await self.media.open({"call_id": self.call_id, "agent_channel": self.channel_id})
                await self.media.join(self.channel_id)
        except (TimeoutError, AriError, MediaError) as err:
            log.error("agent.media_failed", error=str(err)[:200])
            return "failed"
        return await self._ask(whisper, accept_s)

    async def _ask(self, whisper: str, accept_s: int) -> str:
        if self.deps.voice is None or self.media.sender is None or self.media.receiver is None:
            return "failed"  # nothing to whisper with: an agent who hears nothing would be lost
        voice = self.voice = VoiceIO(self.deps.voice, self.media.fmt.sample_rate, self.media.sender,
                                     f"{self.call_id}-agent", lambda *_a, **_k: None, self._no_turns,
                                     log_context={"call_id": self.call_id, "leg": "agent"})  # fmt: skip
        self.media.receiver.after_drain = voice.on_clock
        # A key during the whisper answers at once; words only once it has been heard out.
        whispered = asyncio.ensure_future(voice.say(f"{whisper} {ACCEPT_PROMPT}", barge_in=False))
        key = asyncio.ensure_future(self._key())
        gone = asyncio.ensure_future(self.gone.wait())
        try:
            await asyncio.wait({whispered, key, gone}, return_when=asyncio.FIRST_COMPLETED)
            if key.done():
                return key.result()
            if not gone.done():
                answer = asyncio.ensure_future(self._answer(voice, key, accept_s))
                await asyncio.wait({answer, gone}, return_when=asyncio.FIRST_COMPLETED)
                if answer.done():
                    return answer.result()
            return "declined"  # the agent hung up on the whisper
        finally:
            for task in (whispered, key, gone):
                task.cancel()
            self.media.sender.stop()

    async def _key(self) -> str:
        """Key 1 takes the call, key 2 declines; other keys are ignored."""
        while True:
            digit = await self._keys.get()
            if digit in ("1", "2"):
                return "accepted" if digit == "1" else "declined"

    async def _answer(self, voice: VoiceIO, key: asyncio.Future[str], accept_s: int) -> str:
        """The key, or the words "yes"/"accept" or "no"/"decline", within ``accept_s``."""
        deadline = time.monotonic() + accept_s
        while (left := deadline - time.monotonic()) > 0:
            heard = asyncio.ensure_future(voice.listen(ANSWERS, no_input_ms=int(left * 1000)))
            try:
                waiting: set[asyncio.Future[Any]] = {key, heard}
                await asyncio.wait(waiting, timeout=left, return_when=asyncio.FIRST_COMPLETED)
            finally:
                heard.cancel()
            if key.done():
                return key.result()
            if heard.done() and not heard.cancelled() and heard.result().outcome == "speech":
                words = f" {heard.result().text} "
                if any(f" {w} " in words for w in ("yes", "accept", "take it")):
                    return "accepted"
                if any(f" {w} " in words for w in ("no", "decline")):
                    return "declined"
        return "no_answer"

    async def _first(self, event: asyncio.Event, timeout_s: float) -> str:
        """Which comes first: ``event`` ("answered"), the channel's end ("gone"), or "timeout"."""
        waits = {
            asyncio.ensure_future(event.wait()): "answered",
            asyncio.ensure_future(self.gone.wait()): "gone",
        }
        done, pending = await asyncio.wait(set(waits), timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        if self.gone.is_set():
            return "gone"
        return waits[next(iter(done))] if done else "timeout"

    def _on_audio(self, pcm: Pcm) -> None:
        if self.voice is not None:
            self.voice.on_audio(pcm)

    def _no_turns(self, _turn: Turn) -> None:
        """The agent's words are not the caller's turns: nothing of them is stored."""

    async def detach(self) -> None:
        """Stop whispering and take the agent channel out of its own bridge, to join the caller."""
        self._close_media()
        await self.media.settle()
        await self.media.release()
        self.media.release_port()

    async def release(self) -> None:
        """Hang up the agent (if dialled and not bridged) and free the media leg (idempotent)."""
        self._close_media()
        if self._dialled and not self.gone.is_set():
            await best_effort(self.deps.rest.hangup(self.channel_id), "agent_hangup")
        await self.media.settle()
        await self.media.release()
        self.media.release_port()

    def _close_media(self) -> None:
        if self.voice is not None:
            self.voice.close()
            self.voice = None
        if not self._media_closed:
            self._media_closed = True
            self.media.close()
