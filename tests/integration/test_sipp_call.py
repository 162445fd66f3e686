"""The SIPp caller the tests, probe and benches share, when it is cut off."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import cast

import numpy as np
import pytest

from ivr_server.media.g711 import ulaw_encode
from ivr_server.media.rtp import RtpPacket
from ivr_server.ops.sipp import (
    SIPP_MEDIA_SPAN,
    Pause,
    ProbeError,
    SippCall,
    Speak,
    free_media_ports,
    free_port,
    scenario,
    write_voice,
)


class Callee(asyncio.DatagramProtocol):
    """Just enough of a SIP callee for one SIPp call: the INVITE answered with an SDP that points
    SIPp's audio at ``rtp_port``, the BYE answered; the ACK needs nothing."""

    def __init__(self, rtp_port: int) -> None:
        self.rtp_port = rtp_port
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        lines = data.decode().splitlines()
        method = lines[0].split(" ", 1)[0]
        if method not in ("INVITE", "BYE") or self.transport is None:
            return
        keep = ("via:", "from:", "to:", "call-id:", "cseq:")
        headers = [line for line in lines[1:] if line.lower().startswith(keep)]
        headers = [
            h + ";tag=callee" if h.lower().startswith("to:") and "tag=" not in h else h for h in headers
        ]
        body = ""
        if method == "INVITE":
            body = (
                "v=0\r\no=callee 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
                f"m=audio {self.rtp_port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
            )
            headers += ["Contact: <sip:callee@127.0.0.1>", "Content-Type: application/sdp"]
        reply = "\r\n".join(["SIP/2.0 200 OK", *headers, f"Content-Length: {len(body)}", "", body])
        self.transport.sendto(reply.encode(), addr)


class Listener(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.packets: list[RtpPacket] = []

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self.packets.append(RtpPacket.parse(data))


async def test_a_caller_cut_off_before_it_wrote_anything_has_empty_errors(tmp_path: Path) -> None:
    """SIPp cancelled while it still waits for an answer (nobody listens on the target): it is
    killed and reaped, and asking for its errors gives text, not an AttributeError."""
    call = SippCall(scenario([Pause(100)], tmp_path), service="400", workdir=tmp_path, target="127.0.0.1:9")
    running = asyncio.create_task(call.run())
    await asyncio.sleep(0.5)
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    assert isinstance(call.errors(), str) and call.returncode is None


def test_the_media_ports_are_a_free_block_clear_of_the_sip_port(tmp_path: Path) -> None:
    """SIPp binds four UDP ports from -mp (audio and video, each with RTCP): a block with one
    of them taken, or overlapping the call's own SIP port, is never handed out."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        busy = taken.getsockname()[1]
        for _ in range(50):
            first = free_media_ports(avoid=busy)
            block = range(first, first + SIPP_MEDIA_SPAN)
            assert first % 2 == 0 and busy not in block
            for port in block:
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                    probe.bind(("127.0.0.1", port))
    call = SippCall(scenario([Pause(100)], tmp_path), service="400", workdir=tmp_path)
    assert call.sip_port not in range(call.media_port, call.media_port + SIPP_MEDIA_SPAN)


async def test_sipp_streams_a_callers_voice_as_written_from_its_first_byte(tmp_path: Path) -> None:
    """SIPp 3.6 streams an rtp_stream file byte for byte: a WAV's header would reach the
    recognizer as a click. The voice ``write_voice`` makes is the µ-law audio alone, so the RTP
    SIPp sends carries exactly the speech, from the first packet on."""
    rate = 8000
    t = np.arange(rate // 2) / rate
    pcm = (8000 * np.sin(2 * np.pi * 440 * t) * np.linspace(0.2, 1.0, len(t))).astype(np.int16)
    voice = tmp_path / "voice.ul"
    assert write_voice(voice, pcm) == pytest.approx(0.5)
    assert voice.read_bytes() == ulaw_encode(pcm)

    loop = asyncio.get_running_loop()
    rtp_port = free_port(even=True)
    sip_port = free_port()
    listener = Listener()
    rtp, _ = await loop.create_datagram_endpoint(lambda: listener, local_addr=("127.0.0.1", rtp_port))
    sip, _ = await loop.create_datagram_endpoint(lambda: Callee(rtp_port), local_addr=("127.0.0.1", sip_port))
    try:
        steps = [Pause(100), Speak(voice, 800)]
        call = SippCall(
            scenario(steps, tmp_path, server_hangs_up=False),
            service="callee",
            workdir=tmp_path,
            target=f"127.0.0.1:{sip_port}",
            timeout_s=20,
        )
        assert await call.run() == 0, call.errors()
    finally:
        rtp.close()
        sip.close()
    packets = sorted(listener.packets, key=lambda p: p.sequence)
    assert packets and {p.payload_type for p in packets} == {0}
    sent = b"".join(p.payload for p in packets)
    assert sent[: len(voice.read_bytes())] == voice.read_bytes()


def test_a_voice_named_as_a_wav_file_is_refused(tmp_path: Path) -> None:
    """A .wav name would suggest a header SIPp would then play as sound: refused, saying why."""
    with pytest.raises(ProbeError, match=r"\.ul"):
        write_voice(tmp_path / "voice.wav", np.zeros(80, dtype=np.int16))
    with pytest.raises(ProbeError, match="header"):
        Speak(tmp_path / "voice.wav", 100)
