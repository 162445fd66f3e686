"""`ivr-server probe`: a real test call through Asterisk with a scripted caller (SIPp), heard
through a capture of its RTP, and checked against what the server's store recorded.

The caller waits for the greeting, then says each sentence (rendered by the server's own TTS
engine) or keys each DTMF string, a gap between steps, listens, and hangs up. A call Asterisk
answers is not enough: without a server, the dialplan's fallback answers and plays a notice,
so the store must show the call, served by the expected flow and not handed back.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from ivr_server.config import Settings
from ivr_server.errors import IvrError
from ivr_server.ops.capture import PacketCapture
from ivr_server.ops.probe_report import ProbeResult, Timeline, timeline
from ivr_server.ops.sipp import (
    VOICE_SUFFIX,
    Keys,
    Pause,
    ProbeError,
    SippCall,
    Speak,
    Step,
    scenario,
    write_voice,
)

log = structlog.get_logger(__name__)

# The server hands a call back to the dialplan with these reasons (IVR_STATUS): not served.
HANDED_BACK = {"unknown_flow", "setup_failed", "flow_error", "busy", "server_draining", "server_shutdown"}
STORE_WAIT_S = 10.0  # the server writes a call's end asynchronously


@dataclass(frozen=True)
class ProbeSpec:
    exten: str
    steps: list[tuple[str, str]] = field(default_factory=list)  # ("say", text) or ("keys", "123#")
    expect_flow: str | None = None
    sip_target: str = "127.0.0.1:5060"
    caller: str = "probe"
    greeting_s: float = 8.0
    gap_s: float = 4.0
    listen_s: float = 6.0
    timeout_s: float = 60.0


async def run_probe(settings: Settings, spec: ProbeSpec, workdir: Path) -> ProbeResult:
    result = ProbeResult(spec.exten)
    host, _, port = spec.sip_target.rpartition(":")
    if not host or not port.isdigit():
        raise ProbeError(f"--sip {spec.sip_target!r}: expected HOST:PORT")
    local_ip = _local_ip(host, int(port))
    steps: list[Step] = [Pause(int(spec.greeting_s * 1000))]
    for i, (kind, value) in enumerate(spec.steps):
        if i:
            steps.append(Pause(int(spec.gap_s * 1000)))
        steps.append(
            await _speak(settings, value, workdir / f"say-{i}{VOICE_SUFFIX}")
            if kind == "say"
            else Keys(value)
        )
    steps.append(Pause(int(spec.listen_s * 1000)))
    xml = scenario(steps, workdir, caller=spec.caller, server_hangs_up=False)
    call = SippCall(
        xml, spec.exten, workdir, target=spec.sip_target, local_ip=local_ip, timeout_s=spec.timeout_s
    )
    started = time.time()
    interface = "lo" if ipaddress.ip_address(local_ip).is_loopback else "any"
    ears = PacketCapture(
        workdir / "probe.pcap", f"udp and (port {call.sip_port} or port {call.media_port})", interface
    )
    capture: PacketCapture | None = None
    async with AsyncExitStack() as stack:
        try:
            capture = await stack.enter_async_context(ears)
        except (ProbeError, OSError) as err:  # not root: judged by the store alone
            result.notes.append(f"no capture, so no audio checks ({err})")
        try:
            code = await call.run()
        except TimeoutError:
            code = -1
    result.duration_s = round(time.time() - started, 3)
    line = (
        timeline(capture.datagrams(), call.sip_port, call.media_port) if capture is not None else Timeline()
    )
    _judge_audio(result, line)
    if code != 0:
        result.answered = result.answered or line.answered_at is not None
        result.reason = _sipp_failure(call, result.answered)
    await _judge_store(settings, spec, result, started)
    result.success = not result.reason
    return result


def _local_ip(host: str, port: int) -> str:
    """The address this host reaches ``host`` from (no packet is sent: UDP connect routes only)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect((socket.gethostbyname(host), port))
            return str(s.getsockname()[0])
    except OSError as err:
        raise ProbeError(f"--sip {host}:{port}: no route ({err})") from err


