"""RTP packets (RFC 3550): the only place raw RTP bytes are read or written."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from ivr_server.errors import RtpParseError

RTP_VERSION = 2
HEADER = struct.Struct("!BBHII")
MAX_DATAGRAM = 1500  # larger datagrams are not audio frames we accept


@dataclass(frozen=True, slots=True)
class RtpPacket:
    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes
    marker: bool = False
    csrcs: tuple[int, ...] = ()

    @classmethod
    def parse(cls, data: bytes) -> RtpPacket:
        """Parse one datagram; RtpParseError says what is wrong with it."""
        size = len(data)
        if size < HEADER.size:
            raise RtpParseError(f"{size}-byte datagram is shorter than the 12-byte RTP header")
        if size > MAX_DATAGRAM:
            raise RtpParseError(f"{size}-byte datagram exceeds {MAX_DATAGRAM} bytes")
        b0, b1, sequence, timestamp, ssrc = HEADER.unpack_from(data)
        version = b0 >> 6
        if version != RTP_VERSION:
            raise RtpParseError(f"RTP version {version}, expected {RTP_VERSION}")
        offset = HEADER.size + 4 * (b0 & 0x0F)
        if size < offset:
            raise RtpParseError(f"header announces {b0 & 0x0F} CSRCs but the datagram ends first")
        csrcs = struct.unpack_from(f"!{b0 & 0x0F}I", data, HEADER.size) if b0 & 0x0F else ()
        if b0 & 0x10:  # header extension: 4-byte head, then length in 32-bit words
            if size < offset + 4:
                raise RtpParseError("header extension flag set but no extension header")
            (words,) = struct.unpack_from("!H", data, offset + 2)
            offset += 4 + 4 * words
            if size < offset:
                raise RtpParseError(f"header extension of {words} words runs past the datagram")
        end = size
        if b0 & 0x20:
            padding = data[-1]
            if padding == 0 or padding > end - offset:
                raise RtpParseError(f"padding length {padding} does not fit the datagram")
            end -= padding
        return cls(
            payload_type=b1 & 0x7F,
            sequence=sequence,
            timestamp=timestamp,
            ssrc=ssrc,
            payload=bytes(data[offset:end]),
            marker=bool(b1 & 0x80),
            csrcs=tuple(csrcs),
        )

    def to_bytes(self) -> bytes:
        if not 0 <= self.payload_type <= 127:
            raise ValueError(f"payload type {self.payload_type} is outside 0..127")
        if len(self.csrcs) > 15:
            raise ValueError("at most 15 CSRCs fit an RTP header")
        head = HEADER.pack(
            (RTP_VERSION << 6) | len(self.csrcs),
            (0x80 if self.marker else 0) | self.payload_type,
            self.sequence & 0xFFFF,
            self.timestamp & 0xFFFFFFFF,
            self.ssrc & 0xFFFFFFFF,
        )
        return head + struct.pack(f"!{len(self.csrcs)}I", *self.csrcs) + self.payload
