"""The speech benchmark's call section (benchmarks/speech/call.py): the log tap, the RTP level
reading, a call's row and a run's summary on known packets and turns, the SIPp callers' files;
and (e2e) one real call through the sandbox Asterisk."""

from __future__ import annotations

import json
import random
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import structlog

from benchmarks.common import REPO
from benchmarks.speech.audio import FRAME, RATE, SENTENCES, Voices, loud_span_s
from benchmarks.speech.call import (
    BENCH_EXTEN,
    LogTap,
    PlannedCall,
    call_row,
    call_summary,
    ends_by_words,
    greeting_s,
    levels_at,
    plan_calls,
    quiet_logging,
    run_call,
)
from ivr_server.media.g711 import ulaw_encode
from ivr_server.media.rtp import RtpPacket
from ivr_server.store.queries import TurnRecord
from tests.support.capture import Datagram

CALLER_PORT, ASTERISK_PORT = 40000, 10000
LOUD = (8000 * np.sin(2 * np.pi * 440 * np.arange(FRAME) / RATE)).astype(np.int16)
QUIET = np.zeros(FRAME, np.int16)


@pytest.fixture
def tap() -> Iterator[LogTap]:
    saved = structlog.get_config()
    tap = LogTap()
    quiet_logging(tap)
    yield tap
    structlog.configure(**saved)


def test_the_tap_keeps_turn_taking_events_and_prints_only_problems(
    tap: LogTap, capsys: pytest.CaptureFixture[str]
) -> None:
    """Turn-taking events are kept with their fields (call_id from the log context) and a time;
    other events are dropped; warnings reach stderr, info does not."""
    logger = structlog.get_logger("test")
    with structlog.contextvars.bound_contextvars(call_id="c1"):
        logger.info("voice.end_of_turn", words="pay my bill", detect_delay_ms=300)
    logger.info("asr.started", engine="pocketsphinx")
    logger.warning("media.clock_skipped", frames=3)
    assert [e["event"] for e in tap.events] == ["voice.end_of_turn", "media.clock_skipped"]
    assert tap.events[0]["call_id"] == "c1" and tap.events[0]["detect_delay_ms"] == 300
    assert tap.events[0]["t"] <= tap.events[1]["t"]
    err = capsys.readouterr().err
    assert "bench-speech: server warning: media.clock_skipped {'frames': 3" in err
    assert "asr.started" not in err


def rtp(t: float, src: int, dst: int, pcm: np.ndarray, payload_type: int = 0) -> Datagram:
    payload = ulaw_encode(pcm) if payload_type == 0 else b"\x01\x0a\x00\xa0"
    return Datagram(t, src, dst, RtpPacket(payload_type, 1, 160, 7, payload).to_bytes())


def packets() -> list[Datagram]:
    """The caller sends loud frames from 1.00 to 2.00 s then silence; the reply comes back
    silent at 2.30 s and loud at 2.40 s; a DTMF packet and another caller's audio are noise."""
    sent = [rtp(1.0 + k * 0.02, CALLER_PORT, ASTERISK_PORT, LOUD) for k in range(51)]
    sent += [rtp(2.02 + k * 0.02, CALLER_PORT, ASTERISK_PORT, QUIET) for k in range(10)]
    heard = [
        rtp(0.5, ASTERISK_PORT, CALLER_PORT, LOUD),  # the greeting, before the caller spoke
        rtp(2.3, ASTERISK_PORT, CALLER_PORT, QUIET),
        rtp(2.4, ASTERISK_PORT, CALLER_PORT, LOUD),
        rtp(2.45, ASTERISK_PORT, CALLER_PORT, LOUD, payload_type=101),
        rtp(2.1, ASTERISK_PORT, CALLER_PORT + 2, LOUD),
    ]
    return sent + heard


def test_levels_are_read_per_direction_of_one_callers_audio() -> None:
    """The caller's sent and received mu-law packets, each with its level; other payload types
    and other callers' ports are left out."""
    sent, heard = levels_at(packets(), CALLER_PORT)
    assert len(sent) == 61 and len(heard) == 3
    assert [t for t, _ in heard] == [0.5, 2.3, 2.4]
    assert sent[0][1] > -20 and sent[-1][1] < -90


def turn(seq: int, role: str, text: str, outcome: str, latency_ms: int | None) -> TurnRecord:
    return TurnRecord(
        seq, role, datetime.now(UTC), text, outcome, None, None, None, None, None, latency_ms, False, {}
    )


def planned(index: int = 0, sentence: str = SENTENCES[0], span_s: float = 0.98) -> PlannedCall:
    return PlannedCall(index, sentence, f"+1555020{index:04d}", span_s, None, 0.0)  # type: ignore[arg-type]


def test_a_calls_row_times_the_reply_from_the_end_of_speech() -> None:
    """End of speech is the last loud packet sent (2.00 s): the first packet back 300 ms later,
    the first loud one 400 ms; SIPp's pace error is the sent loud span (1.00 s) minus the WAV's;
    the server's figures come from its turns and the end-of-turn event of the words heard."""
    sent, heard = levels_at(packets(), CALLER_PORT)
    turns = [
        turn(1, "system", "Welcome", "played", None),
        turn(2, "caller", "i would like to pay my bill", "speech", 380),
        turn(3, "system", "You said i would like to pay my bill", "played", 12),
    ]
    events = [
        {"event": "voice.end_of_turn", "words": "i would like to pay my bill", "call_id": "c1",
         "detect_delay_ms": 300, "final_result_ms": 70},
        {"event": "voice.end_of_turn", "words": "something else", "call_id": "c2"},
    ]  # fmt: skip
    row = call_row(planned(span_s=0.98), 0, sent, heard, "c1", turns, ends_by_words(events))
    assert row == {
        "call": 0,
        "sentence": SENTENCES[0],
        "sipp_rc": 0,
        "pace_error_ms": pytest.approx(20.0),
        "reply_first_packet_ms": pytest.approx(300.0),
        "reply_first_loud_ms": pytest.approx(400.0),
        "heard": "i would like to pay my bill",
        "outcome": "speech",
        "server_latency_ms": 380,
        "tts_first_audio_ms": 12,
        "reply_cached": False,
        "endpoint_detect_ms": 300,
        "asr_final_ms": 70,
        "log_call_id_ok": True,
    }
    other = call_row(planned(), 0, sent, heard, "c9", turns, ends_by_words(events))
    assert other["log_call_id_ok"] is False


