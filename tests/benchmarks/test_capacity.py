"""scripts/bench-capacity's code (benchmarks.capacity) apart from the real calls: reply latency,
RTP loss, lateness and skipped frames from hand-made packet timelines, the callers' SIP dialogs
and the window in which every call was up, Prometheus histogram quantiles, /proc and SIPp
readings, a level's summary and verdict, max_calls and memory per call, the level's server and
SIPp settings, and the report (its profile of the limiting level, plot and --replot)."""

from __future__ import annotations

import copy
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from benchmarks.capacity.levels import CAPACITY, callers, level_settings
from benchmarks.capacity.measure import (
    Packet,
    Stream,
    call_rows,
    failures,
    full_window,
    histogram,
    histogram_delta,
    late,
    latency_summary,
    lost,
    machine_ticks,
    max_calls,
    mem_per_call_mb,
    pss_kib,
    quantile,
    rtp_streams,
    sip_dialogs,
    sipp_counts,
    skipped_frames,
    speech_bursts,
    summarize,
    turns,
)
from benchmarks.capacity.report import build, limits, markdown, plot, replot
from benchmarks.common import REPO
from benchmarks.ops.measure import Stat, tree_of, tree_ticks
from benchmarks.ops.runs import Bench
from benchmarks.ops.server import OtlpReceiver, server_env
from ivr_server.config import Settings
from ivr_server.media.g711 import ulaw_encode
from ivr_server.media.rtp import RtpPacket
from ivr_server.ops.capture import Datagram
from tests.support.sipp import Pause

LOUD = ulaw_encode((8000 * np.sin(np.arange(160) / 3)).astype(np.int16))  # about -15 dBFS
HUSH = ulaw_encode((30 * np.sin(np.arange(160) / 3)).astype(np.int16))  # about -63 dBFS: line noise
SILENT = ulaw_encode(np.zeros(160, dtype=np.int16))


def _packets(
    t0: float, n: int, loud: set[int] | range = range(0), *, seq0: int = 0, ssrc: int = 1
) -> list[Packet]:
    """``n`` packets 20 ms apart from ``t0``; those whose index is in ``loud`` carry speech."""
    return [Packet(t0 + i * 0.02, ssrc, (seq0 + i) % 65536, 160 * (seq0 + i), False, 0,
                   -15.0 if i in loud else -120.0) for i in range(n)]  # fmt: skip


def test_each_sentence_is_timed_to_the_first_loud_packet_of_its_answer() -> None:
    """Sentence 1 ends at its last loud packet (1.38 s); line noise and silence after it are no
    answer, the answer's first loud packet (1.83 s) is: 450 ms. Sentence 2 is talked over by the
    line (not timed, though its answer is found); sentence 3 gets no answer before the caller's
    next one (the answer after it belongs to no turn). A DTMF packet is no sentence."""
    sent = [
        *_packets(1.0, 25, range(2, 20)),  # loud 1.04-1.38, then silence to 1.48
        Packet(2.5, 1, 999, 0, False, 101, -120.0),  # a key
        *_packets(3.0, 20, range(0, 15)),  # loud 3.00-3.28
        *_packets(6.0, 20, range(5, 10)),  # loud 6.10-6.18
        *_packets(8.0, 20, range(0, 20)),  # loud 8.00-8.38
    ]
    received = [
        *_packets(0.2, 20, range(20)),  # the greeting
        Packet(1.40, 2, 0, 0, False, 0, -63.0),  # line noise: not loud
        *_packets(1.83, 10, range(10)),  # the answer to sentence 1
        *_packets(3.10, 5, range(5)),  # the line talks over sentence 2
        *_packets(3.60, 5, range(5)),  # ...and answers it
        *_packets(8.50, 5, range(5)),  # answers sentence 4 only
    ]
    bursts = speech_bursts(sent)
    assert [(round(b.start_s, 2), round(b.speech_from_s, 2), round(b.speech_to_s, 2)) for b in bursts] == [
        (1.0, 1.04, 1.38), (3.0, 3.0, 3.28), (6.0, 6.1, 6.18), (8.0, 8.0, 8.38),
    ]  # fmt: skip
    got = turns(sent, received)
    assert [None if t.reply_ms is None else round(t.reply_ms) for t in got] == [450, 320, None, 120]
    assert [t.overlapped for t in got] == [False, True, False, False]


