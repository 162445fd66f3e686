"""RTP packet parsing and building."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ivr_server.errors import RtpParseError
from ivr_server.media.rtp import RtpPacket

# A telephone-event packet as SIPp sent it to Asterisk (captured on loopback).
CAPTURED = bytes.fromhex("80e51f30000033e00e05384e010a0000")


def test_parses_a_captured_packet() -> None:
    """Fields of a real packet come out as the wire has them."""
    p = RtpPacket.parse(CAPTURED)
    assert (p.payload_type, p.marker, p.sequence, p.timestamp, p.ssrc) == (101, True, 7984, 13280, 0x0E05384E)
    assert p.payload == bytes.fromhex("010a0000")


packets = st.builds(
    RtpPacket,
    payload_type=st.integers(0, 127),
    sequence=st.integers(0, 0xFFFF),
    timestamp=st.integers(0, 0xFFFFFFFF),
    ssrc=st.integers(0, 0xFFFFFFFF),
    payload=st.binary(max_size=400),
    marker=st.booleans(),
    csrcs=st.lists(st.integers(0, 0xFFFFFFFF), max_size=15).map(tuple),
)


@given(packets)
def test_round_trip(packet: RtpPacket) -> None:
    """Whatever we build parses back to the same packet."""
    assert RtpPacket.parse(packet.to_bytes()) == packet


@given(st.binary(max_size=1600))
def test_arbitrary_bytes_parse_or_raise_rtp_parse_error(data: bytes) -> None:
    """Garbage never escapes as anything but RtpParseError (the receiver counts those)."""
    try:
        RtpPacket.parse(data)
    except RtpParseError:
        pass


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x80\x00", "shorter than the 12-byte RTP header"),
        (b"\x40" + bytes(11), "RTP version 1"),
        (b"\x83" + bytes(11), "announces 3 CSRCs"),
        (b"\x90" + bytes(11), "extension flag set but no extension"),
        (b"\x90" + bytes(11) + b"\x00\x00\x00\x05", "extension of 5 words"),
        (b"\xa0" + bytes(11) + b"\x01\x02\x09", "padding length 9"),
        (b"\xa0" + bytes(11) + b"\x01\x02\x00", "padding length 0"),
        (b"\x80" + bytes(1600), "exceeds 1500 bytes"),
    ],
)
def test_malformed_packets_say_what_is_wrong(data: bytes, message: str) -> None:
    with pytest.raises(RtpParseError, match=message):
        RtpPacket.parse(data)


def test_padding_and_extension_are_stripped_from_the_payload() -> None:
    data = b"\xb0\x00" + bytes(10) + b"\xbe\xde\x00\x01" + b"EXT!" + b"audio" + b"\x00\x00\x03"
    assert RtpPacket.parse(data).payload == b"audio"


@given(st.lists(st.integers(0, 700), max_size=30))
def test_any_packet_sizes_reframe_into_whole_frames_keeping_every_sample(sizes: list[int]) -> None:
    import numpy as np

    from ivr_server.media.frames import Reframer

    reframer = Reframer(8000)
    audio = np.arange(sum(sizes), dtype=np.int64).astype(np.int16)
    out, at = [], 0
    for size in sizes:
        out += reframer.push(audio[at : at + size])
        at += size
    assert all(len(f) == 160 for f in out)
    whole = len(out) * 160
    assert whole == sum(sizes) - sum(sizes) % 160
    assert np.array_equal(np.concatenate(out) if out else audio[:0], audio[:whole])
