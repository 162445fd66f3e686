"""The capacity benchmark's arithmetic, apart from anything it runs: the callers' SIP dialogs and
RTP streams from a capture, each caller turn's reply latency, RTP loss and lateness, quantiles of
Prometheus histograms, /proc readings, a level's summary and verdict, max_calls and memory per
call. Pure functions: tests give them hand-made packets and pages."""

from __future__ import annotations

import bisect
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from benchmarks.common import percentile
from benchmarks.ops.measure import prometheus_value
from benchmarks.speech.audio import LOUD_DBFS
from ivr_server.errors import RtpParseError
from ivr_server.media.audio import frame_dbfs
from ivr_server.media.g711 import ulaw_decode
from ivr_server.media.rtp import RtpPacket
from ivr_server.ops.capture import Datagram

PCMU = 0  # RTP payload type of G.711 mu-law: the only audio in these calls (101 is DTMF)
RATE = 8000
FRAME_SAMPLES = 160  # 20 ms
BURST_GAP_S = 0.5  # SIPp streams a sentence without a break; between turns it pauses for seconds
LATE_MS = 60.0  # a phone's jitter buffer of three packets: a packet later than this is heard as a gap
SILENCE_S = 0.2  # no packet for this long: the line was silent (or stalled), a new talkspurt follows
REPLY_P95_MS = 700.0  # issue 18: the reply p95 a level must keep
LOOP_LAG_P99_MS = 20.0  # issue 18: the event-loop lag p99 a level must stay under


@dataclass(frozen=True, slots=True)
class Packet:
    """One RTP packet as captured at the caller's port (its level in dBFS, -120 when not PCMU)."""

    time_s: float
    ssrc: int
    seq: int
    ts: int
    marker: bool
    pt: int
    dbfs: float

    @property
    def loud(self) -> bool:
        return self.pt == PCMU and self.dbfs > LOUD_DBFS


@dataclass
class Stream:
    """A call's media at the caller: what it sent to one Asterisk RTP port, what came back from it."""

    sent: list[Packet] = field(default_factory=list)
    received: list[Packet] = field(default_factory=list)


def rtp_streams(datagrams: Iterable[Datagram], media_port: int) -> dict[int, Stream]:
    """The RTP of every call of one SIPp (all its calls share ``media_port``), by the Asterisk
    port each call's media goes to and comes from (one per call: Asterisk gives each channel its
    own). Datagrams that are not RTP are skipped."""
    streams: dict[int, Stream] = {}
    for d in datagrams:
        if media_port not in (d.src_port, d.dst_port):
            continue
        try:
            rtp = RtpPacket.parse(d.payload)
        except RtpParseError:
            continue
        dbfs = frame_dbfs(ulaw_decode(rtp.payload)) if rtp.payload_type == PCMU else -120.0
        packet = Packet(d.time_s, rtp.ssrc, rtp.sequence, rtp.timestamp, rtp.marker, rtp.payload_type, dbfs)
        if d.src_port == media_port:
            streams.setdefault(d.dst_port, Stream()).sent.append(packet)
        else:
            streams.setdefault(d.src_port, Stream()).received.append(packet)
    return streams


@dataclass(frozen=True)
class Burst:
    """One sentence the caller streamed: its first packet, and its first and last loud ones."""

    start_s: float
    speech_from_s: float
    speech_to_s: float


def speech_bursts(sent: Sequence[Packet], gap_s: float = BURST_GAP_S) -> list[Burst]:
    """The caller's sentences in what it sent: PCMU packets split where ``gap_s`` passes without
    one (DTMF aside); a burst with nothing loud in it is not speech."""
    bursts: list[Burst] = []
    group: list[Packet] = []
    for p in [*(p for p in sent if p.pt == PCMU), None]:
        if group and (p is None or p.time_s - group[-1].time_s > gap_s):
            loud = [q.time_s for q in group if q.loud]
            if loud:
                bursts.append(Burst(group[0].time_s, loud[0], loud[-1]))
            group = []
        if p is not None:
            group.append(p)
    return bursts