def _rtp(t: float, src: int, dst: int, seq: int, payload: bytes = LOUD, *, ssrc: int = 7, pt: int = 0,
         marker: bool = False) -> Datagram:  # fmt: skip
    packet = RtpPacket(
        payload_type=pt, sequence=seq, timestamp=seq * 160, ssrc=ssrc, payload=payload, marker=marker
    )
    return Datagram(t, src, dst, packet.to_bytes())


def _sip(t: float, src: int, dst: int, first: str, call_id: str, cseq: str, body: str = "",
         call_id_header: str = "Call-ID") -> Datagram:  # fmt: skip
    text = (f"{first}\r\nVia: SIP/2.0/UDP 127.0.0.1:{src}\r\n{call_id_header}: {call_id}\r\nCSeq: {cseq}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n{body}")  # fmt: skip
    return Datagram(t, src, dst, text.encode())


SIPP, ASTERISK, MEDIA = 5100, 5060, 6000


def _sdp(port: int) -> str:
    return f"v=0\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {port} RTP/AVP 0 101\r\na=ptime:20\r\n"


def _two_calls() -> list[Datagram]:
    """Call a (Asterisk's RTP port 10002): answered at 1.0, the line hangs up at 70.0; call b
    (10004, compact Call-ID header): answered at 3.0, the caller hangs up at 40.0."""
    return [
        _sip(0.0, SIPP, ASTERISK, "INVITE sip:400@127.0.0.1:5060 SIP/2.0", "a", "1 INVITE", _sdp(MEDIA)),
        _sip(0.01, ASTERISK, SIPP, "SIP/2.0 100 Trying", "a", "1 INVITE"),
        _sip(0.5, SIPP, ASTERISK, "INVITE sip:400@127.0.0.1:5060 SIP/2.0", "b", "1 INVITE", _sdp(MEDIA), "i"),
        _sip(1.0, ASTERISK, SIPP, "SIP/2.0 200 OK", "a", "1 INVITE", _sdp(10002)),
        _sip(1.5, ASTERISK, SIPP, "SIP/2.0 200 OK", "a", "1 INVITE", _sdp(10002)),  # retransmitted
        _sip(3.0, ASTERISK, SIPP, "SIP/2.0 200 OK", "b", "1 INVITE", _sdp(10004), "i"),
        # the greeting of a, 2 packets; then a's caller speaks (loud 10.00-10.08) and is answered at 10.58
        _rtp(1.2, 10002, MEDIA, 1, marker=True), _rtp(1.22, 10002, MEDIA, 2),
        *[_rtp(10.0 + i * 0.02, MEDIA, 10002, 50 + i, ssrc=9) for i in range(5)],
        _rtp(10.58, 10002, MEDIA, 3, marker=True), _rtp(10.60, 10002, MEDIA, 5),  # seq 4 lost
        # b's caller speaks (loud 20.0-20.04), the answer comes 200 ms later
        *[_rtp(20.0 + i * 0.02, MEDIA, 10004, 10 + i, ssrc=11) for i in range(3)],
        _rtp(20.24, 10004, MEDIA, 1, ssrc=12),
        _sip(40.0, SIPP, ASTERISK, "BYE sip:400@127.0.0.1:5060 SIP/2.0", "b", "2 BYE"),
        _sip(40.01, ASTERISK, SIPP, "SIP/2.0 200 OK", "b", "2 BYE"),  # not an answer
        _sip(70.0, ASTERISK, SIPP, "BYE sip:caller@127.0.0.1:5100 SIP/2.0", "a", "102 BYE"),
    ]  # fmt: skip


