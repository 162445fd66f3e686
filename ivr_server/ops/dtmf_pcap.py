"""RFC 4733 DTMF captures for SIPp's play_pcap_audio, for any sequence of keys.

SIPp's shipped captures share one SSRC and their sequence numbers rise 1 < 2 < ... < 9 < * < #
(0 highest of all): Asterisk drops any played out of that order as late packets. These captures
keep sequence numbers and timestamps rising across all the keys of a call.
"""

from __future__ import annotations

import secrets
import struct
from pathlib import Path

EVENTS = {**{str(d): d for d in range(10)}, "*": 10, "#": 11, "A": 12, "B": 13, "C": 14, "D": 15}
PAYLOAD_TYPE = 101  # as the caller's SDP offers telephone-event
RATE = 8000
PACKET_MS = 20


class DtmfCaptureWriter:
    """Writes capture files whose RTP continues from one file to the next within a call."""

    def __init__(self, tone_ms: int = 120, gap_ms: int = 300) -> None:
        self.tone_ms = tone_ms
        self.gap_ms = gap_ms
        self.ssrc = secrets.randbits(32)
        self.sequence = secrets.randbits(15)
        self.timestamp = secrets.randbits(30)

    def write(self, path: Path, keys: str) -> int:
        """Write ``keys`` to ``path``; returns how long the capture plays, in ms."""
        frames: list[tuple[float, bytes]] = []
        t = 0.0
        for key in keys:
            event = EVENTS[key]
            steps = max(1, self.tone_ms // PACKET_MS)
            for i in range(steps):
                duration = (i + 1) * PACKET_MS * RATE // 1000
                frames.append((t, self._rtp(event, end=False, duration=duration, marker=i == 0)))
                self.sequence += 1
                t += PACKET_MS / 1000
            duration = steps * PACKET_MS * RATE // 1000
            for _ in range(3):  # the end packet is sent three times (RFC 4733 2.5.1.4)
                frames.append((t, self._rtp(event, end=True, duration=duration, marker=False)))
            self.sequence += 1
            t += self.gap_ms / 1000
            self.timestamp += int(t * RATE)
        path.write_bytes(_pcap(frames))
        return int(t * 1000)

    def _rtp(self, event: int, *, end: bool, duration: int, marker: bool) -> bytes:
        header = struct.pack(
            "!BBHII",
            0x80,
            (0x80 if marker else 0) | PAYLOAD_TYPE,
            self.sequence & 0xFFFF,
            self.timestamp & 0xFFFFFFFF,
            self.ssrc,
        )
        return header + struct.pack("!BBH", event, (0x80 if end else 0) | 10, duration)


def _pcap(frames: list[tuple[float, bytes]]) -> bytes:
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]  # Ethernet link type
    for t, rtp in frames:
        udp = struct.pack("!HHHH", 6000, 6000, 8 + len(rtp), 0) + rtp
        ip = bytearray(
            struct.pack(
                "!BBHHHBBH4s4s",
                0x45,
                0,
                20 + len(udp),
                0,
                0,
                64,
                17,
                0,
                bytes([127, 0, 0, 1]),
                bytes([127, 0, 0, 1]),
            )
        )
        ip[10:12] = struct.pack("!H", _checksum(bytes(ip)))
        frame = b"\x00" * 12 + b"\x08\x00" + bytes(ip) + udp
        sec = int(t)
        out.append(struct.pack("<IIII", sec, int((t - sec) * 1e6), len(frame), len(frame)) + frame)
    return b"".join(out)


def _checksum(header: bytes) -> int:
    total: int = sum(struct.unpack(f"!{len(header) // 2}H", header))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF
