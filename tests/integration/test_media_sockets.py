"""RTP receiver, sender, media clock and port pool over real UDP sockets on loopback."""

from __future__ import annotations

import asyncio
import socket
import time

import numpy as np
import pytest

from ivr_server.errors import PortsExhausted
from ivr_server.media.clock import MediaClock
from ivr_server.media.formats import SLIN16, ULAW, MediaFormat
from ivr_server.media.g711 import ulaw_decode, ulaw_encode
from ivr_server.media.ports import PortPool
from ivr_server.media.receiver import RtpReceiver
from ivr_server.media.rtp import RtpPacket
from ivr_server.media.sender import RtpSender
from ivr_server.observability.metrics import Metrics


def udp_socket() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.setblocking(False)
    return s


async def settle() -> None:
    await asyncio.sleep(0.05)


@pytest.mark.parametrize("fmt", [ULAW, SLIN16], ids=lambda f: f.name)
async def test_receiver_accepts_only_the_announced_peer(fmt: MediaFormat) -> None:
    """Frames from the expected address are decoded; strangers, garbage and other payload types
    are dropped and counted, and packets after them are still accepted."""
    frames: list[np.ndarray] = []
    metrics = Metrics()
    receiver = RtpReceiver(fmt, frames.append, metrics)
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(lambda: receiver, local_addr=("127.0.0.1", 0))
    port = transport.get_extra_info("sockname")[1]
    asterisk, stranger = udp_socket(), udp_socket()
    receiver.expect_peer(*asterisk.getsockname())
    pcm = (np.sin(np.arange(fmt.frame_samples) / 5) * 8000).astype(np.int16)
    good = RtpPacket(fmt.payload_type, 1, 0, 7, fmt.encode(pcm)).to_bytes()
    try:
        asterisk.sendto(good, ("127.0.0.1", port))
        stranger.sendto(good, ("127.0.0.1", port))
        asterisk.sendto(b"\x80\x00garbage", ("127.0.0.1", port))
        asterisk.sendto(RtpPacket(99, 2, 160, 7, b"\x00" * 10).to_bytes(), ("127.0.0.1", port))
        asterisk.sendto(
            RtpPacket(fmt.payload_type, 4, 480, 7, fmt.encode(pcm)).to_bytes(), ("127.0.0.1", port)
        )
        await settle()
        assert frames == [], "datagrams are only queued until the media clock drains them"
        receiver.drain()
    finally:
        transport.close()
        asterisk.close()
        stranger.close()
    expected = ulaw_decode(ulaw_encode(pcm)) if fmt is ULAW else pcm
    assert len(frames) == 2 and all(np.array_equal(f, expected) for f in frames)
    assert receiver.rejected == {"wrong_source": 1, "malformed": 1, "payload_type": 1}
    assert receiver.stats.received == 2 and receiver.stats.lost == 2  # seq 2 and 3 never came
    assert receiver.overflowed == 0
    receiver.flush_metrics()
    value = metrics.registry.get_sample_value
    assert value("ivr_rtp_packets_rejected_total", {"reason": "wrong_source"}) == 1
    assert value("ivr_rtp_packets_lost_total") == 2


async def test_sender_numbers_and_times_packets_correctly() -> None:
    """Consecutive sequence numbers, timestamps that advance 160 per 20 ms even across silence,
    one SSRC, the marker bit at each talkspurt, and the audio itself."""
    listener = udp_socket()
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0))
    clock = MediaClock()
    sender = RtpSender(ULAW, transport, listener.getsockname(), clock, Metrics())
    sender.start()
    first = (np.arange(160 * 5) % 200 * 50 - 5000).astype(np.int16)
    try:
        assert await sender.play(first).done is True
        await asyncio.sleep(0.1)  # five slots of silence
        assert await sender.play(first[:400]).done is True  # 2.5 frames: padded to 3
    finally:
        sender.close()
        transport.close()
    packets = []
    while True:
        try:
            packets.append(RtpPacket.parse(listener.recv(2048)))
        except BlockingIOError:
            break
    listener.close()
    assert len(packets) == 8
    assert {p.ssrc for p in packets} == {sender.ssrc} and {p.payload_type for p in packets} == {0}
    seqs = [p.sequence for p in packets]
    assert all((b - a) & 0xFFFF == 1 for a, b in zip(seqs, seqs[1:], strict=False))
    assert [p.marker for p in packets] == [True, False, False, False, False, True, False, False]
    ts = [p.timestamp for p in packets]
    assert all((b - a) & 0xFFFFFFFF == 160 for a, b in zip(ts[:5], ts[1:5], strict=False))
    gap = (ts[5] - ts[4]) & 0xFFFFFFFF
    assert gap % 160 == 0 and gap >= 160 * 5, "timestamps must advance through the silence"
    assert b"".join(p.payload for p in packets[:5]) == ulaw_encode(first)
    assert packets[-1].payload[80:] == ulaw_encode(np.zeros(80, np.int16))


async def test_stop_cuts_playback_and_reports_it() -> None:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0))
    sink = udp_socket()
    sender = RtpSender(ULAW, transport, sink.getsockname(), MediaClock(), Metrics())
    sender.start()
    playback = sender.play(np.zeros(8000, np.int16))  # one second
    await asyncio.sleep(0.1)
    sender.stop()
    try:
        assert await playback.done is False
        assert 2 <= playback.frames_played <= 10
        assert not sender.playing
    finally:
        sender.close()
        transport.close()
        sink.close()