def test_sip_dialogs_at_the_caller() -> None:
    """Each dialog by Call-ID (compact header too): its first 200 OK to the INVITE (a
    retransmission is no new answer) with the RTP port Asterisk's SDP gives, and
    the first BYE with who sent it; every call is up from the last answer to the first hang-up."""
    dialogs = sip_dialogs(_two_calls(), SIPP)
    a, b = dialogs["a"], dialogs["b"]
    assert (a.invited_s, a.answered_s, a.rtp_port, a.ended_s, a.ended_by) == (0.0, 1.0, 10002, 70.0, "line")
    assert (b.invited_s, b.answered_s, b.rtp_port, b.ended_s, b.ended_by) == (0.5, 3.0, 10004, 40.0, "caller")
    assert full_window(dialogs.values()) == (3.0, 40.0)
    b.answered_s = None
    assert full_window(dialogs.values()) is None  # a call never answered: no full window
    assert sip_dialogs(_two_calls(), 5200) == {}  # another SIPp's port


def test_call_rows_split_one_sipps_calls_by_their_asterisk_port() -> None:
    """Both calls' media share SIPp's one port: each is told apart by the Asterisk port its SDP
    gave, its caller's sentence timed to its own answer, its lost packet counted; times are from
    the first INVITE, the full window too."""
    measured = call_rows(_two_calls(), SIPP, MEDIA)
    a, b = measured["call_rows"]
    assert (a["answered_s"], a["ended_s"], a["ended_by"], a["greeting_ms"]) == (1.0, 70.0, "line", 200.0)
    assert a["turns"] == [{"at_s": 10.08, "reply_ms": 500.0, "overlapped": False}]
    assert a["rtp"] == {"received": 4, "lost": 1, "late": 0, "skipped_frames": 0}
    assert b["turns"] == [{"at_s": 20.04, "reply_ms": 200.0, "overlapped": False}]
    assert (b["ended_by"], b["rtp"]["lost"]) == ("caller", 0)
    assert measured["full_window_s"] == [3.0, 40.0]
    streams = rtp_streams(_two_calls(), MEDIA)
    assert sorted(streams) == [10002, 10004] and len(streams[10002].sent) == 5
    assert streams.get(10006, Stream()).received == []


def _seq(seqs: list[int], ssrc: int = 1) -> list[Packet]:
    return [Packet(i * 0.02, ssrc, s, s * 160, False, 0, -120.0) for i, s in enumerate(seqs)]


def test_loss_by_sequence_number_across_wraps_and_sources() -> None:
    """RFC 3550's count: expected less received. 65535 -> 0 is one step (seq 1 is missing), a
    duplicate is received once, a late packet fills its gap; each SSRC on its own."""
    assert lost(_seq([65534, 65535, 0, 2, 2, 3])) == 1
    assert lost(_seq([5, 7, 6, 8])) == 0
    assert lost(_seq([10, 11, 12]) + _seq([100, 101, 103], ssrc=2)) == 1
    assert lost([]) == 0


def _resumed(t0: float, marker: bool) -> list[Packet]:
    """Five packets from ``t0`` whose timestamps go on from seq 10 as if no time had passed."""
    return [Packet(t0 + i * 0.02, 1, 10 + i, (10 + i) * 160, marker and i == 0, 0, -15.0) for i in range(5)]


def test_late_packets_by_transit_time_within_a_talkspurt() -> None:
    """Transit (arrival less RTP timestamp) against the talkspurt's quickest: 80 ms late counts,
    50 ms does not. After a silence the line's timestamps may not have advanced with time: a
    marker bit starts a new talkspurt, and so does a gap of over 200 ms without packets."""
    spurt = [Packet(i * 0.02, 1, i, i * 160, i == 0, 0, -15.0) for i in range(10)]
    spurt[4] = Packet(0.08 + 0.080, 1, 4, 640, False, 0, -15.0)
    spurt[7] = Packet(0.14 + 0.050, 1, 7, 1120, False, 0, -15.0)
    assert late(spurt) == 1
    assert late(spurt + _resumed(0.33, marker=True)) == 1  # 150 ms of silence, then a marker
    assert late(spurt + _resumed(0.33, marker=False)) == 6  # ...without one: 150 ms late each
    assert late(spurt + _resumed(5.0, marker=False)) == 1  # 4.8 s without a packet: a new talkspurt