async def _speak(settings: Settings, text: str, voice: Path) -> Speak:
    """``text`` in the server's own voice, as the headerless 8 kHz µ-law SIPp streams."""
    from ivr_server.speech.tts.engines import load_tts_engine

    def render() -> float:
        import numpy as np

        from ivr_server.media.resample import resample

        engine = load_tts_engine(settings.tts_engine, model=settings.tts_model, voice=settings.tts_voice)
        pcm = np.concatenate(list(engine.synthesize(text)))
        return write_voice(voice, resample(pcm, engine.native_rate, 8000))

    seconds = await asyncio.to_thread(render)
    return Speak(voice, int(seconds * 1000) + 400)


def _judge_audio(result: ProbeResult, line: Timeline) -> None:
    if line.invite_at is None:  # no capture
        return
    result.answered = line.answered_at is not None
    if line.answered_at is None:
        result.reason = "Asterisk did not answer the call"
        return
    result.time_to_answer_s = round(line.answered_at - line.invite_at, 3)
    result.heard_s = round(line.heard_s, 2)
    first = line.first_audio_after(line.answered_at)
    if first is None:
        result.reason = "the call was answered but the caller heard nothing (no speech in Asterisk's RTP)"
        return
    result.time_to_first_audio_s = round(first - line.answered_at, 3)
    if line.caller_audio_end is not None:
        reply = line.first_audio_after(line.caller_audio_end)
        if reply is None:
            result.reason = "no reply: the caller heard nothing after its last input"
        else:
            result.reply_latency_s = round(reply - line.caller_audio_end, 3)


def _sipp_failure(call: SippCall, answered: bool) -> str:
    said = " ".join(call.errors().strip().splitlines()[-2:])[:300] if call.returncode is not None else ""
    if not answered:
        return f"the call was not answered (SIPp: {said or 'timed out'})"
    return f"the call ended early, e.g. the server hung up mid-script (SIPp: {said or 'timed out'})"


async def _judge_store(settings: Settings, spec: ProbeSpec, result: ProbeResult, started: float) -> None:
    """Find the call in the server's store: served, by the expected flow, not handed back."""
    from ivr_server.store.database import create_engine, require_current_schema
    from ivr_server.store.queries import call_events_of, list_calls, turns_of

    def fail(reason: str) -> None:  # after the caller's reason: both help the operator
        result.reason = f"{result.reason}; {reason}" if result.reason else reason

    engine = create_engine(settings.effective_database_url)
    try:
        try:
            await require_current_schema(engine)
        except IvrError as err:
            if spec.expect_flow:
                fail(f"cannot read the server's store to check the flow: {err}")
            else:
                result.notes.append(f"store not read: {err}")
            return
        deadline = time.monotonic() + STORE_WAIT_S
        while True:
            calls = await list_calls(engine, 50)
            found = [
                c for c in calls if c.dialed_number == spec.exten and c.started_at.timestamp() >= started - 2
            ]
            if (found and found[0].ended_at is not None) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.25)
        if not found:
            fail(f"the server's store has no call to {spec.exten} since the probe began: is ivr-server "
                 "running against this Asterisk and this IVR_DATABASE_URL?")  # fmt: skip
            return
        call = found[0]
        result.call_id, result.flow, result.end_reason = call.id, call.flow, call.end_reason
        events = await call_events_of(engine, call.id)
        result.intents = [str(e.payload.get("intent")) for e in events if e.type == "decision"]
        handed = [e.payload.get("status") for e in events if e.type == "handed_back"]
        latencies = [t.latency_ms for t in await turns_of(engine, call.id) if t.latency_ms is not None]
        if latencies:
            result.store_reply_latency_s = latencies[-1] / 1000
            if result.reply_latency_s is None:
                result.reply_latency_s = result.store_reply_latency_s
        if call.end_reason in HANDED_BACK or any(h in HANDED_BACK for h in handed):
            fail(f"the server did not serve the call: it handed it back ({call.end_reason or handed[0]})")
        elif spec.expect_flow and call.flow != spec.expect_flow:
            fail(f"the call ran flow {call.flow!r}, expected {spec.expect_flow!r}")
    finally:
        await engine.dispose()
