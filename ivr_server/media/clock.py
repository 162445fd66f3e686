"""One 20 ms media clock per process, driving every call's RTP sender.

Slots are ``t0 + n * 20 ms`` on the monotonic clock, so lateness never accumulates: a late tick
makes one packet late, not every packet after it, and a slot more than half a frame overdue (the
loop was blocked) is skipped rather than sent in a burst. One clock for all calls keeps the
wake-ups at 50 per second whatever the number of calls.

On Linux a periodic timerfd wakes the loop within microseconds of each slot. Elsewhere the
clock falls back to ``loop.call_at``: epoll sleeps in whole milliseconds, rounding up, so it asks
``WAKE_EARLY_S`` before each slot to centre that 0-1 ms error on the slot.
"""

from __future__ import annotations

import asyncio
import contextvars
from typing import Protocol

import structlog

from ivr_server.media import timerfd
from ivr_server.media.formats import FRAME_MS

WAKE_EARLY_S = 0.0005

log = structlog.get_logger(__name__)


class Ticked(Protocol):
    def on_tick(self, tick: int, slot_time: float) -> None: ...


class MediaClock:
    """Members tick in two phases: senders first (their packets are due now), then the rest
    (receivers draining what arrived), so inbound work never delays outbound packets."""

    SEND, AFTER_SEND = 0, 1

    def __init__(self, period_s: float = FRAME_MS / 1000, use_timerfd: bool | None = None) -> None:
        self.period_s = period_s
        self.use_timerfd = timerfd.available() if use_timerfd is None else use_timerfd
        self.ticks = 0
        self.skipped = 0
        self._phases: tuple[list[Ticked], list[Ticked]] = ([], [])
        self._t0 = 0.0
        self._handle: asyncio.TimerHandle | None = None
        self._timer: timerfd.PeriodicTimer | None = None

    @property
    def running(self) -> bool:
        return self._handle is not None or self._timer is not None

    @property
    def _members(self) -> list[Ticked]:
        return self._phases[0] + self._phases[1]

    def add(self, member: Ticked, phase: int = SEND) -> int:
        """Start ticking ``member`` in ``phase``; returns the tick it starts at."""
        self._phases[phase].append(member)
        if not self.running:
            self._start()
        return self.ticks

    def remove(self, member: Ticked) -> None:
        for members in self._phases:
            if member in members:
                members.remove(member)
        if not self._members:
            self._stop()

    def slot(self, tick: int) -> float:
        return self._t0 + tick * self.period_s

    def _start(self) -> None:
        loop = asyncio.get_running_loop()
        self._t0 = loop.time() + self.period_s
        self.ticks = 0
        # The first call to join starts the clock; its callbacks must not run in that call's
        # context (its log fields would stick to every call's tick), so they get an empty one.
        empty = contextvars.Context()
        if self.use_timerfd:
            self._timer = timerfd.PeriodicTimer(self._t0, self.period_s)
            empty.run(loop.add_reader, self._timer.fd, self._on_timerfd)
        else:
            self._handle = empty.run(loop.call_at, self._t0 - WAKE_EARLY_S, self._on_timer_handle)

    def _stop(self) -> None:
        if self._timer is not None:
            asyncio.get_running_loop().remove_reader(self._timer.fd)
            self._timer.close()
            self._timer = None
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _on_timerfd(self) -> None:
        assert self._timer is not None
        elapsed = self._timer.expirations()
        if elapsed == 0:
            return
        if elapsed > 1:
            self._skip(elapsed - 1)  # the loop was blocked past whole slots
        if asyncio.get_running_loop().time() - self.slot(self.ticks) > self.period_s / 2:
            self._skip(1)  # more than half a frame overdue: sending it would burst
            return
        self._fire()

    def _on_timer_handle(self) -> None:
        self._fire()
        if not self._members:
            self._handle = None
            return
        loop = asyncio.get_running_loop()
        behind = int((loop.time() - self.slot(self.ticks)) / self.period_s + 0.5)
        if behind > 0:
            self._skip(behind)
        self._handle = loop.call_at(self.slot(self.ticks) - WAKE_EARLY_S, self._on_timer_handle)

    def _fire(self) -> None:
        slot = self.slot(self.ticks)
        for members in self._phases:
            for member in tuple(members):
                try:
                    member.on_tick(self.ticks, slot)
                except Exception:  # one broken call must not silence every call
                    log.exception("media.clock_member_failed")
                    members.remove(member)
        self.ticks += 1

    def _skip(self, slots: int) -> None:
        self.skipped += slots
        self.ticks += slots
        log.warning("media.clock_skipped", frames=slots)
