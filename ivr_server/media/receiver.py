"""Inbound RTP for one call: accept only the announced peer, parse, track, decode.

The socket callback only stamps and queues each datagram (a few microseconds, bounded); the
media clock calls ``drain()`` after every tick's sends, so parsing and decoding never sit between
a tick and its outbound packets.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from typing import Any, cast

import structlog

from ivr_server.errors import RtpParseError
from ivr_server.media.formats import MediaFormat
from ivr_server.media.frames import Reframer
from ivr_server.media.g711 import Pcm
from ivr_server.media.rtp import RtpPacket
from ivr_server.media.stats import RtpReceiveStats
from ivr_server.observability.logging import RateLimitedLog
from ivr_server.observability.metrics import Metrics

log = structlog.get_logger(__name__)

Address = tuple[str, int]


class RtpReceiver(asyncio.DatagramProtocol):
    """Datagram protocol bound to one call's port. Decoded audio goes to ``sink`` synchronously,
    in 20 ms frames whatever the peer's packet size (frames.py).

    Packets are dropped and counted (never raised) when they come from anywhere but the address
    Asterisk announced for the call's ExternalMedia channel, are not RTP, or carry another
    payload type.
    """

    def __init__(
        self, fmt: MediaFormat, sink: Callable[[Pcm], None], metrics: Metrics, backlog: int = 50
    ) -> None:
        self.fmt = fmt
        self.sink = sink
        self.metrics = metrics
        self.stats = RtpReceiveStats(fmt.sample_rate)
        self._frames = Reframer(fmt.sample_rate)
        self.rejected: dict[str, int] = {"wrong_source": 0, "malformed": 0, "payload_type": 0}
        self.sink_failures = 0  # frames the call's audio path raised on (logged, counted, skipped)
        self.overflowed = 0
        self._backlog: deque[tuple[bytes, tuple[Any, ...], float]] = deque(maxlen=backlog)
        self.expected_peer: Address | None = None
        self.transport: asyncio.DatagramTransport | None = None
        self._reported_lost = 0
        self._log_limit = RateLimitedLog()
        self.log = log  # the session binds its call's fields: packets arrive outside its task
        # Called after every tick's drain, packets or not: the caller's time advances in
        # silence too (a phone with silence suppression sends nothing).
        self.after_drain: Callable[[float], None] | None = None

    def expect_peer(self, host: str, port: int) -> None:
        self.expected_peer = (host, port)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # The selector loop's datagram transport does not subclass DatagramTransport.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        if len(self._backlog) == self._backlog.maxlen:  # nobody drained for a second: drop oldest
            self.overflowed += 1
            self.metrics.audio_dropped.labels(direction="in").inc()
        self._backlog.append((data, addr, time.monotonic()))

    def on_tick(self, tick: int, slot_time: float) -> None:
        self.drain()
        if self.after_drain is not None:
            self.after_drain(slot_time)

    def drain(self) -> None:
        """Process every queued datagram, oldest first."""
        while self._backlog:
            data, addr, arrived = self._backlog.popleft()
            self._process(data, addr, arrived)

    def _process(self, data: bytes, addr: tuple[Any, ...], arrived: float) -> None:
        if self.expected_peer is None or (addr[0], addr[1]) != self.expected_peer:
            self._reject("wrong_source", source=f"{addr[0]}:{addr[1]}", size=len(data))
            return
        try:
            packet = RtpPacket.parse(data)
            if packet.payload_type != self.fmt.payload_type:
                self._reject("payload_type", payload_type=packet.payload_type)
                return
            pcm = self.fmt.decode(packet.payload)
        except RtpParseError as err:
            self._reject("malformed", error=str(err), size=len(data))
            return
        self.stats.update(packet.sequence, packet.timestamp, arrived)
        self.metrics.rtp_received.inc()
        for frame in self._frames.push(pcm):
            try:
                self.sink(frame)
            except Exception:  # the call keeps its audio: the media clock would drop this receiver
                self.sink_failures += 1
                self.metrics.audio_dropped.labels(direction="in").inc()
                should, count = self._log_limit.should_log("sink_failed")
                if should:
                    self.log.exception("rtp.frame_failed", count=count)

    def error_received(self, exc: Exception) -> None:
        # ICMP errors for our sends (e.g. port unreachable while Asterisk restarts).
        self.log.debug("rtp.socket_error", error=str(exc))

    def flush_metrics(self) -> None:
        """Add loss seen since the last flush to the global counter."""
        lost = self.stats.lost
        if lost > self._reported_lost:
            self.metrics.rtp_lost.inc(lost - self._reported_lost)
            self._reported_lost = lost

    def _reject(self, reason: str, **detail: Any) -> None:
        self.rejected[reason] += 1
        self.metrics.rtp_rejected.labels(reason=reason).inc()
        should, count = self._log_limit.should_log(reason)
        if should:
            self.log.warning("rtp.packet_rejected", reason=reason, count=count, **detail)