def test_frames_skipped_inside_a_talkspurt() -> None:
    """Consecutive sequence numbers whose timestamps jump 3 frames: 2 frames skipped (a sender
    whose clock fell behind); a sequence gap is loss, not a skip; a marker bit starts a spurt."""
    ts = [0, 160, 640, 800, 1280]  # 800 -> 1280 is over a lost packet (seq 3 -> 5)
    packets = [
        Packet(i * 0.02, 1, s, t, False, 0, -15.0)
        for i, (s, t) in enumerate(zip([0, 1, 2, 3, 5], ts, strict=True))
    ]
    assert skipped_frames(packets) == 2
    assert lost(packets) == 1
    after_silence = Packet(9.0, 1, 6, 90000, True, 0, -15.0)
    assert skipped_frames([*packets, after_silence]) == 2
    stalled = Packet(9.0, 1, 6, 90000, False, 0, -15.0)  # no marker: the sender skipped 553 slots
    assert skipped_frames([*packets, stalled]) == 2 + 553


PAGE = """# HELP ivr_event_loop_lag_seconds How late the event loop's heartbeat woke
# TYPE ivr_event_loop_lag_seconds histogram
ivr_event_loop_lag_seconds_bucket{le="0.001"} %d.0
ivr_event_loop_lag_seconds_bucket{le="0.002"} %d.0
ivr_event_loop_lag_seconds_bucket{le="0.005"} %d.0
ivr_event_loop_lag_seconds_bucket{le="0.01"} %d.0
ivr_event_loop_lag_seconds_bucket{le="0.02"} %d.0
ivr_event_loop_lag_seconds_bucket{le="+Inf"} %d.0
ivr_event_loop_lag_seconds_count %d.0
ivr_event_loop_lag_seconds_sum %f
ivr_tool_latency_seconds_bucket{le="0.1",tool="balance"} 3.0
ivr_tool_latency_seconds_bucket{tool="cards",le="0.1"} 4.0
ivr_tool_latency_seconds_bucket{le="+Inf",tool="balance"} 5.0
ivr_tool_latency_seconds_bucket{tool="cards",le="+Inf"} 4.0
"""


def test_histogram_quantiles_as_prometheus_computes_them() -> None:
    """Of what was counted between two pages (start-up's 10 heartbeats left out): p99 falls in
    the 5-10 ms bucket, 2 of its 2: 10 ms; p95 in 2-5 ms, 5 of 7 into it. Past the last finite
    bound it is that bound; nothing counted is no figure. Labelled series are summed by bound."""
    before = PAGE % (10, 10, 10, 10, 10, 10, 10, 0.01)
    after = PAGE % (60, 100, 107, 109, 110, 110, 110, 0.31)
    delta = histogram_delta(histogram(before, "ivr_event_loop_lag_seconds"),
                            histogram(after, "ivr_event_loop_lag_seconds"))  # fmt: skip
    assert delta == {"0.001": 50, "0.002": 90, "0.005": 97, "0.01": 99, "0.02": 100, "+Inf": 100}
    assert quantile(delta, 0.99) == pytest.approx(0.01)
    assert quantile(delta, 0.95) == pytest.approx(0.002 + 0.003 * 5 / 7)
    assert quantile({0.01: 1, 0.02: 2, math.inf: 10}, 0.99) == 0.02
    assert quantile({0.01: 0, math.inf: 0}, 0.99) is None and quantile({}, 0.5) is None
    assert histogram(after, "ivr_tool_latency_seconds") == {0.1: 7.0, math.inf: 9.0}
    assert histogram(after, "ivr_event_loop_lag") == {}
    summary = latency_summary(before, after, "ivr_event_loop_lag_seconds")
    assert summary == {"n": 100, "mean_ms": 3.0, "p95_ms": pytest.approx(4.1, abs=0.05)}


