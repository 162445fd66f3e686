"""One call, from StasisStart to cleanup.

Set-up: answer, open the media leg (call_media.py: a UDP port, a mixing bridge and an
ExternalMedia channel), bridge it with the caller. Then the flow runs until it finishes or the
call ends (hangup, lost media, lost Asterisk, shutdown). Cleanup always runs, shielded and
time-boxed: hang up or hand back the caller, release the media leg, close the record.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import structlog

from ivr_server.config import Settings, caller_hash_key
from ivr_server.dialog.flows import Flow
from ivr_server.errors import AriError, AriNotFound, AriUnavailable, LanguageUnavailable, MediaError
from ivr_server.media.audio import frame_dbfs
from ivr_server.media.clock import MediaClock
from ivr_server.media.formats import FORMATS
from ivr_server.media.g711 import Pcm
from ivr_server.media.ports import PortPool
from ivr_server.media.prompts import PromptLibrary
from ivr_server.observability.metrics import Metrics
from ivr_server.observability.tracing import span
from ivr_server.privacy.caller_id import caller_hash
from ivr_server.speech.asr.base import LanguageModel
from ivr_server.speech.speech_meter import SpeechMeter, SpeechSegment
from ivr_server.speech.voice import Heard, Said, VoiceIO, VoiceServices
from ivr_server.store.audit_append import AuditEvent
from ivr_server.store.writer import CallAnswered, CallEnded, CallEvent, CallStarted, StoreWriter
from ivr_server.telephony.agent_leg import AgentLeg
from ivr_server.telephony.ari_events import Channel
from ivr_server.telephony.ari_rest import AriRestClient, best_effort
from ivr_server.telephony.call_media import CallMedia
from ivr_server.telephony.hold import HoldMusic
from ivr_server.tools.handoff import HandoffDesk

log = structlog.get_logger(__name__)

# Set on a caller handed back to the dialplan, so extensions.conf can route it.
STATUS_VARIABLE = "IVR_STATUS"


MAX_FLOW_SWITCHES = 4


@dataclass(frozen=True)
class CallDeps:
    """The shared services every call uses."""

    settings: Settings
    rest: AriRestClient
    writer: StoreWriter
    prompts: PromptLibrary
    ports: PortPool
    clock: MediaClock
    metrics: Metrics
    flows: dict[str, Flow]
    server_id: str
    voice: VoiceServices | None = None  # None: no speech engines, DTMF only
    voices: dict[str, VoiceServices] = field(default_factory=dict)  # by language, the server's own too
    handoffs: HandoffDesk | None = None  # stores handoffs and sends the screen-pop webhook
    holding: dict[str, list[str]] = field(
        default_factory=dict
    )  # agent endpoint -> call ids waiting, in order


def _utcnow() -> datetime:
    return datetime.now(UTC)


class CallSession:
    def __init__(self, deps: CallDeps, channel: Channel, args: tuple[str, ...]) -> None:
        self.deps = deps
        self.settings: Settings = deps.settings
        self.channel = channel
        self.call_id = str(uuid.uuid4())
        self.flow_name = args[0] if args and args[0] else deps.settings.default_flow
        self.flow_args = list(args)
        self._next_flow: str | None = None  # a flow's {flow: NAME}: the call goes on there
        self.fmt = FORMATS[deps.settings.media_format]
        self.media = CallMedia(deps, self.call_id, self.fmt, self._on_audio)
        self.end_reason: str | None = None
        self.speech = SpeechMeter(
            deps.settings.speech_threshold_dbfs,
            deps.settings.speech_min_ms,
            deps.settings.speech_hangover_ms,
        )
        self._end_detail: dict[str, Any] = {}
        self._ended = asyncio.Event()
        self._seq = 0
        self._dtmf: asyncio.Queue[tuple[str, float]] = asyncio.Queue(maxsize=64)
        self._stop_on_dtmf = False
        self._secure = False
        self._transfer_to: tuple[str, str, int] | None = None  # (context, extension, priority)
        self._inbox: asyncio.Queue[Pcm] | None = None
        self.voice: VoiceIO | None = None
        self._caller_gone = False
        self._asterisk_lost = False
        self._hand_back = False
        self._grace: asyncio.TimerHandle | None = None
        self.agent: AgentLeg | None = None  # a warm transfer's agent leg
        self.claim: Callable[[str], None] = lambda _channel_id: None  # the manager routes its events here

    @property
    def media_channel_id(self) -> str:
        return self.media.channel_id

    @property
    def bridge_id(self) -> str:
        return self.media.bridge_id

    @property
    def bridge_ids(self) -> tuple[str, ...]:
        """The bridges this call owns in Asterisk (its own, and an agent leg's while whispering)."""
        return (self.bridge_id,) if self.agent is None else (self.bridge_id, self.agent.bridge_id)

    @property
    def _log_fields(self) -> dict[str, str]:
        return {"call_id": self.call_id, "channel_id": self.channel.id}

    # --- Signals from the call manager (ARI events), never blocking --------------------------
    def end(self, reason: str, **detail: Any) -> None:
        """Ask the call to end; the first reason given is the one recorded."""
        if self.end_reason is None:
            self.end_reason = reason
            self._end_detail = detail
            self._ended.set()

    def on_caller_gone(self, event_type: str, cause: int = 0, cause_txt: str = "") -> None:
        self._caller_gone = True
        self.end("caller_hangup", event=event_type, cause=cause, cause_txt=cause_txt)

    def on_media_started(self) -> None:
        """The ExternalMedia channel entered the app: only now can it join the bridge."""
        self.media.in_app.set()

    def on_channel_in_app(self, channel_id: str) -> None:
        """A channel of this call entered the app: its media leg, or the agent leg's."""
        if channel_id == self.media_channel_id:
            self.on_media_started()
        elif self.agent is not None:
            self.agent.on_in_app(channel_id)

    def on_channel_gone(self, channel_id: str, event_type: str, cause: int = 0, cause_txt: str = "") -> None:
        if channel_id == self.media_channel_id:
            if self.agent is None or not self.agent.bridged:  # once bridged, the call goes on without it
                self.on_media_gone(event_type)
        elif channel_id == self.channel.id:
            self.on_caller_gone(event_type, cause, cause_txt)
        elif self.agent is not None:
            self.agent.on_gone(channel_id, cause)
            if channel_id == self.agent.channel_id and self.agent.bridged:
                self.end("agent_hangup", event=event_type, cause=cause)

    def on_channel_dtmf(self, channel_id: str, digit: str, duration_ms: int) -> None:
        if channel_id == self.channel.id:
            self.on_dtmf(digit, duration_ms)
        elif self.agent is not None and channel_id == self.agent.channel_id:
            self.agent.on_dtmf(digit)

    def on_media_gone(self, event_type: str) -> None:
        self.media.gone = True
        self.end("media_lost", event=event_type)

    def on_dtmf(self, digit: str, duration_ms: int) -> None:
        self.record("dtmf", digit="*" if self._secure else digit, duration_ms=duration_ms)
        if self._dtmf.full():
            self._dtmf.get_nowait()
        self._dtmf.put_nowait((digit, time.monotonic()))
        if self._stop_on_dtmf and self.media.sender is not None:
            self.media.sender.stop()
        if self.voice is not None:
            self.voice.on_dtmf(digit)

    def on_ari_lost(self) -> None:
        if self._grace is None and self.end_reason is None:
            self._grace = asyncio.get_running_loop().call_later(
                self.settings.ari_lost_call_grace_s, self._grace_expired
            )

    def on_ari_restored(self, channel_present: bool) -> None:
        if self._grace is not None:
            self._grace.cancel()
            self._grace = None
        if not channel_present:
            self._caller_gone = True
            self.end("channel_gone", detail="channel left the app while ARI was disconnected")

    def _grace_expired(self) -> None:
        self._grace = None
        self._asterisk_lost = True
        self.end("asterisk_lost", grace_s=self.settings.ari_lost_call_grace_s)

    def shutdown(self) -> None:
        """Server stopping: hand the caller back to the dialplan (never dead air)."""
        self._hand_back = True
        self.end("server_shutdown")

    # --- CallControl, used by flows -------------------------------------------------------
    def now(self) -> float:
        return time.monotonic()

    def secure_input(self, on: bool) -> None:
        """While on, the caller's keys and words are neither logged nor stored in clear."""
        self._secure = on
        if self.voice is not None:
            self.voice.secure = on

    async def transfer(
        self, context: str, extension: str, priority: int, variables: Mapping[str, str]
    ) -> None:
        """Hand the caller to the dialplan at ``context,extension,priority`` with the variables
        set on the channel (and the session id as a SIP header on a PJSIP channel)."""
        await self._set_variables(variables)
        session = variables.get("IVR_SESSION_ID")
        if session and self.channel.name.startswith("PJSIP/"):
            await self.deps.rest.set_variable(self.channel.id, "PJSIP_HEADER(add,X-IVR-Session)", session)
        self._transfer_to = (context, extension, priority)
        where = {"context": context, "extension": extension, "priority": priority}
        self._hand_off(f"{context},{extension},{priority}", variables, **where)
        self._hand_back = True
        self.end("transferred", context=context, extension=extension)

    async def warm_transfer(
        self, target: Mapping[str, str], variables: Mapping[str, str], whisper: str
    ) -> str:
        """Ring the agent while the caller hears hold music (and, every ``hold_announce_s``, their
        place); whisper the summary to the agent; on their yes, bridge caller and agent. Any other
        end of the agent leg leaves the caller with the flow at once."""
        endpoint = target["endpoint"]
        await self._set_variables(variables)
        leg = self.agent = AgentLeg(self.deps, self.call_id, endpoint, self.channel.caller_number,
                                    self.claim, self.record)  # fmt: skip
        queue = self.deps.holding.setdefault(endpoint, [])
        queue.append(self.call_id)
        self.record("agent_ringing", endpoint=endpoint)
        hold = HoldMusic(
            self, lambda: queue.index(self.call_id) + 1, int(target.get("hold_announce_s", "20"))
        )
        holding = asyncio.ensure_future(hold.run())
        outcome = "failed"
        try:
            outcome = await leg.offer(
                whisper, int(target.get("ring_s", "20")), int(target.get("accept_s", "15"))
            )
            accepted = time.monotonic()
            await hold.stop(holding)
            if outcome == "accepted":
                await self._bridge_agent(leg)
                outcome = "bridged"
                self.record(
                    "agent_bridged",
                    endpoint=endpoint,
                    ms_after_accept=round((time.monotonic() - accepted) * 1000),
                )
                self._hand_off(f"agent:{endpoint}", variables)
            else:
                self.record("agent_failed", endpoint=endpoint, outcome=outcome)
            return outcome
        finally:
            await hold.stop(holding)
            queue.remove(self.call_id)
            if outcome != "bridged":
                await leg.release()
                self.agent = None

    async def _bridge_agent(self, leg: AgentLeg) -> None:
        """The agent joins the caller's bridge and the server's media leg leaves it: from here on
        the two talk through Asterisk alone, and the server only waits for one of them to hang up."""
        await leg.detach()
        leg.bridged = True
        if self.voice is not None:
            self.voice.close()
            self.voice = None
        await self.deps.rest.add_to_bridge(self.bridge_id, [leg.channel_id])
        await best_effort(
            self.deps.rest.remove_from_bridge(self.bridge_id, [self.media_channel_id]), "media_leave"
        )

    async def _set_variables(self, variables: Mapping[str, str]) -> None:
        """The call's context on the caller's channel, for the dialplan and the agent's side."""
        for name, value in variables.items():
            await self.deps.rest.set_variable(self.channel.id, name, value)

    def _hand_off(self, to: str, variables: Mapping[str, str], **where: Any) -> None:
        """Stored (and the screen-pop webhook sent) for a blind or a warm transfer alike."""
        handoff_id = None
        if self.deps.handoffs is not None:
            handoff_id = self.deps.handoffs.hand_off(
                self.call_id, to, variables, self.channel.caller_number or None
            )
        self.record("handoff", to=to, **where, variables=dict(variables), handoff_id=handoff_id)

    async def play(self, prompt_ids: Sequence[str], *, stop_on_dtmf: bool = False) -> bool:
        sender = self.media.sender
        if sender is None:
            raise MediaError("no media: the call is not set up")
        if stop_on_dtmf and not self._dtmf.empty():
            return False
        rate = self.fmt.sample_rate
        pcm = np.concatenate([self.deps.prompts.audio(p, rate) for p in prompt_ids])
        playback = sender.play(pcm)
        self._stop_on_dtmf = stop_on_dtmf
        try:
            completed = await asyncio.shield(playback.done)
        finally:
            self._stop_on_dtmf = False
            if not playback.done.done():  # cancelled (hangup): stop sending it
                sender.stop()
        self.record(
            "prompt", prompts=list(prompt_ids), completed=completed, played_ms=playback.frames_played * 20
        )
        return completed

    @property
    def speech_ready(self) -> bool:
        return self.voice is not None

    def prompt_text(self, prompt_id: str) -> str:
        try:
            return self.deps.prompts.texts[prompt_id]
        except KeyError:
            raise MediaError(f"unknown prompt {prompt_id!r}; add it to prompts.toml") from None

    async def say(
        self,
        text: str,
        *,
        barge_in: bool = True,
        min_speech_ms: int | None = None,
        phrases: Sequence[str] | None = None,
        model: LanguageModel | None = None,
    ) -> Said:
        if self.voice is None:
            raise MediaError("no speech: the call is not set up or no TTS/ASR engine is loaded")
        return await self.voice.say(
            text, barge_in=barge_in, min_speech_ms=min_speech_ms, phrases=phrases, model=model
        )

    async def listen(
        self,
        phrases: Sequence[str] | None = None,
        *,
        model: LanguageModel | None = None,
        no_input_ms: int | None = None,
        end_silence_ms: int | None = None,
        max_ms: int | None = None,
    ) -> Heard:
        if self.voice is None:
            return Heard("unavailable", reason="no speech engines")
        return await self.voice.listen(
            phrases, model=model, no_input_ms=no_input_ms, end_silence_ms=end_silence_ms, max_ms=max_ms
        )

    async def next_dtmf(self, timeout_s: float) -> tuple[str, float] | None:
        try:
            async with asyncio.timeout(max(0.0, timeout_s)):
                return await self._dtmf.get()
        except TimeoutError:
            return None

    def open_audio(self) -> asyncio.Queue[Pcm]:
        if self._inbox is None:
            self._inbox = asyncio.Queue(maxsize=self.settings.media_inbox_frames)
        return self._inbox

    def send_live(self, pcm: Pcm) -> None:
        if self.media.sender is not None:
            self.media.sender.push_live(pcm)

    @property
    def caller_key(self) -> str | None:
        return caller_hash(self.channel.caller_number, caller_hash_key(self.settings))

    def audit(self, kind: str, **payload: Any) -> None:
        clean = json.loads(json.dumps(payload, default=str))
        self.deps.writer.submit(AuditEvent(kind, _utcnow(), clean, self.call_id))

    def record(self, event_type: str, **payload: Any) -> None:
        self._seq += 1
        clean = json.loads(json.dumps(payload, default=str))
        self.deps.writer.submit(CallEvent(self.call_id, self._seq, _utcnow(), event_type, clean))

    # --- Lifecycle ------------------------------------------------------------------------
    async def run(self) -> None:
        """Never raises (but CancelledError): every failure becomes an end reason."""
        with structlog.contextvars.bound_contextvars(call_id=self.call_id, channel_id=self.channel.id):
            self._record_start()
            try:
                await self._run_until_ended()
            finally:
                await asyncio.shield(self._clean_up())

    async def _run_until_ended(self) -> None:
        """Set-up, then the flow; cut short the moment the call ends (a hangup during set-up
        too, which must not wait for the set-up timeout)."""
        async with asyncio.TaskGroup() as tg:
            work = tg.create_task(self._set_up_and_converse(), name=f"call-{self.call_id}")
            ended = tg.create_task(self._ended.wait(), name=f"ended-{self.call_id}")
            await asyncio.wait({work, ended}, return_when=asyncio.FIRST_COMPLETED)
            work.cancel()
            ended.cancel()

    async def _set_up_and_converse(self) -> None:
        # One trace per call: the turns, recognitions, decisions, tools and prompts are its spans.
        with span("call", call_id=self.call_id, flow=self.flow_name, exten=self.channel.exten or ""):
            if await self._set_up():
                await self._run_flow(self.deps.flows[self.flow_name])

    def _record_start(self) -> None:
        ch = self.channel
        self.deps.writer.submit(
            CallStarted(
                call_id=self.call_id,
                channel_id=ch.id,
                caller_number=ch.caller_number or None,
                caller_name=ch.caller_name or None,
                dialed_number=ch.exten or None,
                flow=self.flow_name,
                flow_args=self.flow_args,
                server_id=self.deps.server_id,
                started_at=_utcnow(),
            )
        )
        self.record("stasis_start", channel=ch.name, context=ch.context, exten=ch.exten, args=self.flow_args)
        log.info("call.started", caller=ch.caller_number, exten=ch.exten, flow=self.flow_name)

    async def _set_up(self) -> bool:
        if self.flow_name not in self.deps.flows:
            log.error("call.unknown_flow", flow=self.flow_name, known=sorted(self.deps.flows))
            self._hand_back = True
            self.end("unknown_flow", flow=self.flow_name)
            return False
        try:
            async with asyncio.timeout(self.settings.call_setup_timeout_s):
                await self._set_up_media()
            return True
        except TimeoutError:
            self._fail_setup(f"not ready within {self.settings.call_setup_timeout_s}s")
        except AriUnavailable as err:
            self._asterisk_lost = True
            self.end("asterisk_lost", error=str(err))
        except AriNotFound as err:
            self._caller_gone = True
            self.end("caller_hangup", during="setup", error=str(err))
        except (AriError, MediaError) as err:
            self._fail_setup(str(err))
        except Exception as err:  # a bug in set-up fails this call, not the server
            log.exception("call.setup_crashed")
            self._fail_setup(f"{type(err).__name__}: {err}")
        return False

    def _fail_setup(self, error: str) -> None:
        log.error("call.setup_failed", error=error)
        self._hand_back = True
        self.end("setup_failed", error=error)

    async def _set_up_media(self) -> None:
        await self.deps.rest.answer(self.channel.id)
        self.deps.writer.submit(CallAnswered(self.call_id, _utcnow()))
        self.record("answered")
        asterisk_host, asterisk_port = await self.media.open(self._log_fields)
        assert self.media.sender is not None and self.media.receiver is not None
        if self.deps.voice is not None:
            self.voice = VoiceIO(
                self.deps.voice,
                self.fmt.sample_rate,
                self.media.sender,
                self.call_id,
                self.record,
                self.deps.writer.submit,
                log_context=self._log_fields,
                observe=self.deps.metrics.voice,
            )
            self.media.receiver.after_drain = self.voice.on_clock
            self.voice.heard = self.deps.writer.preview  # the live console shows it before it is stored
        await self.media.join(self.channel.id)
        self.record(
            "media_started",
            format=self.fmt.name,
            local_port=self.media.port,
            asterisk_rtp=f"{asterisk_host}:{asterisk_port}",
        )

    def use_language(self, language: str) -> bool:
        services = self.deps.voices.get(language)
        if services is None:
            return self.deps.voice is not None and not self.deps.voices  # one voice, one language
        if self.voice is not None and self.voice.services is not services:
            self.voice.services = services
            self.record("language", language=language)
        return True

    def switch_flow(self, name: str) -> bool:
        if name not in self.deps.flows:
            return False
        self._next_flow = name
        return True

    async def _run_flow(self, flow: Flow) -> None:
        try:
            await flow(self)
            switches = 0
            while self._next_flow is not None:  # a language chosen: that language's flow
                switches += 1
                if switches > MAX_FLOW_SWITCHES:  # flows that hand the call back and forth
                    raise RuntimeError(f"more than {MAX_FLOW_SWITCHES} flow switches in one call")
                self.record("flow_switched", previous=self.flow_name, flow=self._next_flow)
                self.flow_name, self._next_flow = self._next_flow, None
                await self.deps.flows[self.flow_name](self)
            if self.agent is not None and self.agent.bridged:
                await self.agent.gone.wait()  # the caller talks to the agent; either may hang up
                self.end("agent_hangup", cause=self.agent.gone_cause)
                return
            # The last packet has left, but it still crosses Asterisk's bridge: hanging up at
            # once would clip the final syllable ("goodb-").
            await asyncio.sleep(self.settings.hangup_after_audio_s)
            self.end("completed")
        except AriUnavailable as err:
            self._asterisk_lost = True
            self.end("asterisk_lost", error=str(err))
        except AriNotFound as err:
            self._caller_gone = True
            self.end("channel_gone", error=str(err))
        except LanguageUnavailable as err:  # the dialplan's fallback takes the caller
            self._hand_back = True
            self.end("language_unavailable", error=str(err))
        except Exception as err:  # a broken flow ends its call, not the server
            log.exception("call.flow_failed", flow=self.flow_name)
            self._hand_back = True
            self.end("flow_error", error=f"{type(err).__name__}: {err}")

    def _on_audio(self, pcm: Pcm) -> None:
        level = frame_dbfs(pcm)
        segment = self.speech.feed(level, len(pcm) * 1000 // self.fmt.sample_rate)
        if segment is not None:
            self._record_speech(segment)
        if self.voice is not None:
            self.voice.on_audio(pcm, level)
        if self._inbox is not None:
            if self._inbox.full():
                self._inbox.get_nowait()
                self.deps.metrics.audio_dropped.labels(direction="in").inc()
            self._inbox.put_nowait(pcm)

    def _record_speech(self, segment: SpeechSegment) -> None:
        self.record(
            "caller_speech", start_ms=segment.start_ms, end_ms=segment.end_ms, duration_ms=segment.duration_ms
        )

    # --- Cleanup --------------------------------------------------------------------------
    async def _clean_up(self) -> None:
        if self.end_reason is None:
            self.end("cancelled")
        if self._grace is not None:
            self._grace.cancel()
        self._close_media()
        try:
            async with asyncio.timeout(self.settings.cleanup_timeout_s):
                await self._release_asterisk_side()
        except TimeoutError:
            log.error("call.cleanup_timeout", timeout_s=self.settings.cleanup_timeout_s)
        self.media.release_port()
        reason = self.end_reason or "cancelled"
        self.record("call_ended", reason=reason, **self._end_detail)
        self.audit("call_ended", **{"flow": self.flow_name, **self._end_detail, "reason": reason})
        self.deps.writer.submit(CallEnded(self.call_id, _utcnow(), reason))
        self.deps.metrics.calls_ended.labels(end_reason=reason).inc()
        log.info("call.ended", reason=reason, speech_ms=self.speech.speech_ms)

    def _close_media(self) -> None:
        if self.voice is not None:
            self.voice.close()
        stats = self.media.close()
        if stats:
            self.record("media_stats", **stats)
        last = self.speech.finish()
        if last is not None:
            self._record_speech(last)
        self.record("caller_speech_total", speech_ms=self.speech.speech_ms, segments=self.speech.segments)

    async def _release_asterisk_side(self) -> None:
        if self._asterisk_lost:
            return  # nothing there to release; Asterisk dropped it all
        rest = self.deps.rest
        if self.agent is not None:  # a bridged agent: the call is over for both
            await self.agent.release()
        await self.media.settle()  # let Asterisk finish creating what we are about to delete
        if not self._caller_gone:
            if self._hand_back:
                await best_effort(self._hand_back_to_dialplan(), "hand_back")
            elif await best_effort(rest.hangup(self.channel.id), "hangup"):
                self.record("hangup", by="server")
        await self.media.release()

    async def _hand_back_to_dialplan(self) -> None:
        await self.deps.rest.set_variable(self.channel.id, STATUS_VARIABLE, self.end_reason or "")
        if self._transfer_to is not None:
            context, extension, priority = self._transfer_to
            await self.deps.rest.continue_in_dialplan(self.channel.id, context, extension, priority)
        else:
            await self.deps.rest.continue_in_dialplan(self.channel.id)
        to = {"to": list(self._transfer_to)} if self._transfer_to is not None else {}
        self.record("handed_back", status=self.end_reason, **to)
