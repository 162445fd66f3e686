"""What a probe call's capture says (pure: datagrams in, timings out), and the result as text,
JSON and Prometheus's text format for node_exporter's textfile collector."""

from __future__ import annotations

import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ivr_server.errors import RtpParseError
from ivr_server.media.g711 import ulaw_decode
from ivr_server.media.rtp import RtpPacket
from ivr_server.ops.capture import Datagram

PCMU = 0
VOICED_DBFS = -40.0  # a 20 ms packet louder than this is speech (µ-law silence is -inf)
ONSET_GAP_S = 0.1  # quiet this long before a voiced packet makes it the start of an utterance


@dataclass(frozen=True)
class Timeline:
    """Wall-clock times (s since the epoch) of the call, as the caller's side saw them."""

    invite_at: float | None = None
    answered_at: float | None = None
    caller_audio_end: float | None = None  # the last RTP packet the caller sent (speech or DTMF)
    voiced: tuple[float, ...] = ()  # each loud packet Asterisk sent the caller

    @property
    def heard_s(self) -> float:
        return len(self.voiced) * 0.02

    def first_audio_after(self, start: float) -> float | None:
        """The first utterance onset at or after ``start`` (a voiced packet after a quiet gap)."""
        previous = None
        for t in self.voiced:
            onset = previous is None or t - previous >= ONSET_GAP_S
            if t >= start and onset:
                return t
            previous = t
        return None


def timeline(datagrams: list[Datagram], sip_port: int, media_port: int) -> Timeline:
    invite = answered = audio_end = None
    voiced: list[float] = []
    for d in datagrams:
        if d.src_port == sip_port and d.payload.startswith(b"INVITE "):
            invite = invite if invite is not None else d.time_s
        elif d.dst_port == sip_port and d.payload.startswith(b"SIP/2.0 200") and b"INVITE" in d.payload:
            answered = answered if answered is not None else d.time_s
        elif d.src_port == media_port:
            audio_end = d.time_s
        elif d.dst_port == media_port:
            try:
                packet = RtpPacket.parse(d.payload)
            except RtpParseError:
                continue
            if packet.payload_type == PCMU and packet.payload and dbfs(packet.payload) > VOICED_DBFS:
                voiced.append(d.time_s)
    return Timeline(invite, answered, audio_end, tuple(voiced))


def dbfs(ulaw: bytes) -> float:
    pcm = ulaw_decode(ulaw).astype(np.float64)
    rms = float(np.sqrt(np.mean(pcm * pcm)))
    return 20 * float(np.log10(rms / 32768)) if rms > 0 else float("-inf")


@dataclass
class ProbeResult:
    exten: str
    success: bool = False
    reason: str = ""  # why it failed; empty on success
    answered: bool = False
    duration_s: float | None = None
    time_to_answer_s: float | None = None
    time_to_first_audio_s: float | None = None
    reply_latency_s: float | None = None  # end of the caller's input to the server's next audio
    heard_s: float | None = None  # how much speech reached the caller
    call_id: str | None = None
    flow: str | None = None
    end_reason: str | None = None
    intents: list[str] = field(default_factory=list)
    store_reply_latency_s: float | None = None  # the store's last turn latency, for comparison
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def text(self) -> list[str]:
        def secs(v: float | None) -> str:
            return "-" if v is None else f"{v:.3f} s"

        lines = [
            f"probe {self.exten}: {'OK' if self.success else 'FAILED: ' + self.reason}",
            f"  answered {'yes' if self.answered else 'no'}; time to answer {secs(self.time_to_answer_s)}, "
            f"to first audio {secs(self.time_to_first_audio_s)}, reply latency {secs(self.reply_latency_s)}",
            f"  call {self.call_id or '-'} flow {self.flow or '-'} ended {self.end_reason or '-'}; "
            f"intents {', '.join(self.intents) or '-'}; heard {secs(self.heard_s)}; "
            f"total {secs(self.duration_s)}",
        ]
        return lines + [f"  note: {n}" for n in self.notes]


_METRICS = (
    ("ivr_probe_success", "1 if the last probe call was answered, heard and served as expected", "success"),
    ("ivr_probe_duration_seconds", "How long the last probe took, dialling to hang-up", "duration_s"),
    ("ivr_probe_answer_seconds", "INVITE to 200 OK of the last probe call", "time_to_answer_s"),
    ("ivr_probe_first_audio_seconds", "Answer to the first speech the caller heard", "time_to_first_audio_s"),
    ("ivr_probe_reply_latency_seconds", "End of the caller's input to the server's next speech",
     "reply_latency_s"),
)  # fmt: skip


def prometheus_text(result: ProbeResult, now: float) -> str:
    """The textfile collector's format; a figure the probe could not measure is left out, so an
    alert on it sees no sample instead of a made-up zero."""
    label = '{exten="' + result.exten.replace("\\", "\\\\").replace('"', '\\"') + '"}'
    out: list[str] = []
    for name, help_text, attr in _METRICS:
        value = getattr(result, attr)
        if value is None:
            continue
        out += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge", f"{name}{label} {float(value):g}"]
    name = "ivr_probe_last_run_timestamp_seconds"
    out += [f"# HELP {name} When the last probe ran", f"# TYPE {name} gauge", f"{name}{label} {now:.3f}"]
    return "\n".join(out) + "\n"


def write_atomically(path: Path, text: str) -> None:
    """The collector must never read half a file: write beside it, then rename over it."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