def test_proc_and_sipp_readings() -> None:
    """/proc/stat's busy time is all but idle and iowait over the first eight fields; PSS from
    smaps_rollup; SIPp's calls from the last dump of its statistics file (none: an error)."""
    stat = "cpu  100 5 50 1000 20 3 2 1 40 0\ncpu0 50 2 25 500 10 1 1 0 20 0\n"
    assert machine_ticks(stat) == (161, 1181)
    with pytest.raises(ValueError):
        machine_ticks("intr 1 2 3\n")
    rollup = "55e0-7ff [rollup]\nRss:              204800 kB\nPss:              150016 kB\nPss_Anon: 9 kB\n"
    assert pss_kib(rollup) == 150016 and pss_kib("Rss: 1 kB\n") is None
    csv = ("StartTime;CurrentCall;SuccessfulCall(P);SuccessfulCall(C);FailedCall(P);FailedCall(C);\n"
           "x;4;0;0;0;0;\nx;0;3;31;1;1;\n")  # fmt: skip
    assert sipp_counts(csv) == {"successful": 31, "failed": 1}
    with pytest.raises(ValueError):
        sipp_counts(csv.splitlines()[0])


def test_tree_of_lists_what_tree_ticks_sums() -> None:
    """The server's tree is itself and its workers' descendants, not another program's; its
    ticks are theirs summed."""
    stats = [
        Stat(10, 1, 5, 1, 2, 0),
        Stat(11, 10, 7, 0, 0, 0),
        Stat(12, 11, 3, 1, 0, 0),
        Stat(20, 1, 100, 0, 0, 0),
    ]
    assert sorted(s.pid for s in tree_of(stats, 10)) == [10, 11, 12]
    assert tree_ticks(stats, 10) == sum(s.ticks for s in tree_of(stats, 10)) == 19
    assert tree_of(stats, 99) == []


CPU = {"server_s": 60.0, "main_s": 20.0, "loop_s": 15.0, "asterisk_s": 10.0, "bench_s": 75.0,
       "busy_s": 150.0, "total_s": 160.0}  # fmt: skip


def _raw(
    calls: int,
    replies: list[float | None],
    *,
    lag_le: str = "0.01",
    lost_in: float = 0,
    peak: float = 0.0,
    answered: int | None = None,
    completed: int | None = None,
) -> dict[str, Any]:
    """A level's raw figures: ``replies`` the first call's turns (ms; None: unanswered), every
    heartbeat in the bucket up to ``lag_le`` (above 5 ms)."""
    answered = calls if answered is None else answered
    rtp = {"received": 100, "lost": 0, "late": 0, "skipped_frames": 0}
    rows = [{"answered_s": 1.0 + i if i < answered else None, "ended_s": 80.0, "ended_by": "line",
             "greeting_ms": 300.0 + i, "turns": [], "rtp": dict(rtp)} for i in range(calls)]  # fmt: skip
    rows[0]["turns"] = [
        {"at_s": 20.0 + k, "reply_ms": ms, "overlapped": False} for k, ms in enumerate(replies)
    ]
    return {
        "calls": calls, "spread_s": 8.0, "server_error": None, "sipp_exit": 0 if completed is None else 1,
        "sipp": {"successful": calls if completed is None else completed, "failed": 0}, "window_s": 80.0,
        "start_s": 5.5, "migrate_s": 1.0, "ready_s": 4.5 + calls / 16, "ended": answered, "clock_skips": 0, "sipp_errors": "",
        "cpu": dict(CPU), "memory": {"mem_idle_mb": peak - 50, "mem_peak_mb": peak},
        "metrics": {"loop_lag_buckets": {"0.005": 0, lag_le: 300, "+Inf": 300}, "declined": 0.0,
                    "rtp_lost_in": lost_in, "rtp_sent": 5000.0, "send_jitter_over_2ms": 12.0,
                    "frames_dropped": 0.0,
                    "latency": {"asr_final": {"n": 6, "mean_ms": 350.0, "p95_ms": 520.0},
                                "intent": {"n": 6, "mean_ms": 20.0, "p95_ms": 40.0},
                                "tts_first_audio": {"n": 7, "mean_ms": 90.0, "p95_ms": 160.0},
                                "reply": {"n": 6, "mean_ms": 500.0, "p95_ms": 700.0}}},
        "call_rows": rows, "full_window_s": [answered, 79.0] if answered == calls else None,
    }  # fmt: skip


