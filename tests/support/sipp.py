"""SIPp as a real SIP caller: the caller is ivr_server/ops/sipp.py's (the probe's); the agent
desk a warm transfer rings is here."""

from __future__ import annotations

import asyncio
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from ivr_server.ops.sipp import (
    _SDP,
    DTMF_PCAP_DIR,
    KEY_GAP_MS,
    PCAP_NAMES,
    Keys,
    Pause,
    SippCall,
    Speak,
    Step,
    free_media_ports,
    free_port,
    scenario,
)

__all__ = ["KEY_GAP_MS", "Keys", "Pause", "SippAgent", "SippCall", "Speak", "Step", "agent_scenario",
           "free_port", "scenario"]  # fmt: skip


AGENT_PORT = 5070  # the sandbox's [agent] endpoint (asterisk_conf/pjsip.conf) rings this port

_REPLY = """SIP/2.0 {status}
[last_Via:]
[last_From:]
[last_To:]{tag}
[last_Call-ID:]
{cseq}
Contact: <sip:agent@[local_ip]:[local_port]>
{extra}
"""


def _reply(status: str, *, body: str = "", cseq: str = "[last_CSeq:]", tag: bool = True) -> str:
    extra = (
        "Content-Type: application/sdp\nContent-Length: [len]\n\n" + body if body else "Content-Length: 0\n"
    )
    text = _REPLY.format(status=status, tag=";tag=[pid]SIPpAgent[call_number]" if tag else "",
                         cseq=cseq, extra=extra)  # fmt: skip
    return f"<send><![CDATA[\n{text}\n]]></send>"


def agent_scenario(mode: str, workdir: Path, *, key_after_ms: int = 2500, voice: Path | None = None) -> str:
    """An agent's phone (SIPp as UAS) that ``accept``s (answers, then key 1), ``decline``s
    (answers, then key 2), is ``busy`` (486), or ``ring``s until the call is cancelled. Once
    accepted it streams ``voice`` (the agent talking) and waits for the BYE."""
    parts = [
        '<?xml version="1.0" encoding="ISO-8859-1" ?>',
        '<!DOCTYPE scenario SYSTEM "sipp.dtd">',
        '<scenario name="ivr-server test agent">',
    ]
    if mode == "ring":  # the 487 answers the INVITE, after the CANCEL: its CSeq is kept for it
        parts.append(
            '<recv request="INVITE" crlf="true"><action>'
            '<ereg regexp="([0-9]+) INVITE" search_in="hdr" header="CSeq:" assign_to="cseqall,cseqnum"/>'
            "</action></recv>"
        )
    else:
        parts.append('<recv request="INVITE" crlf="true"/>')
    if mode == "busy":
        parts += [_reply("486 Busy Here"), '<recv request="ACK"/>']
    elif mode == "ring":
        parts += [
            _reply("180 Ringing"),
            '<recv request="CANCEL" timeout="120000"/>',
            _reply("200 OK").replace("Content-Length: 0", "X-Cancelled: [$cseqall]\nContent-Length: 0"),
            _reply("487 Request Terminated", cseq="CSeq: [$cseqnum] INVITE"),
            '<recv request="ACK"/>',
        ]
    else:
        key = "1" if mode == "accept" else "2"
        dtmf = DTMF_PCAP_DIR / PCAP_NAMES[key]
        parts += [
            _reply("180 Ringing"),
            '<pause milliseconds="300"/>',
            _reply("200 OK", body=_SDP),
            '<recv request="ACK" crlf="true"/>',
            f'<pause milliseconds="{key_after_ms}"/>',
            f'<nop><action><exec play_pcap_audio="{dtmf}"/></action></nop>',
        ]
        if mode == "accept" and voice is not None:
            parts.append(
                f'<pause milliseconds="400"/><nop><action><exec rtp_stream="{voice},-1,0"/></action></nop>'
            )
        parts += ['<recv request="BYE" timeout="120000"/>', _reply("200 OK")]
    parts.append("</scenario>")
    return "\n".join(parts) + "\n"


@dataclass
class SippAgent:
    """SIPp answering as the agent desk on ``AGENT_PORT``; ``media_port`` receives what the
    agent hears (the whisper, then the caller)."""

    scenario_xml: str
    workdir: Path
    timeout_s: float = 120.0

    def __post_init__(self) -> None:
        self.media_port = free_media_ports(avoid=AGENT_PORT)
        self.scenario_path = self.workdir / "agent.xml"
        self.scenario_path.write_text(self.scenario_xml)
        self.error_file = self.workdir / "sipp-agent-errors.log"
        self._proc: asyncio.subprocess.Process | None = None
        self.stderr = ""

    async def start(self) -> None:
        sipp = shutil.which("sipp")
        assert sipp, "sipp is not installed (Debian package sip-tester)"
        argv = [sipp, "-sf", str(self.scenario_path), "-m", "1", "-i", "127.0.0.1", "-p", str(AGENT_PORT),
                "-mi", "127.0.0.1", "-mp", str(self.media_port), "-nostdin", "-trace_err",
                "-error_file", str(self.error_file), "-timeout", f"{int(self.timeout_s)}s"]  # fmt: skip
        self._proc = await asyncio.create_subprocess_exec(
            *argv, cwd=self.workdir, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "TERM": "dumb"},
        )  # fmt: skip
        await asyncio.sleep(0.3)  # bound to its port before the call rings it

    async def finish(self, timeout_s: float = 30.0) -> int:
        assert self._proc is not None
        try:
            _, stderr = await asyncio.wait_for(self._proc.communicate(), timeout_s)
        except TimeoutError:
            self._proc.kill()
            _, stderr = await self._proc.communicate()
        self.stderr = stderr.decode(errors="replace")
        return self._proc.returncode or 0

    def errors(self) -> str:
        return (self.error_file.read_text() if self.error_file.exists() else "") + self.stderr
