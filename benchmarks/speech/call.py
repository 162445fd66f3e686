"""Reply latency in a real call: the server in this process against the sandbox Asterisk, SIPp
callers that wait out the greeting and speak a sentence, both directions of their RTP captured:
end of caller speech -> first reply audio, with the server's own breakdown from its log events."""

from __future__ import annotations

import asyncio
import random
import shutil
import subprocess
import tempfile
import time
import wave
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from benchmarks.common import REPO
from benchmarks.speech import log, spread
from benchmarks.speech.audio import LOUD_DBFS, RATE, SENTENCES, Voices, loud_span_s
from benchmarks.speech.machine import SANDBOX
from ivr_server.media.audio import frame_dbfs
from ivr_server.media.g711 import ulaw_decode
from ivr_server.media.rtp import RtpPacket
from ivr_server.ops.sipp import write_voice
from ivr_server.store.queries import TurnRecord
from tests.support.capture import Datagram
from tests.support.sipp import SippCall

BENCH_APP, BENCH_EXTEN = "ivr-bench", "9300"  # the voice flow, on an ARI application of our own
PCMU = 0  # RTP payload type of G.711 mu-law


class LogTap:
    """structlog for the in-process server: keeps the turn-taking events (with their call_id)
    for the latency breakdown, prints warnings and errors, drops the rest."""

    KEEP = (
        "voice.end_of_turn",
        "voice.reply_started",
        "voice.speech_started",
        "tts.fallback",
        "ari.application_replaced",  # another server took the ARI app: its calls are lost to us
        "media.clock_skipped",
    )

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def __call__(self, logger: Any, method: str, event: MutableMapping[str, Any]) -> Mapping[str, Any]:
        if event.get("event") in self.KEEP:
            self.events.append({**event, "t": time.monotonic()})
        if method in ("warning", "error", "critical", "exception"):
            fields = {k: v for k, v in event.items() if k != "event"}
            log(f"server {method}: {event.get('event')} {fields}")
        raise structlog.DropEvent


def quiet_logging(tap: LogTap) -> None:
    structlog.configure(
        processors=[structlog.contextvars.merge_contextvars, structlog.processors.add_log_level, tap],
        cache_logger_on_first_use=False,
    )


def greeting_s() -> float:
    with wave.open(str(REPO / "prompts" / "voice_greeting.wav")) as w:
        return float(w.getnframes() / w.getframerate())


def bench_extension() -> None:
    """A dialplan entry of the benchmark's own, at run time only (asterisk_conf is untouched):
    BENCH_EXTEN runs the voice flow like extension 300, in the ARI application BENCH_APP. The
    sandbox is shared: a server on the usual application takes it from ours, and ours from it."""
    line = f"dialplan add extension {BENCH_EXTEN},1,Stasis({BENCH_APP},voice) into ivr-inbound replace"
    done = subprocess.run(
        [str(SANDBOX), "cli", line], check=False, capture_output=True, text=True, timeout=30
    )
    if done.returncode != 0:
        raise RuntimeError(f"asterisk-sandbox cli {line!r} failed: {done.stderr or done.stdout}")


@dataclass
class PlannedCall:
    index: int
    sentence: str
    caller: str
    wav_span_s: float
    sipp: SippCall
    start_at: float


def levels_at(
    datagrams: Sequence[Datagram], port: int
) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    """(capture time, dBFS) of each mu-law RTP packet the caller on ``port`` sent, and of each
    it received."""
    sent: list[tuple[float, float]] = []
    heard: list[tuple[float, float]] = []
    for d in datagrams:
        if port not in (d.src_port, d.dst_port):
            continue
        packet = RtpPacket.parse(d.payload)
        if packet.payload_type != PCMU:
            continue
        item = (d.time_s, frame_dbfs(ulaw_decode(packet.payload)))
        (sent if d.src_port == port else heard).append(item)
    return sent, heard