@dataclass(frozen=True)
class Turn:
    """A caller turn: when its speech ended (the last loud packet sent), when the first loud
    packet of the line's answer arrived (None: none before the caller spoke again, or at all),
    and whether the line was loud while the caller spoke (its reply then cannot be timed)."""

    end_s: float
    reply_s: float | None
    overlapped: bool

    @property
    def reply_ms(self) -> float | None:
        return None if self.reply_s is None else (self.reply_s - self.end_s) * 1000


def turns(sent: Sequence[Packet], received: Sequence[Packet]) -> list[Turn]:
    """Each of the caller's sentences with the line's answer to it: the first loud packet
    received after the sentence's last loud one, before the caller's next sentence began."""
    bursts = speech_bursts(sent)
    heard = sorted(p.time_s for p in received if p.loud)
    out = []
    for i, b in enumerate(bursts):
        until = bursts[i + 1].start_s if i + 1 < len(bursts) else math.inf
        during = bisect.bisect_right(heard, b.speech_to_s) - bisect.bisect_left(heard, b.speech_from_s)
        k = bisect.bisect_right(heard, b.speech_to_s)
        reply = heard[k] if k < len(heard) and heard[k] < until else None
        out.append(Turn(b.speech_to_s, reply, during > 0))
    return out


def _unwrap(values: Iterable[int], bits: int) -> list[int]:
    """Sequence numbers or timestamps made monotonic across wraps (each step taken the short way)."""
    span, half = 1 << bits, 1 << (bits - 1)
    out: list[int] = []
    for v in values:
        if not out:
            out.append(v)
            continue
        step = (v - out[-1]) % span
        out.append(out[-1] + (step - span if step >= half else step))
    return out


def _by_ssrc(packets: Iterable[Packet]) -> dict[int, list[Packet]]:
    groups: dict[int, list[Packet]] = {}
    for p in packets:
        groups.setdefault(p.ssrc, []).append(p)
    return groups


def lost(received: Sequence[Packet]) -> int:
    """Packets missing by sequence number (RFC 3550's cumulative loss: expected less received,
    duplicates once), per SSRC (the line may change source within a call)."""
    total = 0
    for group in _by_ssrc(received).values():
        ext = _unwrap((p.seq for p in group), 16)
        total += max(ext) - min(ext) + 1 - len(set(ext))
    return total


def _talkspurts(received: Sequence[Packet], silence_s: float = math.inf) -> list[list[Packet]]:
    """Runs of one SSRC's audio in arrival order, a new one at each marker bit (a talkspurt's
    start, RFC 3551; Asterisk sets it where it restamps after a gap) or after ``silence_s``
    without a packet: within one, RTP timestamps and arrival times advance together."""
    spurts: list[list[Packet]] = []
    for group in _by_ssrc(p for p in received if p.pt == PCMU).values():
        for p in group:
            last = spurts[-1][-1] if spurts else None
            if p.marker or last is None or last.ssrc != p.ssrc or p.time_s - last.time_s > silence_s:
                spurts.append([])
            spurts[-1].append(p)
    return spurts


def late(received: Sequence[Packet], late_ms: float = LATE_MS) -> int:
    """Packets that arrived more than ``late_ms`` after their time: each packet's transit
    (arrival less its RTP timestamp, RFC 3550's jitter) against the quickest of its talkspurt.
    A silence ends a talkspurt even without a marker bit (timestamps need not span it)."""
    count = 0
    for spurt in _talkspurts(received, SILENCE_S):
        ts = _unwrap((p.ts for p in spurt), 32)
        transit = [p.time_s - t / RATE for p, t in zip(spurt, ts, strict=True)]
        quickest = min(transit)
        count += sum((x - quickest) * 1000 > late_ms for x in transit)
    return count


