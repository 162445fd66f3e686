"""SIPp as a real SIP caller: scenarios built from steps, run as a subprocess. The probe
(``ivr-server probe``) calls through it; the end-to-end tests too (tests/support/sipp.py)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path

from ivr_server.errors import IvrError
from ivr_server.media.g711 import Pcm, ulaw_encode
from ivr_server.ops.dtmf_pcap import EVENTS, DtmfCaptureWriter


class ProbeError(IvrError):
    """The probe could not place or judge its call (SIPp or tcpdump missing, a bad step)."""

    code = "probe_error"


DTMF_PCAP_DIR = Path("/usr/share/sip-tester")
PCAP_NAMES = {
    **{str(d): f"dtmf_2833_{d}.pcap" for d in range(10)},
    "#": "dtmf_2833_pound.pcap",
    "*": "dtmf_2833_star.pcap",
}
DTMF_KEYS = frozenset(EVENTS)
# SIPp's DTMF captures last 160 ms; keys closer together than this merge in Asterisk.
KEY_GAP_MS = 400


# sox's name for headerless 8 kHz G.711 µ-law, so sox and soxi read these files too.
VOICE_SUFFIX = ".ul"


def write_voice(path: Path, pcm8k: Pcm) -> float:
    """Write the caller's voice (8 kHz PCM) as ``rtp_stream`` plays it: µ-law bytes, no header.
    SIPp 3.6 (Debian's sip-tester) streams a file byte for byte, so a WAV's header would reach the
    recognizer as a click before every sentence. Returns the voice's length in seconds."""
    if path.suffix != VOICE_SUFFIX:
        raise ProbeError(f"{path}: a caller's voice is headerless µ-law, named *{VOICE_SUFFIX}")
    path.write_bytes(ulaw_encode(pcm8k))
    return len(pcm8k) / 8000


@dataclass(frozen=True)
class Speak:
    """Stream ``voice`` (headerless µ-law, as ``write_voice`` writes it) as the caller's voice,
    waiting ``ms`` after."""

    voice: Path
    ms: int

    def __post_init__(self) -> None:
        if self.voice.suffix != VOICE_SUFFIX:
            raise ProbeError(f"{self.voice}: SIPp would stream its header as audio; use write_voice")


@dataclass(frozen=True)
class Keys:
    """Press keys as RFC 4733 events. ``shipped`` plays SIPp's own captures, one per key (which
    only works in their recorded order, e.g. "123#"); otherwise a capture is made for the call."""

    keys: str
    shipped: bool = False


@dataclass(frozen=True)
class Pause:
    ms: int


Step = Speak | Keys | Pause

_HEADERS = """Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: "Test Caller" <sip:{caller}@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>{to_tag}
Call-ID: [call_id]
CSeq: {cseq}
Contact: sip:{caller}@[local_ip]:[local_port]
Max-Forwards: 70"""

_SDP = """v=0
o=caller 53655765 2353687637 IN IP[local_ip_type] [local_ip]
s=-
c=IN IP[media_ip_type] [media_ip]
t=0 0
m=audio [media_port] RTP/AVP 0 101
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=ptime:20"""


def _request(line: str, cseq: str, to_tag: bool, body: str = "") -> str:
    headers = _HEADERS.format(caller="{caller}", cseq=cseq, to_tag="[peer_tag_param]" if to_tag else "")
    extra = "Content-Type: application/sdp\nContent-Length: [len]" if body else "Content-Length: 0"
    text = f"{line}\n{headers}\n{extra}\n\n{body}"
    return text


def scenario(
    steps: list[Step],
    workdir: Path,
    *,
    caller: str = "+15550100",
    server_hangs_up: bool = True,
    bye_timeout_ms: int = 30000,
) -> str:
    """A UAC scenario: INVITE, the steps, then wait for the server's BYE (or send one).
    Captures for ``Keys`` steps are written into ``workdir``."""
    dtmf = DtmfCaptureWriter()
    parts = [
        '<?xml version="1.0" encoding="ISO-8859-1" ?>',
        '<!DOCTYPE scenario SYSTEM "sipp.dtd">',
        '<scenario name="ivr-server test caller">',
        '<send retrans="500"><![CDATA[\n'
        + _request("INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0", "1 INVITE", False, _SDP)
        + "\n]]></send>",
        '<recv response="100" optional="true"/>',
        '<recv response="180" optional="true"/>',
        '<recv response="183" optional="true"/>',
        '<recv response="200" rtd="true"/>',
        "<send><![CDATA[\n"
        + _request("ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0", "1 ACK", True)
        + "\n]]></send>",
    ]
    for step in steps:
        if isinstance(step, Speak):
            parts.append(f'<nop><action><exec rtp_stream="{step.voice},1,0"/></action></nop>')
            parts.append(f'<pause milliseconds="{step.ms}"/>')
        elif isinstance(step, Keys) and step.shipped:
            for key in step.keys:
                pcap = DTMF_PCAP_DIR / PCAP_NAMES[key]
                parts.append(f'<nop><action><exec play_pcap_audio="{pcap}"/></action></nop>')
                parts.append(f'<pause milliseconds="{KEY_GAP_MS}"/>')
        elif isinstance(step, Keys):
            pcap = workdir / f"keys-{secrets.token_hex(4)}.pcap"
            play_ms = dtmf.write(pcap, step.keys)
            parts.append(f'<nop><action><exec play_pcap_audio="{pcap}"/></action></nop>')
            parts.append(f'<pause milliseconds="{play_ms + 100}"/>')
        else:
            parts.append(f'<pause milliseconds="{step.ms}"/>')
    if server_hangs_up:
        parts.append(f'<recv request="BYE" timeout="{bye_timeout_ms}"/>')
        parts.append(
            "<send><![CDATA[\nSIP/2.0 200 OK\n[last_Via:]\n[last_From:]\n[last_To:]\n[last_Call-ID:]\n"
            "[last_CSeq:]\nContact: <sip:[local_ip]:[local_port]>\nContent-Length: 0\n\n]]></send>"
        )
    else:
        parts.append(
            '<send retrans="500"><![CDATA[\n'
            + _request("BYE sip:[service]@[remote_ip]:[remote_port] SIP/2.0", "2 BYE", True)
            + "\n]]></send>"
        )
        parts.append('<recv response="200" crlf="true"/>')
    parts.append("</scenario>")
    return "\n".join(parts).replace("{caller}", caller) + "\n"


def free_port(kind: int = socket.SOCK_DGRAM, even: bool = False, host: str = "127.0.0.1") -> int:
    """A free port on ``host`` (even for RTP, whose RTCP takes the next one)."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, kind) as s:
            s.bind((host, 0))
            port = int(s.getsockname()[1])
        if (not even or port % 2 == 0) and port < 65000:
            return port
    raise ProbeError(f"no free UDP port on {host}")


SIPP_MEDIA_SPAN = 4  # SIPp binds audio RTP, its RTCP, video RTP and its RTCP from -mp upwards


def free_media_ports(host: str = "127.0.0.1", avoid: int | None = None) -> int:
    """The first of ``SIPP_MEDIA_SPAN`` free UDP ports in a row on ``host`` (even), clear of
    ``avoid``: SIPp refuses to start when its video port is taken, even by its own SIP port."""
    for _ in range(100):
        first = free_port(even=True, host=host)
        block = range(first, first + SIPP_MEDIA_SPAN)
        if avoid in block or block[-1] >= 65536:
            continue
        with contextlib.ExitStack() as held:
            try:
                for port in block:
                    held.enter_context(socket.socket(socket.AF_INET, socket.SOCK_DGRAM)).bind((host, port))
            except OSError:
                continue
        return first
    raise ProbeError(f"no {SIPP_MEDIA_SPAN} free UDP ports in a row on {host}")


@dataclass
class SippCall:
    """One SIPp run; ``media_port`` is where the caller receives Asterisk's RTP."""

    scenario_xml: str
    service: str
    workdir: Path
    target: str = "127.0.0.1:5060"  # Asterisk's SIP address
    local_ip: str = "127.0.0.1"  # ours, as Asterisk reaches it (SIP and RTP)
    calls: int = 1
    concurrent: int = 1
    rate_per_s: int = 10
    timeout_s: float = 60.0

    def __post_init__(self) -> None:
        self.sip_port = free_port(host=self.local_ip)
        self.media_port = free_media_ports(self.local_ip, avoid=self.sip_port)
        self.scenario_path = self.workdir / f"caller-{self.sip_port}.xml"
        self.scenario_path.write_text(self.scenario_xml)
        self.error_file = self.workdir / f"sipp-{self.sip_port}-errors.log"
        self.returncode: int | None = None
        self.stderr = ""  # SIPp's own output, once it has exited by itself
        self._proc: asyncio.subprocess.Process | None = None

    def argv(self) -> list[str]:
        sipp = shutil.which("sipp")
        if sipp is None:
            raise ProbeError("sipp is not installed: apt install sip-tester")
        return [
            sipp,
            "-sf",
            str(self.scenario_path),
            "-s",
            self.service,
            "-m",
            str(self.calls),
            "-l",
            str(self.concurrent),
            "-r",
            str(self.rate_per_s),
            "-i",
            self.local_ip,
            "-mi",
            self.local_ip,
            "-p",
            str(self.sip_port),
            "-mp",
            str(self.media_port),
            "-nostdin",
            "-trace_err",
            "-error_file",
            str(self.error_file),
            "-timeout",
            f"{int(self.timeout_s)}s",
            "-timeout_error",
            self.target,
        ]

    async def run(self) -> int:
        proc = self._proc = await asyncio.create_subprocess_exec(
            *self.argv(),
            cwd=self.workdir,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "TERM": "dumb"},
        )
        try:
            _, stderr = await asyncio.wait_for(proc.communicate(), self.timeout_s + 10)
        except (TimeoutError, asyncio.CancelledError):  # a caller given up on hangs up, and is reaped
            if proc.returncode is None:
                proc.kill()
            await proc.wait()
            raise
        self.returncode = proc.returncode
        self.stderr = stderr.decode(errors="replace")
        return proc.returncode or 0

    def kill(self) -> None:
        """End SIPp now (a call the test means to cut off)."""
        if self._proc is not None and self._proc.returncode is None:
            self._proc.kill()

    def errors(self) -> str:
        """SIPp's error file, or what it printed; empty for a SIPp killed before it wrote either."""
        return self.error_file.read_text() if self.error_file.exists() else self.stderr
