"""Telling systemd how the server is doing (the sd_notify protocol), without libsystemd.

A ``Type=notify`` unit gets ``NOTIFY_SOCKET``: a unix datagram socket, a path or, starting with
``@``, a name in the abstract namespace. Each datagram is newline-separated ``KEY=VALUE`` lines:
``READY=1`` once calls can be served, ``RELOADING=1`` (with ``MONOTONIC_USEC``) then ``READY=1``
around a SIGHUP reload, ``STOPPING=1`` when the drain starts, ``STATUS=`` for ``systemctl status``,
and ``WATCHDOG=1`` at half of ``WATCHDOG_USEC`` when the unit sets ``WatchdogSec=``.

Without ``NOTIFY_SOCKET`` every call does nothing. A send that fails is logged once as a warning
and never raises: systemd being unreachable must not stop calls being served.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Mapping

import structlog

log = structlog.get_logger(__name__)


class SystemdNotifier:
    """One server's channel to its service manager; state kept so that a reload started before
    ``ready`` (or a second ``stopping``) sends nothing misleading."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self.socket_name = env.get("NOTIFY_SOCKET", "")
        self.watchdog_interval_s = _watchdog_interval(env)
        self.is_ready = False
        self._ready_status = ""
        self._reloading = False
        self._stopping = False
        self._sock: socket.socket | None = None
        self._warned = False

    @property
    def enabled(self) -> bool:
        return bool(self.socket_name)

    def notify(self, *fields: str) -> bool:
        """Send one datagram of ``KEY=VALUE`` fields; False when not sent (no socket, or it failed)."""
        if not self.enabled:
            return False
        try:
            address = _address(self.socket_name)
            if self._sock is None:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                sock.setblocking(False)  # a full queue drops the message rather than stall calls
                self._sock = sock
            self._sock.sendto("\n".join(fields).encode(), address)
        except (OSError, ValueError) as err:
            if not self._warned:
                self._warned = True
                log.warning(
                    "systemd.notify_failed",
                    notify_socket=self.socket_name,
                    error=f"{type(err).__name__}: {err}",
                    hint="systemd may not see the server ready, reloading or alive; warned once",
                )
            return False
        return True

    def status(self, text: str) -> bool:
        return self.notify(f"STATUS={text}")

    def ready(self, status: str) -> bool:
        if self._stopping:
            return False
        self.is_ready = True
        self._ready_status = status
        return self.notify("READY=1", f"STATUS={status}")

    def reloading(self) -> bool:
        """A reload starts; announced only once the server is ready and not stopping."""
        if not self.is_ready or self._stopping:
            return False
        self._reloading = True
        return self.notify("RELOADING=1", f"MONOTONIC_USEC={time.monotonic_ns() // 1000}", "STATUS=reloading")

    def reloaded(self) -> bool:
        """The reload announced by ``reloading`` is over, whether or not it succeeded."""
        if not self._reloading or self._stopping:
            return False
        self._reloading = False
        return self.notify("READY=1", f"STATUS={self._ready_status}")

    def stopping(self, status: str) -> bool:
        if self._stopping:
            return False
        self._stopping = True
        return self.notify("STOPPING=1", f"STATUS={status}")

    async def watchdog(self) -> None:
        """Ping until cancelled. It runs on the event loop on purpose: a loop stalled long enough
        to starve every call's audio stops the pings, and systemd restarts the server."""
        interval = self.watchdog_interval_s
        if interval is None or not self.enabled:
            return
        while True:
            self.notify("WATCHDOG=1")
            await asyncio.sleep(interval)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _address(name: str) -> str:
    if name.startswith("@"):
        return "\0" + name[1:]  # the abstract namespace
    if name.startswith("/"):
        return name
    raise ValueError(f"unsupported NOTIFY_SOCKET {name!r}: a path or an @abstract name")


def _watchdog_interval(env: Mapping[str, str]) -> float | None:
    """Half of ``WATCHDOG_USEC`` in seconds, or None when the watchdog is not ours (or not set)."""
    pid = env.get("WATCHDOG_PID")
    if pid is not None and pid.strip() != str(os.getpid()):
        return None  # set for another process (a parent that did not clear it)
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    return usec / 2 / 1_000_000 if usec > 0 else None