def call_row(
    call: PlannedCall,
    rc: int,
    sent: Sequence[tuple[float, float]],
    heard: Sequence[tuple[float, float]],
    record_id: str | None,
    call_turns: Sequence[TurnRecord],
    ends_by_words: Mapping[str, list[dict[str, Any]]],
) -> dict[str, Any]:
    """One call's figures: the caller side from its RTP levels, the server's from its turns and
    its end-of-turn log event."""
    row: dict[str, Any] = {"call": call.index, "sentence": call.sentence, "sipp_rc": rc}
    loud_sent = [t for t, db in sent if db > LOUD_DBFS]
    caller_turns = [t for t in call_turns if t.role == "caller"]
    replies = [t for t in call_turns if t.role == "system" and t.text.startswith("You said")]
    if loud_sent:
        end = loud_sent[-1]
        # Did SIPp send the speech at real-time pace? (loud span as sent - loud span in the file)
        row["pace_error_ms"] = round((end - loud_sent[0] - call.wav_span_s) * 1000, 1)
        after = [(t, db) for t, db in heard if t > end]
        row["reply_first_packet_ms"] = round((after[0][0] - end) * 1000, 1) if after else None
        loud = [t for t, db in after if db > LOUD_DBFS]
        row["reply_first_loud_ms"] = round((loud[0] - end) * 1000, 1) if loud else None
    if caller_turns:
        turn = caller_turns[0]
        row.update(heard=turn.text, outcome=turn.outcome, server_latency_ms=turn.latency_ms)
    if replies:
        row["tts_first_audio_ms"] = replies[0].latency_ms
        row["reply_cached"] = replies[0].cached
    # The server's end-of-turn log event, found by the words heard (unique per call here);
    # whether it carried this call's call_id is kept as a check on the log context.
    found = ends_by_words.get(row.get("heard") or "\0", [])
    if record_id is not None and len(found) == 1:
        row["endpoint_detect_ms"] = found[0].get("detect_delay_ms")
        row["asr_final_ms"] = found[0].get("final_result_ms")
        row["log_call_id_ok"] = found[0].get("call_id") == record_id
    return row


