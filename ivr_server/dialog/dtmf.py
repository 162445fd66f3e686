"""Collecting DTMF digits: pure logic, times passed in (seconds on any monotonic clock)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

DIGITS = frozenset("0123456789*")
Reason = Literal["terminator", "max_digits", "timeout", "no_input"]


@dataclass(frozen=True)
class DtmfResult:
    digits: str
    reason: Reason


class DtmfCollector:
    """Digits until the terminator, ``max_digits``, or a timeout.

    The first digit may take ``first_digit_timeout_s`` from ``started_at``; each later one
    ``inter_digit_timeout_s`` from the previous digit. Keys that are neither a digit, ``*`` nor
    the terminator (A-D) are ignored and listed in ``ignored``.
    """

    def __init__(
        self,
        *,
        started_at: float,
        first_digit_timeout_s: float,
        inter_digit_timeout_s: float,
        max_digits: int,
        terminator: str = "#",
    ) -> None:
        if max_digits < 1:
            raise ValueError("max_digits must be at least 1")
        self.terminator = terminator
        self.max_digits = max_digits
        self.first_digit_timeout_s = first_digit_timeout_s
        self.inter_digit_timeout_s = inter_digit_timeout_s
        self.started_at = started_at
        self.digits = ""
        self.ignored = ""
        self.result: DtmfResult | None = None
        self._last_at: float | None = None

    def feed(self, key: str, at: float) -> DtmfResult | None:
        """Take one key press; returns the result once collection is over."""
        if self.result is not None:
            return self.result
        if self.expire(at) is not None:
            return self.result
        if key == self.terminator:
            self.result = DtmfResult(self.digits, "terminator")
        elif key in DIGITS:
            self.digits += key
            self._last_at = at
            if len(self.digits) >= self.max_digits:
                self.result = DtmfResult(self.digits, "max_digits")
        else:
            self.ignored += key
        return self.result

    def deadline(self) -> float:
        if self._last_at is None:
            return self.started_at + self.first_digit_timeout_s
        return self._last_at + self.inter_digit_timeout_s

    def expire(self, now: float) -> DtmfResult | None:
        """Call when the deadline may have passed; ends collection if it has."""
        if self.result is None and now >= self.deadline():
            self.result = DtmfResult(self.digits, "timeout" if self.digits else "no_input")
        return self.result


def digit_prompt(key: str) -> str:
    """The prompt id that speaks one collected key."""
    if key == "*":
        return "digit_star"
    if key in DIGITS:
        return f"digit_{key}"
    raise ValueError(f"no prompt for key {key!r}")