def test_a_level_is_judged_on_every_criterion() -> None:
    """Reply figures over the turns timed: while every call was up, not talked over; shares of
    CPU of the machine. Failing: p95 over 700 ms, a turn unanswered, a call not completed or not
    answered, an RTP packet lost on the way to the server, loop lag p99 at 20 ms or more."""
    good = summarize(_raw(4, [400.0, 420.0, 380.0, 600.0]))
    assert (good["reply_p50_ms"], good["reply_p95_ms"], good["turns_timed"]) == (410.0, 573.0, 4)
    assert good["loop_lag_p99_ms"] == 10.0 and good["rtp_lost"] == 0
    assert (good["machine_cpu_pct"], good["asr_workers_cpu_pct"], good["loop_thread_core_pct"]) == (
        93.8,
        25.0,
        18.8,
    )
    assert good["load_cpu_pct"] == 9.4 and good["failed_because"] == []
    raw = _raw(4, [400.0, 420.0, 380.0, 600.0])
    raw["call_rows"][0]["turns"][0]["at_s"] = 2.0  # before the last call was answered: not timed
    raw["call_rows"][0]["turns"][1]["overlapped"] = True
    assert summarize(raw)["turns_timed"] == 2 and summarize(raw)["turns_overlapped"] == 1
    assert summarize(_raw(4, [400.0, 900.0]))["failed_because"] == ["reply p95 875 ms > 700 ms"]
    assert summarize(_raw(4, [400.0, None]))["failed_because"] == ["1 caller turns without a reply"]
    assert summarize(_raw(4, [400.0], completed=3))["failed_because"] == ["1 of 4 calls not completed"]
    assert summarize(_raw(4, [400.0], lost_in=2))["failed_because"] == ["2 RTP packets lost"]
    assert summarize(_raw(4, [400.0], lag_le="0.05"))["failed_because"] == ["loop lag p99 49.6 ms >= 20 ms"]
    unanswered = summarize(_raw(4, [400.0], answered=3))
    assert unanswered["failed_because"] == [
        "1 of 4 calls not answered",
        "no reply timed while every call was up",
    ]
    blind = _raw(4, [400.0])
    blind["metrics"], blind["cpu"] = None, None  # the server died under the level
    assert failures(summarize(blind))[-2:] == ["RTP loss not measured", "loop lag not measured"]


def test_cpu_shares_are_taken_while_every_call_was_up() -> None:
    """Cumulative readings every second (epoch times; the first INVITE at 1000): the shares come
    from the first and last readings inside the window in which every call was up (5-10 s), not
    the ramp's quiet start; with under two readings inside it, from the whole level's."""

    def cum(k: int, before: float, after: float) -> float:  # per second, up to 5 s and after it
        return before * min(k, 5) + after * max(0, k - 5)

    samples = [{"t": 1000.0 + k, "busy_s": cum(k, 0.2, 2.0), "total_s": 2.0 * k, "server_s": cum(k, 0.1, 1.5),
                "main_s": cum(k, 0.05, 0.75), "loop_s": cum(k, 0.05, 0.5), "bench_s": cum(k, 0.2, 1.6),
                "asterisk_s": cum(k, 0.0, 0.1)} for k in range(11)]  # fmt: skip
    raw = _raw(4, [400.0])
    raw.update(cpu_samples=samples, origin_s=1000.0, full_window_s=[5.0, 10.0])
    raw["call_rows"][0]["turns"][0]["at_s"] = 7.0
    s = summarize(raw)
    assert (s["cpu_over"], s["cpu_window_s"]) == ("while every call was up", 5.0)
    assert (s["machine_cpu_pct"], s["server_cpu_pct"], s["asr_workers_cpu_pct"]) == (100.0, 75.0, 37.5)
    assert (s["other_threads_cpu_pct"], s["loop_thread_core_pct"]) == (12.5, 50.0)
    assert (s["asterisk_cpu_pct"], s["load_cpu_pct"]) == (5.0, 5.0)
    raw["full_window_s"] = [5.0, 5.5]
    s = summarize(raw)
    assert (s["cpu_over"], s["cpu_window_s"], s["machine_cpu_pct"]) == ("over the level", 80.0, 93.8)


