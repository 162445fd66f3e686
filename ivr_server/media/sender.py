"""Outbound RTP for one call: queued playbacks or live frames, one packet per clock tick."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ivr_server.media.clock import MediaClock
from ivr_server.media.formats import FRAME_MS, MediaFormat
from ivr_server.media.g711 import Pcm
from ivr_server.media.rtp import HEADER, RTP_VERSION
from ivr_server.media.stats import DeviationHistogram
from ivr_server.observability.metrics import Metrics

JITTER_MS = 2.0  # packets beyond this are counted in metrics


@dataclass
class Playback:
    """One queued piece of audio. ``done`` resolves to True when it played to the end."""

    frames: list[bytes]
    done: asyncio.Future[bool]
    position: int = 0
    on_start: Callable[[float], None] | None = None  # called with the first packet's send time

    @property
    def frames_played(self) -> int:
        return self.position


@dataclass
class SendStats:
    packets: int = 0
    live_dropped: int = 0
    # Pacing jitter: |interval between consecutive packets - their slots' interval| (IPDV, RFC
    # 3393, on departure times). A constant offset from the slot is latency, not jitter.
    jitter: DeviationHistogram = field(default_factory=DeviationHistogram)
    # |send time - slot|: includes the call's place in the tick's batch of sends.
    slot_offset: DeviationHistogram = field(default_factory=DeviationHistogram)


class RtpSender:
    """Sends to the address Asterisk announced. RTP timestamps advance with the clock even in
    silence, and the first packet after silence carries the marker bit (RFC 3551 talkspurt).
    """

    def __init__(
        self,
        fmt: MediaFormat,
        transport: asyncio.DatagramTransport,
        peer: tuple[str, int],
        clock: MediaClock,
        metrics: Metrics,
        live_capacity: int = 25,
    ) -> None:
        self.fmt = fmt
        self.peer = peer
        self.ssrc = secrets.randbits(32)
        self.stats = SendStats()
        self._transport = transport
        self._clock = clock
        self._metrics = metrics
        self._sequence = secrets.randbits(16)
        self._ts_base = secrets.randbits(32)
        self._first_tick = 0
        self._talking = False
        self._last_sent: tuple[int, float] | None = None  # (tick, monotonic time)
        self._queue: deque[Playback] = deque()
        self._live: deque[bytes] = deque(maxlen=live_capacity)
        self._started = False
        self.paused = False  # queued audio waits (a possible barge-in being confirmed)

    def start(self) -> None:
        if not self._started:
            self._first_tick = self._clock.add(self)
            self._started = True

    def close(self) -> None:
        self.stop()
        if self._started:
            self._clock.remove(self)
            self._started = False

    @property
    def playing(self) -> bool:
        return bool(self._queue)

    def play(self, pcm: Pcm, on_start: Callable[[float], None] | None = None) -> Playback:
        """Queue audio at the format's rate; the last frame is padded with silence."""
        n = self.fmt.frame_samples
        padded = np.zeros(-(-len(pcm) // n) * n, dtype=np.int16)
        padded[: len(pcm)] = pcm
        payload = self.fmt.encode(padded)
        size = self.fmt.frame_bytes
        frames = [payload[i : i + size] for i in range(0, len(payload), size)]
        playback = Playback(frames, asyncio.get_running_loop().create_future(), on_start=on_start)
        if not frames:
            playback.done.set_result(True)
            return playback
        self._queue.append(playback)
        return playback

    def pause(self) -> None:
        """Hold playback where it is; ``resume`` continues it, ``stop`` drops it."""
        self.paused = True

    def resume(self) -> None:
        self.paused = False

    def stop(self) -> None:
        """Stop what is playing and everything queued (barge-in, DTMF, hangup)."""
        self.paused = False
        while self._queue:
            playback = self._queue.popleft()
            if not playback.done.done():
                playback.done.set_result(False)
        self._live.clear()

    def push_live(self, pcm: Pcm) -> None:
        """One live frame (echo); a full queue drops its oldest frame, counted."""
        if len(self._live) == self._live.maxlen:
            self.stats.live_dropped += 1
            self._metrics.audio_dropped.labels(direction="out").inc()
        self._live.append(self.fmt.encode(pcm))

    def on_tick(self, tick: int, slot_time: float) -> None:
        payload = self._next_payload()
        if payload is None:
            self._talking = False
            self._last_sent = None
            return
        marker = 0x80 if not self._talking else 0
        self._talking = True
        timestamp = (self._ts_base + (tick - self._first_tick) * self.fmt.frame_samples) & 0xFFFFFFFF
        header = HEADER.pack(
            RTP_VERSION << 6, marker | self.fmt.payload_type, self._sequence, timestamp, self.ssrc
        )
        now = time.monotonic()
        self._transport.sendto(header + payload, self.peer)
        self._sequence = (self._sequence + 1) & 0xFFFF
        self.stats.packets += 1
        self.stats.slot_offset.add(abs(now - slot_time) * 1000.0)
        if self._last_sent is not None:
            last_tick, last_time = self._last_sent
            ipdv_ms = abs((now - last_time) - (tick - last_tick) * FRAME_MS / 1000) * 1000.0
            self.stats.jitter.add(ipdv_ms)
            if ipdv_ms > JITTER_MS:
                self._metrics.send_jitter_over.inc()
        self._last_sent = (tick, now)
        self._metrics.rtp_sent.inc()

    def _next_payload(self) -> bytes | None:
        if self._queue and not self.paused:
            playback = self._queue[0]
            if playback.position == 0 and playback.on_start is not None:
                playback.on_start(time.monotonic())
            frame = playback.frames[playback.position]
            playback.position += 1
            if playback.position == len(playback.frames):
                self._queue.popleft()
                if not playback.done.done():
                    playback.done.set_result(True)
            return frame
        if self._live:
            return self._live.popleft()
        return None
