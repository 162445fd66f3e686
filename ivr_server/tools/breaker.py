"""A circuit breaker per back-end service: after ``failures`` failures in a row the service is
not called for ``reset_s`` (callers go straight to their fallback: an agent, not a wait), then
one trial call decides whether it closes again. Pure: the clock is passed in."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

State = Literal["closed", "open", "half_open"]


@dataclass
class Breaker:
    failures: int = 3
    reset_s: float = 30.0
    _failed: int = 0
    _opened_at: float | None = None
    _trial: bool = False

    def state(self, now: float) -> State:
        if self._opened_at is None:
            return "closed"
        if now - self._opened_at >= self.reset_s:
            return "half_open"
        return "open"

    def allow(self, now: float) -> bool:
        """May a call go out now? In half-open state, only one trial call at a time."""
        state = self.state(now)
        if state == "closed":
            return True
        if state == "half_open" and not self._trial:
            self._trial = True
            return True
        return False

    def succeeded(self) -> None:
        self._failed, self._opened_at, self._trial = 0, None, False

    def failed(self, now: float) -> None:
        self._failed += 1
        if self._trial or self._failed >= self.failures:
            self._opened_at, self._trial = now, False