def test_max_calls_and_memory_per_call() -> None:
    """max_calls: the highest level that passed; memory per call: the slope of the peaks over
    the levels whose calls were all answered (12 MB a call; the 32-call level, calls missing, is
    left out of the fit)."""
    levels = [summarize(_raw(n, [400.0], peak=500 + 12 * n)) for n in (1, 4, 8)]
    levels.append(summarize(_raw(16, [900.0], peak=500 + 12 * 16)))
    levels.append(summarize(_raw(32, [400.0], peak=600.0, answered=20)))
    assert max_calls(levels) == 8
    assert mem_per_call_mb(levels) == 12.0
    assert max_calls(levels[3:]) == 0 and mem_per_call_mb(levels[:1]) is None


META = {"command": "scripts/bench-capacity", "date": "2025-01-02", "commit": "abc1234", "cores": 2,
        "machine": "Test CPU", "asr": "pocketsphinx (en-us)", "minutes": 9, "lock_wait_minutes": 1,
        "spread_s": 8.0, "levels_asked": [1, 4, 8, 16], "method": ["- How: a test."]}  # fmt: skip


def _report() -> dict[str, Any]:
    raws = [_raw(n, [400.0, 450.0], peak=500 + 12 * n) for n in (1, 4, 8)]
    raws.append(_raw(16, [600.0, 950.0], peak=500 + 12 * 16, lag_le="0.05"))
    return build(raws, META)


def test_what_limits_a_level_is_read_from_its_figures() -> None:
    """A machine 94 % busy, most of it the recognizer's workers; the event loop lagging; the
    reply over its bound, recognition its slowest part; RTP pacing when packets were late. A
    level with nothing saturated says so."""
    lv = _report()["levels"][-1]
    found = limits(lv)
    assert found[0] == (
        "the CPU: the machine was 94 % busy, most of it recognition (the recognizer's worker processes) "
        "(25 %)"
    )
    assert found[1].startswith("the event loop: its thread used 19 % of a core, lag p99 49.6 ms")
    assert (
        found[2]
        == "the reply: of its parts the server times, recognition's final words takes longest (p95 520 ms)"
    )
    assert len(found) == 3
    quiet = copy.deepcopy(lv)
    quiet.update(machine_cpu_pct=40.0, loop_lag_p99_ms=3.0, reply_p95_ms=500.0, rtp_late=3)
    assert limits(quiet) == [
        "RTP pacing: 0 packets lost (both ways), 3 late and 0 frames skipped at the callers; the server's "
        "media clock skipped slots 0 times"
    ]
    quiet["rtp_late"] = 0
    assert limits(quiet)[0].startswith("nothing measured here is saturated (the machine 40 % busy")