def ends_by_words(events: Sequence[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """The server's end-of-turn events by the words it heard."""
    out: dict[str, list[dict[str, Any]]] = {}
    for e in events:
        if e["event"] == "voice.end_of_turn":
            out.setdefault(e.get("words") or "", []).append(e)
    return out


def measured(row: Mapping[str, Any]) -> bool:
    """A call counts when its caller turn was heard as speech and a loud reply followed."""
    return row.get("reply_first_loud_ms") is not None and row.get("outcome") == "speech"


def call_summary(
    rows: Sequence[dict[str, Any]], events: Sequence[dict[str, Any]], calls: int
) -> dict[str, Any]:
    """One run's percentiles over its calls, and the counts that say whether to trust them."""
    counted = [r for r in rows if measured(r)]
    caller_ms = [r["reply_first_loud_ms"] for r in counted]
    server_ms = [r["server_latency_ms"] for r in rows if r.get("server_latency_ms") is not None]
    summary: dict[str, Any] = {
        "calls": calls,
        "measured": len(counted),
        "failed": [r["call"] for r in rows if r not in counted],
        **spread(caller_ms, "caller_{}_ms"),
        **spread(server_ms, "server_{}_ms"),
        "log_call_id_wrong": sum(r.get("log_call_id_ok") is False for r in rows),
        "ari_app_taken": sum(e["event"] == "ari.application_replaced" for e in events),
        "clock_skipped_frames": sum(
            e.get("frames", 0) for e in events if e["event"] == "media.clock_skipped"
        ),
    }
    for key in ("endpoint_detect_ms", "asr_final_ms", "tts_first_audio_ms", "reply_first_packet_ms"):
        values = [r[key] for r in rows if r.get(key) is not None]
        summary.update(spread(values, key.removesuffix("_ms") + "_{}_ms", with_max=False))
    return summary


def plan_calls(
    voices: Voices, work: Path, order: Sequence[int], calls: int, concurrency: int
) -> list[PlannedCall]:
    """``calls`` SIPp callers, each waiting out the greeting then saying the next sentence of
    ``order``, started at even intervals so that about ``concurrency`` are in progress at once."""
    from tests.support.sipp import Pause, Speak, Step, scenario

    wait_ms = int((greeting_s() + 1.5) * 1000)
    call_s = wait_ms / 1000 + 3 + 6  # greeting wait, speech, the reply: about how long a call lasts
    spacing = call_s / max(1, concurrency)
    planned = []
    for j in range(calls):
        sentence = SENTENCES[order[j % len(order)]]
        pcm = voices.piper(sentence)
        voice = work / f"voice-{j}.ul"
        write_voice(voice, pcm)
        steps: list[Step] = [Pause(wait_ms), Speak(voice, int(len(pcm) / RATE * 1000) + 300)]
        caller = f"+1555020{j:04d}"
        sipp = SippCall(
            scenario(steps, work, caller=caller, bye_timeout_ms=30000),
            service=BENCH_EXTEN,
            workdir=work,
            timeout_s=wait_ms / 1000 + 60,
        )
        planned.append(PlannedCall(j, sentence, caller, loud_span_s(pcm), sipp, j * spacing))
    return planned


async def run_call(
    voices: Voices, rng: random.Random, calls: int, concurrency: int, asr_workers: int, tap: LogTap
) -> dict[str, Any]:
    """One run: a fresh in-process server (SQLite, a fresh TTS cache), ``calls`` callers saying
    the sentences in a seeded order; per-call rows and their summary."""
    from ivr_server.store.database import create_engine, upgrade
    from ivr_server.store.queries import list_calls, turns_of
    from tests.conftest import running_server, server_settings, settle
    from tests.support.capture import LoopbackCapture

    work = Path(tempfile.mkdtemp(prefix="call-", dir=voices.work))
    url = f"sqlite+aiosqlite:///{work / 'bench.sqlite3'}"
    await asyncio.to_thread(upgrade, url)
    settings = server_settings(
        url,
        media_port_min=43000,  # apart from the tests' and the demo's ranges
        media_port_max=43399,
        tts_cache_dir=work / "tts-cache",  # fresh: replies are synthesized, prompts pre-rendered
        asr_workers=asr_workers,
        ari_app=BENCH_APP,
    )
    order = rng.sample(range(len(SENTENCES)), len(SENTENCES))
    planned = plan_calls(voices, work, order, calls, concurrency)
    ports = " or ".join(f"port {c.sipp.media_port}" for c in planned)
    slots = asyncio.Semaphore(concurrency)
    await asyncio.to_thread(bench_extension)
    async with running_server(settings) as server:
        t0 = time.monotonic()
        tap_from = len(tap.events)

        async def place(call: PlannedCall) -> int:
            await asyncio.sleep(max(0.0, t0 + call.start_at - time.monotonic()))
            async with slots:
                rc = await call.sipp.run()
                if rc != 0:
                    log(
                        f"call {call.index} ({call.sentence!r}): SIPp exited {rc}: "
                        f"{call.sipp.errors()[-500:]}"
                    )
                return int(rc)

        async with LoopbackCapture(work / "caller.pcap", f"udp and ({ports})") as capture:
            codes = await asyncio.gather(*(place(c) for c in planned))
        await settle(server, 30)
        events = tap.events[tap_from:]
    datagrams = capture.datagrams()
    engine = create_engine(url)
    try:
        records = {r.caller_number: r for r in await list_calls(engine, calls + 10)}
        turns = {number: await turns_of(engine, r.id) for number, r in records.items()}
    finally:
        await engine.dispose()
    by_words = ends_by_words(events)
    rows = []
    for call, rc in zip(planned, codes, strict=True):
        sent, heard = levels_at(datagrams, call.sipp.media_port)
        record = records.get(call.caller)
        record_id = record.id if record is not None else None
        rows.append(call_row(call, rc, sent, heard, record_id, turns.get(call.caller, []), by_words))
    shutil.rmtree(work, ignore_errors=True)
    return {"summary": call_summary(rows, events, calls), "calls": rows}


async def run_call_section(
    voices: Voices, rng: random.Random, calls: int, concurrency: int, asr_workers: int, tap: LogTap
) -> dict[str, Any]:
    """A run of calls, placed once more when another client took the ARI application meanwhile."""
    for attempt in range(1, 3):
        result = await run_call(voices, rng, calls, concurrency, asr_workers, tap)
        result["summary"]["attempt"] = attempt
        if not result["summary"]["ari_app_taken"]:
            break
        log("another client took the ARI application during the calls; placing them again")
    s = result["summary"]
    log(
        f"  calls: caller side p50/p95 {s['caller_p50_ms']}/{s['caller_p95_ms']} ms, server "
        f"{s['server_p50_ms']}/{s['server_p95_ms']} ms, {s['measured']}/{s['calls']} measured"
    )
    return result
