"""Liveness and readiness, for a load balancer, systemd or Kubernetes (/healthz, /readyz).

The event loop keeps the state up to date (a heartbeat, and each check's last outcome); the
metrics listener's thread only reads it, so an answer never waits on the loop and takes
microseconds. A loop stalled for longer than ``stall_s`` makes /healthz answer 503: whatever
holds it (a decoder run on the loop, a blocking call) also holds every call's audio.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

CHECKS = ("ari", "store", "speech", "flows")
NOT_YET = "not checked yet"


class Health:
    def __init__(self, stall_s: float = 2.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.stall_s, self._clock = stall_s, clock
        self._started = self._beat = clock()
        # check -> None when it holds, else what is wrong (in words an operator can act on)
        self._problems: dict[str, str | None] = dict.fromkeys(CHECKS, NOT_YET)
        self.draining = False
        self.serving = False  # start-up loads models on the loop: that is not a stall

    def beat(self) -> None:
        self._beat = self._clock()

    def holds(self, check: str) -> None:
        self._problems[check] = None

    def fails(self, check: str, problem: str) -> None:
        self._problems[check] = problem[:300]

    def liveness(self) -> tuple[int, dict[str, Any]]:
        now = self._clock()
        stalled = now - self._beat if self.serving else 0.0
        alive = stalled <= self.stall_s
        body = {
            "alive": alive,
            "starting": not self.serving,
            "loop_heartbeat_age_s": round(stalled, 3),
            "uptime_s": round(now - self._started, 1),
        }
        return (200 if alive else 503), body

    def readiness(self) -> tuple[int, dict[str, Any]]:
        checks = {name: problem or "ok" for name, problem in self._problems.items()}
        alive, _ = self.liveness()
        if alive != 200:
            checks["loop"] = f"event loop stalled for {self._clock() - self._beat:.1f}s"
        if not self.serving:
            checks["server"] = "starting"
        if self.draining:
            checks["draining"] = "the server is draining: new calls are declined"
        ready = all(v == "ok" for v in checks.values())
        return (200 if ready else 503), {"ready": ready, "checks": checks}

    async def keep_beating(
        self, every_s: float = 0.25, on_lag: Callable[[float], None] | None = None
    ) -> None:
        """Run on the loop for the server's life: the heartbeat, and how late each wake-up was
        (the event-loop lag every call's audio shares)."""
        self._beat, self.serving = self._clock(), True
        while True:
            due = self._clock() + every_s
            await asyncio.sleep(every_s)
            now = self._clock()
            self._beat = now
            if on_lag is not None:
                on_lag(max(0.0, now - due))


async def watch_store(
    health: Health, probe: Callable[[], Any], every_s: float = 5.0, timeout_s: float = 2.0
) -> None:
    """``probe`` (an awaitable factory: one cheap query) every ``every_s``; its outcome is the
    store check."""
    while True:
        try:
            async with asyncio.timeout(timeout_s):
                await probe()
        except TimeoutError:
            health.fails("store", f"no answer within {timeout_s:g}s")
        except Exception as err:  # any driver error: the store cannot be used now
            health.fails("store", f"{type(err).__name__}: {err}")
        else:
            health.holds("store")
        await asyncio.sleep(every_s)