def test_report_judges_the_targets_profiles_the_limit_and_replots(tmp_path: Path) -> None:
    """capacity.json has the issue's fields; the markdown states max_calls and memory per call
    against their targets, a row per level with its verdict, and profiles the first level that
    failed; the plot is a PNG; --replot makes the same report again from the JSON alone."""
    data = _report()
    assert {"commit", "cores", "max_calls", "levels", "mem_per_call_mb"} <= data.keys()
    assert (data["max_calls"], data["mem_per_call_mb"], data["limiting_calls"]) == (8, 12.0, 16)
    level = data["levels"][0]
    assert {
        "calls",
        "answered",
        "completed",
        "reply_p50_ms",
        "reply_p95_ms",
        "rtp_lost",
        "loop_lag_p99_ms",
    } <= level.keys()
    text = markdown(data)
    assert (
        "| 8 calls | **not met** |" in text
        and "| 12.0 MB (slope of the peak over the levels) | **met** |" in text
    )
    assert "| 8 | 8 | 8 | 425 / 448 ms (2) | 0 / 0 | 0 (0 + 0) / 0 / 0 | 10.0 ms |" in text
    # ready: the median over the levels of `ivr-server run` to serving (4.56, 4.75, 5.0, 5.5 s)
    assert data["ready_s"] == 4.88 and "| ready <= 5 s after start | 4.9 s (" in text
    assert "| 5.0 s (+ 1.0 s) | passed |" in text and text.count("**met** |") == 2
    assert "| 16 | 16 | 16 | 775 / 932 ms (2) |" in text
    assert "**failed**: reply p95 932 ms > 700 ms; loop lag p99 49.6 ms >= 20 ms |" in text
    assert "## The limiting level\n\n16 calls, failed: reply p95 932 ms" in text
    assert "recognizer's final words 350 / 520 ms (6)" in text and "- How: a test." in text
    assert "## Notes" not in text
    (tmp_path / "capacity.json").write_text(json.dumps(data))
    assert replot(tmp_path) == text == (tmp_path / "capacity.md").read_text()
    assert (tmp_path / "capacity.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    plot(copy.deepcopy(build([], META)), tmp_path / "empty.png")  # nothing measured still plots


def test_level_settings_are_a_valid_server_configuration(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """What a level's server runs with, read by the server's own settings: admission by count,
    twice the level's calls allowed, a recognizer built in advance per call, the metrics
    listener on, the console and tracing off."""
    env = server_env({"PATH": "/usr/bin"}, CAPACITY, tmp_path, "http://127.0.0.1:8099", 9555, "")
    env |= level_settings(24)
    for key in [k for k in os.environ if k.startswith("IVR_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    s = Settings()
    assert (s.admission, s.max_calls, s.asr_warm_streams) == ("count", 48, 24)
    assert (s.metrics_port, s.tracing, s.console_users) == (9555, "off", {})


def test_callers_arrive_over_the_spread_and_dump_their_statistics(tmp_path: Path) -> None:
    """One SIPp for the level: N calls, N at once, N per --spread-s (SIPp's -r per -rp ms), its
    statistics file kept; the options stand before the target, which SIPp takes last."""
    b = Bench(tmp_path, "http://127.0.0.1:8099", OtlpReceiver(), [Pause(500)], call_s=60.0)
    argv = callers(b, 16, 8.0, tmp_path).argv()
    assert argv[-1] == "127.0.0.1:5060"
    assert " ".join(argv[argv.index("-m") : argv.index("-m") + 6]) == "-m 16 -l 16 -r 16"
    assert argv[-6:-1] == ["-rp", "8000", "-trace_stat", "-stf", str(tmp_path / "sipp-stats.csv")]
    with pytest.raises(ValueError):
        callers(b, 16, 0.0, tmp_path)


@pytest.mark.skipif(
    not (REPO / "benchmarks" / "capacity.json").exists(), reason="no capacity run committed yet"
)
def test_committed_capacity_md_is_the_report_of_capacity_json() -> None:
    """benchmarks/capacity.md is exactly what markdown makes of benchmarks/capacity.json, whose
    levels are real runs: callers that spoke and were answered."""
    data = json.loads((REPO / "benchmarks" / "capacity.json").read_text())
    assert markdown(data) == (REPO / "benchmarks" / "capacity.md").read_text()
    assert data["levels"] and all(lv["turns"] > 0 for lv in data["levels"])
    assert data["max_calls"] == max_calls(data["levels"])