def skipped_frames(received: Sequence[Packet]) -> int:
    """20 ms frames missing inside talkspurts: consecutive packets (by sequence) whose timestamps
    jump by more than one frame. A sender that skips slots (its clock fell behind) leaves such
    a gap without a sequence gap, so loss does not show it; only a marker bit ends a talkspurt
    here, as a long skip is a silence too."""
    count = 0
    for spurt in _talkspurts(received):
        pairs = sorted(
            zip(_unwrap((p.seq for p in spurt), 16), _unwrap((p.ts for p in spurt), 32), strict=True)
        )
        for (s0, t0), (s1, t1) in zip(pairs, pairs[1:], strict=False):
            if s1 - s0 == 1 and t1 - t0 > FRAME_SAMPLES:
                count += (t1 - t0) // FRAME_SAMPLES - 1
    return count


@dataclass
class Dialog:
    """One call's SIP at the caller: INVITE sent, 200 OK received (with the Asterisk RTP port its
    SDP gives), the first BYE and who sent it ("line" or "caller")."""

    call_id: str
    invited_s: float
    answered_s: float | None = None
    rtp_port: int | None = None
    ended_s: float | None = None
    ended_by: str | None = None


_COMPACT = {"i": "call-id"}  # RFC 3261 compact header names we read


def _sip(payload: bytes) -> tuple[str, dict[str, str], list[str]]:
    """A SIP message's first line, headers (lower-case names, first of each) and body lines."""
    lines = payload.decode("latin-1").splitlines()
    blank = lines.index("") if "" in lines else len(lines)
    headers: dict[str, str] = {}
    for line in lines[1:blank]:
        name, sep, value = line.partition(":")
        if sep:
            key = name.strip().lower()
            headers.setdefault(_COMPACT.get(key, key), value.strip())
    return (lines[0] if lines else ""), headers, lines[blank + 1 :]


def sip_dialogs(datagrams: Iterable[Datagram], sip_port: int) -> dict[str, Dialog]:
    """The dialogs of one SIPp (its SIP on ``sip_port``), by Call-ID, in the order placed; first
    occurrences count (SIP over UDP retransmits)."""
    dialogs: dict[str, Dialog] = {}
    for d in datagrams:
        if sip_port not in (d.src_port, d.dst_port):
            continue
        first, headers, body = _sip(d.payload)
        call_id, incoming = headers.get("call-id", ""), d.dst_port == sip_port
        cseq_method = headers.get("cseq", "").split()[-1:]
        if first.startswith("INVITE ") and not incoming and call_id not in dialogs:
            dialogs[call_id] = Dialog(call_id, d.time_s)
        dialog = dialogs.get(call_id)
        if dialog is None:
            continue
        answer = first.startswith("SIP/2.0 200") and cseq_method == ["INVITE"]
        if answer and incoming and dialog.answered_s is None:
            dialog.answered_s = d.time_s
            media = [line.split() for line in body if line.startswith("m=audio ")]
            dialog.rtp_port = int(media[0][1]) if media else None
        elif first.startswith("BYE ") and dialog.ended_s is None:
            dialog.ended_s, dialog.ended_by = d.time_s, "line" if incoming else "caller"
    return dialogs


def full_window(dialogs: Iterable[Dialog]) -> tuple[float, float] | None:
    """While every call was up: from the last answer to the first hang-up (none: to the end).
    None when a call was never answered or one ended before the last was answered."""
    ds = list(dialogs)
    answered = [d.answered_s for d in ds if d.answered_s is not None]
    if not ds or len(answered) < len(ds):
        return None
    start, end = max(answered), min((d.ended_s for d in ds if d.ended_s is not None), default=math.inf)
    return (start, end) if end > start else None


