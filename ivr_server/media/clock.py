"""One 20 ms media clock per process, driving every call's RTP sender.

Slots are ``t0 + n * 20 ms`` on the loop's monotonic clock, so lateness never accumulates: a
late tick makes one packet late, not every packet after it. One timer for all calls keeps the
wake-ups at 50 per second whatever the number of calls.

The epoll selector rounds every timeout up to a whole millisecond, so a timer fires 0-1 ms after
the time asked for. Asking ``WAKE_EARLY_S`` before each slot centres that window on the slot.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

import structlog

from ivr_server.media.formats import FRAME_MS

WAKE_EARLY_S = 0.0005

log = structlog.get_logger(__name__)


class Ticked(Protocol):
    def on_tick(self, tick: int, slot_time: float) -> None: ...


class MediaClock:
    def __init__(self, period_s: float = FRAME_MS / 1000) -> None:
        self.period_s = period_s
        self.ticks = 0
        self.skipped = 0
        self._members: list[Ticked] = []
        self._t0 = 0.0
        self._handle: asyncio.TimerHandle | None = None

    def add(self, member: Ticked) -> int:
        """Start ticking ``member``; returns the tick it starts at."""
        self._members.append(member)
        if self._handle is None:
            loop = asyncio.get_running_loop()
            self._t0 = loop.time() + self.period_s
            self.ticks = 0
            self._handle = loop.call_at(self._t0 - WAKE_EARLY_S, self._tick)
        return self.ticks

    def remove(self, member: Ticked) -> None:
        if member in self._members:
            self._members.remove(member)
        if not self._members and self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _tick(self) -> None:
        slot = self._t0 + self.ticks * self.period_s
        for member in tuple(self._members):
            try:
                member.on_tick(self.ticks, slot)
            except Exception:  # one broken sender must not silence every call
                log.exception("media.clock_member_failed")
                self._members.remove(member)
        self.ticks += 1
        loop = asyncio.get_running_loop()
        now = loop.time()
        # Slots more than half a frame overdue are skipped: sending them would burst.
        behind = int((now - (self._t0 + self.ticks * self.period_s)) / self.period_s + 0.5)
        if behind > 0:
            self.skipped += behind
            self.ticks += behind
            log.warning("media.clock_skipped", frames=behind)
        if self._members:
            self._handle = loop.call_at(self._t0 + self.ticks * self.period_s - WAKE_EARLY_S, self._tick)
        else:
            self._handle = None