@pytest.mark.parametrize("use_timerfd", [True, False], ids=["timerfd", "call_at"])
async def test_clock_slots_stay_on_the_grid_when_the_loop_stalls(use_timerfd: bool) -> None:
    """Slots are t0 + n*20 ms: a stalled loop skips slots instead of bursting or drifting."""
    clock = MediaClock(use_timerfd=use_timerfd)
    seen: list[tuple[int, float]] = []

    class Member:
        def on_tick(self, tick: int, slot: float) -> None:
            seen.append((tick, slot))
            if tick == 3:
                time.sleep(0.075)  # block the loop for more than three slots

    member = Member()
    clock.add(member)
    await asyncio.sleep(0.3)
    clock.remove(member)
    assert not clock.running
    t0 = seen[0][1]
    for tick, slot in seen:
        assert slot == pytest.approx(t0 + tick * 0.020, abs=1e-9)
    ticks = [t for t, _ in seen]
    assert ticks == sorted(ticks) and len(set(ticks)) == len(ticks)
    assert clock.skipped >= 3 and 4 not in ticks


async def test_port_pool_skips_taken_ports_and_is_bounded() -> None:
    taken = udp_socket()
    base = taken.getsockname()[1]
    pool = PortPool("127.0.0.1", base, base + 1)
    port, transport, _ = await pool.open(asyncio.DatagramProtocol)
    assert port == base + 1  # base is held by another socket
    with pytest.raises(PortsExhausted, match=f"127.0.0.1:{base}-{base + 1}"):
        await pool.open(asyncio.DatagramProtocol)
    pool.release(port, transport)
    taken.close()
    assert not pool.in_use
    again, transport2, _ = await pool.open(asyncio.DatagramProtocol)
    assert again == base  # round robin: the port freed last is used last
    pool.release(again, transport2)


async def test_timerfd_ticks_land_close_to_their_slots() -> None:
    """The kernel timer wakes the loop on the slot, not up to a millisecond after it."""
    clock = MediaClock(use_timerfd=True)
    lateness: list[float] = []

    class Member:
        def on_tick(self, tick: int, slot: float) -> None:
            lateness.append(time.monotonic() - slot)

    member = Member()
    clock.add(member)
    await asyncio.sleep(0.5)
    clock.remove(member)
    assert len(lateness) >= 20
    assert min(lateness) >= 0, "a tick before its slot"
    assert sorted(lateness)[len(lateness) // 2] < 0.001, "median wake-up more than 1 ms late"


async def test_receiver_backlog_is_bounded_and_counts_what_it_drops() -> None:
    metrics = Metrics()
    frames: list[np.ndarray] = []
    receiver = RtpReceiver(ULAW, frames.append, metrics, backlog=5)
    receiver.expect_peer("127.0.0.1", 9)
    for seq in range(8):
        receiver.datagram_received(
            RtpPacket(0, seq, seq * 160, 1, b"\xff" * 160).to_bytes(), ("127.0.0.1", 9)
        )
    receiver.drain()
    assert receiver.overflowed == 3 and len(frames) == 5
    assert metrics.registry.get_sample_value("ivr_audio_frames_dropped_total", {"direction": "in"}) == 3


async def test_clock_ticks_do_not_run_in_the_context_of_the_call_that_started_it() -> None:
    """The first call to join starts the clock; its log fields must not stick to every tick."""
    import structlog

    from ivr_server.media.clock import MediaClock

    seen: list[dict[str, object]] = []

    class Member:
        def on_tick(self, tick: int, slot_time: float) -> None:
            seen.append(structlog.contextvars.get_contextvars())

    clock, member = MediaClock(), Member()
    with structlog.contextvars.bound_contextvars(call_id="first-call"):
        clock.add(member)
    await asyncio.sleep(0.1)
    clock.remove(member)
    assert len(seen) >= 3 and all("call_id" not in fields for fields in seen), seen[:3]


async def test_odd_sized_packets_become_whole_frames_and_a_failing_frame_is_skipped() -> None:
    """A peer's 1-, 80- and 161-byte PCMU payloads reach the call as 20 ms frames with every
    sample kept in order; a frame the call's audio path raises on is counted and skipped, and
    the frames after it still arrive (the receiver is not dropped from the media clock)."""
    frames: list[np.ndarray] = []
    failures = iter([False, True])

    def sink(frame: np.ndarray) -> None:
        if next(failures, False):
            raise ValueError("a bug downstream")
        frames.append(frame)

    receiver = RtpReceiver(ULAW, sink, Metrics())
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(lambda: receiver, local_addr=("127.0.0.1", 0))
    port = transport.get_extra_info("sockname")[1]
    asterisk = udp_socket()
    receiver.expect_peer(*asterisk.getsockname())
    sizes = [1, 80, 161, 160, 80, 160, 158]
    pcm = (np.sin(np.arange(sum(sizes)) / 7) * 8000).astype(np.int16)
    payload = ULAW.encode(pcm)
    try:
        at = 0
        for seq, size in enumerate(sizes):
            packet = RtpPacket(ULAW.payload_type, seq, at, 7, payload[at : at + size])
            asterisk.sendto(packet.to_bytes(), ("127.0.0.1", port))
            at += size
        await settle()
        receiver.drain()
    finally:
        transport.close()
        asterisk.close()
    assert all(len(f) == ULAW.frame_samples for f in frames)
    heard = ulaw_decode(payload)
    assert len(frames) == sum(sizes) // 160 - 1 and receiver.sink_failures == 1
    assert np.array_equal(frames[0], heard[:160]) and np.array_equal(frames[1], heard[320:480])
    assert receiver.rejected == {"wrong_source": 0, "malformed": 0, "payload_type": 0}
