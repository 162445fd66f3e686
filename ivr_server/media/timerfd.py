"""A periodic Linux timerfd on CLOCK_MONOTONIC (libc through ctypes; os.timerfd_* is 3.13+).

The kernel keeps the period drift-free with microsecond precision and counts expirations the
reader missed; the event loop waits on the descriptor like on a socket. asyncio's own timers go
through epoll_wait, which only sleeps in whole milliseconds.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

CLOCK_MONOTONIC = 1
TFD_TIMER_ABSTIME = 1
TFD_NONBLOCK = os.O_NONBLOCK
TFD_CLOEXEC = os.O_CLOEXEC


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.timerfd_create  # noqa: B018 - probe that the symbol exists
        libc.timerfd_settime  # noqa: B018
    except (OSError, AttributeError):
        return None
    return libc


_LIBC = _libc()


def available() -> bool:
    return _LIBC is not None


def _timespec(seconds: float) -> _Timespec:
    ns = int(round(seconds * 1e9))
    return _Timespec(ns // 1_000_000_000, ns % 1_000_000_000)


class PeriodicTimer:
    """Expires at ``first_s`` (CLOCK_MONOTONIC seconds, i.e. ``time.monotonic()``) and every
    ``period_s`` after."""

    def __init__(self, first_s: float, period_s: float) -> None:
        if _LIBC is None:
            raise OSError("timerfd is not available on this system")
        fd = _LIBC.timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC)
        if fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"timerfd_create: {os.strerror(err)}")
        self.fd = fd
        spec = _Itimerspec(_timespec(period_s), _timespec(first_s))
        if _LIBC.timerfd_settime(fd, TFD_TIMER_ABSTIME, ctypes.byref(spec), None) != 0:
            err = ctypes.get_errno()
            os.close(fd)
            raise OSError(err, f"timerfd_settime: {os.strerror(err)}")

    def expirations(self) -> int:
        """Periods elapsed since the last call (0 if none)."""
        try:
            return int.from_bytes(os.read(self.fd, 8), sys.byteorder)
        except BlockingIOError:
            return 0

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
