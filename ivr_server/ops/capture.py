"""What reached a UDP port, captured by tcpdump (root or CAP_NET_RAW) and read from the pcap
file: the probe's ears, and the end-to-end tests'."""

from __future__ import annotations

import asyncio
import re
import shutil
import struct
from dataclasses import dataclass
from pathlib import Path

from ivr_server.ops.sipp import ProbeError

BUFFER_KIB = 32768  # tcpdump -B: the capture's kernel buffer


@dataclass(frozen=True)
class Datagram:
    time_s: float
    src_port: int
    dst_port: int
    payload: bytes


class PacketCapture:
    """``async with PacketCapture(path, "udp dst port 6000"): ...`` then ``datagrams()``;
    ``interface`` "lo" for loopback, "any" for a remote peer."""

    def __init__(self, path: Path, bpf_filter: str, interface: str = "lo") -> None:
        self.path = path
        self.filter = bpf_filter
        self.interface = interface
        self.dropped: int | None = None  # by the capture's kernel buffer, once it has stopped
        self._proc: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> PacketCapture:
        tcpdump = shutil.which("tcpdump")
        if tcpdump is None:
            raise ProbeError("tcpdump is not installed: apt install tcpdump")
        self._proc = await asyncio.create_subprocess_exec(
            tcpdump,
            "-i",
            self.interface,
            "-U",
            # Without it libpcap hands packets over in blocks (up to a second late): the last
            # ones were still in the kernel's ring when tcpdump was stopped, and lost.
            "--immediate-mode",
            # A kernel buffer for bursts (tens of calls' RTP): packets it cannot hold are dropped
            # by the capture, not by the line, and would read as loss.
            "-B",
            str(BUFFER_KIB),
            "-n",
            "-s",
            "0",
            "-w",
            str(self.path),
            self.filter,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        assert self._proc.stderr is not None
        line = await asyncio.wait_for(self._proc.stderr.readline(), 10)
        if b"listening on" not in line:
            await self._proc.wait()
            raise ProbeError(f"tcpdump did not start: {line.decode(errors='replace').strip()}")
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._proc is not None and self._proc.stderr is not None
        await asyncio.sleep(0.3)  # let the last packets land
        self._proc.send_signal(2)
        tail = await asyncio.wait_for(self._proc.stderr.read(), 10)
        await asyncio.wait_for(self._proc.wait(), 10)
        self.dropped = capture_drops(tail.decode(errors="replace"))

    def datagrams(self) -> list[Datagram]:
        return read_pcap(self.path)


def capture_drops(stderr: str) -> int | None:
    """Packets tcpdump's kernel buffer dropped ("N packets dropped by kernel"); None if unsaid."""
    match = re.search(r"(\d+) packets? dropped by kernel", stderr)
    return int(match.group(1)) if match else None


def read_pcap(path: Path) -> list[Datagram]:
    """UDP datagrams over IPv4 from a classic pcap file (Ethernet or Linux cooked link type)."""
    data = path.read_bytes()
    magic = struct.unpack("<I", data[:4])[0]
    endian = "<" if magic in (0xA1B2C3D4, 0xA1B23C4D) else ">"
    nano = magic in (0xA1B23C4D, 0x4D3CB2A1)
    link = struct.unpack(endian + "I", data[20:24])[0]
    link_header = {1: 14, 113: 16, 276: 20}[link]
    out = []
    offset = 24
    while offset + 16 <= len(data):
        sec, frac, incl, _ = struct.unpack(endian + "IIII", data[offset : offset + 16])
        frame = data[offset + 16 : offset + 16 + incl]
        offset += 16 + incl
        ip = frame[link_header:]
        if len(ip) < 20 or ip[0] >> 4 != 4 or ip[9] != 17:
            continue
        ihl = (ip[0] & 0x0F) * 4
        src, dst, length = struct.unpack("!HHH", ip[ihl : ihl + 6])
        out.append(Datagram(sec + frac / (1e9 if nano else 1e6), src, dst, ip[ihl + 8 : ihl + length]))
    return out