def call_rows(datagrams: Sequence[Datagram], sip_port: int, media_port: int) -> dict[str, Any]:
    """One SIPp's calls as its callers lived them: per call, when it was answered and ended and
    by whom (s from the first INVITE), the greeting's delay, each turn's reply latency, and its
    received RTP's loss and lateness; and the window in which every call was up."""
    dialogs = list(sip_dialogs(datagrams, sip_port).values())
    streams = rtp_streams(datagrams, media_port)
    origin = min((d.invited_s for d in dialogs), default=0.0)

    def rel(t: float | None) -> float | None:
        return None if t is None else round(t - origin, 3)

    rows = []
    for d in dialogs:
        got = streams.get(d.rtp_port or -1, Stream())
        greeting = next((p.time_s for p in got.received if p.loud), None)  # the line's first words
        rows.append({
            "answered_s": rel(d.answered_s),
            "ended_s": rel(d.ended_s),
            "ended_by": d.ended_by,
            "greeting_ms": None if greeting is None or d.answered_s is None
            else round((greeting - d.answered_s) * 1000, 1),
            "turns": [{"at_s": rel(t.end_s), "reply_ms": _ms(t.reply_ms), "overlapped": t.overlapped}
                      for t in turns(got.sent, got.received)],
            "rtp": {"received": len(got.received), "lost": lost(got.received), "late": late(got.received),
                    "skipped_frames": skipped_frames(got.received)},
            "heard_ms": 20 * sum(p.loud for p in got.received),  # loud audio received, 20 ms a packet
        })  # fmt: skip
    window = full_window(dialogs)
    return {"call_rows": rows, "origin_s": origin,
            "full_window_s": None if window is None else [rel(window[0]), rel(window[1])]}  # fmt: skip


def sipp_counts(csv_text: str) -> dict[str, int]:
    """Successful and failed calls from SIPp's statistics file (-trace_stat: ';'-separated, a
    header and one line per dump, the last written as it exits). ValueError without a dump."""
    rows = [line.split(";") for line in csv_text.splitlines() if line.strip()]
    if len(rows) < 2:
        raise ValueError("SIPp's statistics file has no dump")
    last = dict(zip(rows[0], rows[-1], strict=False))
    return {"successful": int(last["SuccessfulCall(C)"]), "failed": int(last["FailedCall(C)"])}


def machine_ticks(proc_stat: str) -> tuple[int, int]:
    """(busy, total) clock ticks of all CPUs since boot from /proc/stat's "cpu" line: busy is all
    but idle and iowait (guest time is inside user already, so only the first eight fields)."""
    fields = proc_stat.splitlines()[0].split()
    if fields[0] != "cpu":
        raise ValueError(f"not /proc/stat: {fields[:2]}")
    values = [int(x) for x in fields[1:9]]
    return sum(values) - values[3] - values[4], sum(values)


def pss_kib(smaps_rollup: str) -> int | None:
    """A process's proportional set size (kB) from /proc/<pid>/smaps_rollup: pages shared between
    the server and its workers counted once over them, not once in each."""
    for line in smaps_rollup.splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return None


_LE = re.compile(r'(?:^|,)le="([^"]*)"')


def histogram(text: str, name: str) -> dict[float, float]:
    """Cumulative counts by upper bound of Prometheus histogram ``name`` in a text page, summed
    over its other labels (+Inf as math.inf)."""
    prefix, out = name + "_bucket{", dict[float, float]()
    for line in text.splitlines():
        if not line.startswith(prefix):
            continue
        labels, _, value = line[len(prefix) :].rpartition("} ")
        le = _LE.search(labels)
        if le:
            bound = float(le.group(1))  # "+Inf" reads as inf
            out[bound] = out.get(bound, 0.0) + float(value.split()[0])
    return out


def histogram_delta(before: Mapping[float, float], after: Mapping[float, float]) -> dict[str, float]:
    """What a histogram counted between two pages, by bound (as JSON keys: "0.02", "+Inf")."""
    return {
        ("+Inf" if math.isinf(le) else repr(le)): n - before.get(le, 0.0) for le, n in sorted(after.items())
    }


def quantile(buckets: Mapping[str, float] | Mapping[float, float], q: float) -> float | None:
    """The ``q`` quantile (0-1) of cumulative bucket counts, as Prometheus's histogram_quantile
    computes it: linear within the bucket it falls in, the highest finite bound when it falls in
    +Inf. None for an empty histogram."""
    ordered = sorted((float(le), n) for le, n in buckets.items())
    if not ordered or ordered[-1][1] <= 0:
        return None
    rank = q * ordered[-1][1]
    low, below = 0.0, 0.0
    for le, n in ordered:
        if n >= rank:
            if math.isinf(le):
                return low
            return low + (le - low) * ((rank - below) / (n - below) if n > below else 1.0)
        low, below = le, n
    return low