def test_a_call_without_speech_or_record_has_no_timings() -> None:
    """Nothing loud sent: no caller-side timing; no call record: no log breakdown; no turns:
    nothing the server said."""
    row = call_row(planned(), 1, [(1.0, -99.0)], [(1.2, -10.0)], None, [], {})
    assert row == {"call": 0, "sentence": SENTENCES[0], "sipp_rc": 1}


def committed_call_runs() -> list[dict[str, Any]]:
    data = json.loads((REPO / "benchmarks" / "speech.json").read_text())
    return [r["call"] for r in data["runs"] if "call" in r]


def test_a_runs_summary_recomputes_from_its_calls() -> None:
    """Each committed run's call summary follows from its per-call rows (the log-event counts
    aside, which come from events not kept in the JSON)."""
    runs = committed_call_runs()
    assert runs
    for run in runs:
        summary = call_summary(run["calls"], [], run["summary"]["calls"])
        expected = {k: v for k, v in run["summary"].items() if k != "attempt"}
        for key in ("ari_app_taken", "clock_skipped_frames"):
            del summary[key], expected[key]
        assert summary == expected


def test_a_runs_summary_counts_failures_and_log_events() -> None:
    """A call not heard as speech is listed as failed and left out of the caller-side figures;
    a replaced ARI application and skipped clock frames are counted from the log events."""
    rows = [
        {"call": 0, "reply_first_loud_ms": 300.0, "outcome": "speech", "server_latency_ms": 350},
        {"call": 1, "reply_first_loud_ms": 500.0, "outcome": "noise", "server_latency_ms": 550},
        {"call": 2, "log_call_id_ok": False},
    ]
    events = [
        {"event": "ari.application_replaced"},
        {"event": "media.clock_skipped", "frames": 2},
        {"event": "media.clock_skipped", "frames": 3},
    ]
    s = call_summary(rows, events, 3)
    assert s["measured"] == 1 and s["failed"] == [1, 2]
    assert s["caller_p50_ms"] == 300.0 and s["caller_max_ms"] == 300.0
    assert s["server_p50_ms"] == 450.0 and s["server_max_ms"] == 550
    assert s["log_call_id_wrong"] == 1 and s["ari_app_taken"] == 1 and s["clock_skipped_frames"] == 5
    assert s["endpoint_detect_p50_ms"] is None


def test_callers_wait_out_the_greeting_and_say_sentences_in_order(tmp_path: Path) -> None:
    """Three callers over a two-sentence order: sentences in turn, distinct numbers and ports,
    started evenly (a call's length / concurrency apart), each with its WAV and scenario, the
    first step a pause of the greeting plus 1.5 s."""
    voices = Voices(tmp_path)
    calls = plan_calls(voices, tmp_path, [3, 0], calls=3, concurrency=2)
    assert [c.sentence for c in calls] == [SENTENCES[3], SENTENCES[0], SENTENCES[3]]
    assert len({c.caller for c in calls}) == 3 and len({c.sipp.media_port for c in calls}) == 3
    wait_s = int((greeting_s() + 1.5) * 1000) / 1000
    assert [c.start_at for c in calls] == pytest.approx([0, (wait_s + 9) / 2, wait_s + 9])
    for j, c in enumerate(calls):
        assert (tmp_path / f"voice-{j}.ul").is_file()
        assert c.wav_span_s == pytest.approx(loud_span_s(voices.piper(c.sentence)))
        assert c.sipp.service == BENCH_EXTEN
        assert f'milliseconds="{int(wait_s * 1000)}"' in c.sipp.scenario_xml


def soxi(flag: str, path: Path) -> str:
    return subprocess.run(
        ["soxi", flag, str(path)], capture_output=True, text=True, check=True
    ).stdout.strip()


def test_the_greeting_length_is_its_wav_length() -> None:
    """The caller waits out the voice flow's greeting: its WAV's length, as sox reads it."""
    wav = REPO / "prompts" / "voice_greeting.wav"
    assert greeting_s() == pytest.approx(float(soxi("-D", wav)), abs=1e-3)


@pytest.mark.e2e
@pytest.mark.usefixtures("asterisk")
async def test_one_real_call_is_measured(tmp_path: Path, tap: LogTap) -> None:
    """One SIPp call through the sandbox to the in-process server: measured (heard as speech,
    a loud reply timed from the caller side), the server's breakdown found in its log events
    with this call's call_id."""
    result = await run_call(Voices(tmp_path), random.Random(7), 1, 1, 1, tap)
    s, row = result["summary"], result["calls"][0]
    assert s["measured"] == 1 and s["failed"] == [], row
    assert row["sipp_rc"] == 0
    assert 0 < row["reply_first_loud_ms"] < 3000
    assert row["log_call_id_ok"] is True
    assert row["endpoint_detect_ms"] is not None and row["asr_final_ms"] is not None
