"""Send a UDP datagram with a forged source address over a raw socket (root, loopback only).

Lets a test deliver a packet "from" Asterisk's RTP port, which Asterisk itself holds.
"""

from __future__ import annotations

import socket
import struct


def send_udp_from(src: tuple[str, int], dst: tuple[str, int], payload: bytes) -> None:
    assert dst[0].startswith("127."), "spoofed packets only ever go to loopback"
    udp = struct.pack("!HHHH", src[1], dst[1], 8 + len(payload), 0) + payload  # checksum 0: none
    ip = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        20 + len(udp),
        0,
        0,
        64,
        socket.IPPROTO_UDP,
        0,
        socket.inet_aton(src[0]),
        socket.inet_aton(dst[0]),
    )
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW) as raw:
        raw.sendto(ip + udp, (dst[0], 0))  # the kernel fills in the IP checksum