def latency_summary(before: str, after: str, name: str) -> dict[str, Any]:
    """A latency histogram (seconds) between two pages: how many, their mean and p95 in ms."""
    delta = histogram_delta(histogram(before, name), histogram(after, name))
    count = (prometheus_value(after, name + "_count") or 0) - (prometheus_value(before, name + "_count") or 0)
    total = (prometheus_value(after, name + "_sum") or 0) - (prometheus_value(before, name + "_sum") or 0)
    p95 = quantile(delta, 0.95)
    return {"n": int(count), "mean_ms": round(total / count * 1000, 1) if count else None,
            "p95_ms": None if p95 is None else round(p95 * 1000, 1)}  # fmt: skip


def slope(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """The least-squares slope of ys over xs; None without two distinct xs."""
    if len(set(xs)) < 2:
        return None
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum((x - mx) ** 2 for x in xs)


def _pct(part: float | None, whole: float) -> float | None:
    return round(part / whole * 100, 1) if part is not None and whole > 0 else None


def cpu_in_window(
    samples: Sequence[Mapping[str, float]], origin: float, window: Sequence[float] | None
) -> dict[str, float] | None:
    """CPU seconds spent while every call was up: between the first and last samples (cumulative
    readings, epoch time ``t``) inside ``window`` (s from ``origin``), with its length as
    ``window_s``. None with fewer than two samples in it."""
    if not window:
        return None
    inside = [x for x in samples if origin + window[0] <= x["t"] <= origin + window[1]]
    if len(inside) < 2:
        return None
    first, last = inside[0], inside[-1]
    return {
        "window_s": last["t"] - first["t"],
        **{k: last[k] - first[k] for k in first if k != "t" and k in last},
    }


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def summarize(raw: Mapping[str, Any]) -> dict[str, Any]:
    """One level's figures from what was measured (``levels.run_level``'s row): reply latency
    over the turns whose speech ended while every call was up (not those the line talked over),
    RTP lost both ways, the loop lag's p99, CPU as shares of the machine, memory."""
    rows, calls = raw["call_rows"], raw["calls"]
    every = [t for r in rows for t in r["turns"]]
    window = raw["full_window_s"]
    timed = [t["reply_ms"] for t in every if window and window[0] <= t["at_s"] <= window[1]
             and t["reply_ms"] is not None and not t["overlapped"]]  # fmt: skip
    metrics, cpu = raw.get("metrics"), raw.get("cpu")
    lag = quantile(metrics["loop_lag_buckets"], 0.99) if metrics else None
    to_caller = sum(r["rtp"]["lost"] for r in rows)
    to_server = int(metrics["rtp_lost_in"]) if metrics else None
    sipp = raw.get("sipp")
    s: dict[str, Any] = {
        "calls": calls,
        "answered": sum(r["answered_s"] is not None for r in rows),
        "completed": sipp["successful"] if sipp else (calls if raw["sipp_exit"] == 0 else 0),
        "reply_p50_ms": _ms(percentile(timed, 50)),
        "reply_p95_ms": _ms(percentile(timed, 95)),
        "rtp_lost": None if to_server is None else to_caller + to_server,
        "loop_lag_p99_ms": None if lag is None else round(lag * 1000, 1),
        "declined": int(metrics["declined"]) if metrics else None,
        "turns": len(every),
        "turns_timed": len(timed),
        "turns_unanswered": sum(t["reply_ms"] is None for t in every),
        "turns_overlapped": sum(bool(t["overlapped"]) for t in every),
        "reply_max_ms": max(timed, default=None),
        "greeting_p95_ms": _ms(
            percentile([r["greeting_ms"] for r in rows if r["greeting_ms"] is not None], 95)
        ),
        "rtp_lost_to_caller": to_caller,
        "capture_dropped": raw.get("capture_dropped"),  # tcpdump's own drops: gaps that are not loss
        "rtp_lost_to_server": to_server,
        "rtp_received": sum(r["rtp"]["received"] for r in rows),
        "rtp_late": sum(r["rtp"]["late"] for r in rows),
        "rtp_skipped_frames": sum(r["rtp"]["skipped_frames"] for r in rows),
        "server_error": raw.get("server_error"),
        "ready_s": raw.get("ready_s"),
    }
    full = cpu_in_window(raw.get("cpu_samples") or [], raw.get("origin_s") or 0.0, window)
    if cpu:  # while every call was up where sampled; else over the whole level
        cpu, over = (
            (full, "while every call was up")
            if full
            else ({**cpu, "window_s": raw["window_s"]}, "over the level")
        )
        total = cpu["total_s"]
        s.update({
            "cpu_over": over,
            "cpu_window_s": round(cpu["window_s"], 1),
            "machine_cpu_pct": _pct(cpu["busy_s"], total),
            "server_cpu_pct": _pct(cpu["server_s"], total),
            "asr_workers_cpu_pct": _pct(cpu["server_s"] - cpu["main_s"], total),
            "other_threads_cpu_pct": _pct(cpu["main_s"] - cpu["loop_s"], total),
            "loop_thread_core_pct": _pct(cpu["loop_s"], cpu["window_s"]),
            "asterisk_cpu_pct": _pct(cpu.get("asterisk_s"), total),
            "load_cpu_pct": _pct(cpu["bench_s"] - cpu["server_s"], total),
        })  # fmt: skip
    s.update(raw.get("memory") or {})
    s["failed_because"] = failures(s)
    return s


def failures(s: Mapping[str, Any]) -> list[str]:
    """Why a level does not count toward max_calls (none: it does): every call answered, served
    and completed, every caller turn answered, reply p95 <= 700 ms, no RTP lost, loop lag p99
    < 20 ms. A figure that could not be measured fails too."""
    calls, why = s["calls"], []
    if s.get("server_error"):
        why.append(f"the server failed: {s['server_error']}")
    if s["answered"] < calls:
        why.append(f"{calls - s['answered']} of {calls} calls not answered")
    if s.get("declined"):
        why.append(f"{s['declined']} calls declined by the server")
    if s["completed"] < calls:
        why.append(f"{calls - s['completed']} of {calls} calls not completed")
    if s["turns_unanswered"]:
        why.append(f"{s['turns_unanswered']} caller turns without a reply")
    p95 = s["reply_p95_ms"]
    if p95 is None:
        why.append("no reply timed while every call was up")
    elif p95 > REPLY_P95_MS:
        why.append(f"reply p95 {p95:.0f} ms > {REPLY_P95_MS:.0f} ms")
    if s["rtp_lost"] is None:
        why.append("RTP loss not measured")
    elif s["rtp_lost"] > 0:
        why.append(f"{s['rtp_lost']} RTP packets lost")
    lag = s["loop_lag_p99_ms"]
    if lag is None:
        why.append("loop lag not measured")
    elif lag >= LOOP_LAG_P99_MS:
        why.append(f"loop lag p99 {lag:.1f} ms >= {LOOP_LAG_P99_MS:.0f} ms")
    return why


def max_calls(levels: Iterable[Mapping[str, Any]]) -> int:
    """The highest level that passed (0: none did)."""
    return max((lv["calls"] for lv in levels if not lv["failed_because"]), default=0)


def mem_per_call_mb(levels: Iterable[Mapping[str, Any]]) -> float | None:
    """The slope of the server's peak memory over calls, fitted over the levels whose calls were
    all answered (a level with calls missing would flatten it)."""
    full = [lv for lv in levels if lv["answered"] == lv["calls"] and lv.get("mem_peak_mb") is not None]
    fit = slope([lv["calls"] for lv in full], [lv["mem_peak_mb"] for lv in full])
    return None if fit is None else round(fit, 1)
