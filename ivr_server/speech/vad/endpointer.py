"""Endpointing: per-frame speech probabilities in, turn events out. Pure logic, no clock.

Positions are milliseconds from the start of the stream, counted from the frame durations fed.
Speech starts once ``min_speech_ms`` of consecutive frames reach ``threshold``; it then stays on
while frames reach the lower ``stay_threshold`` (hysteresis: the quiet end of a word dips below
the onset threshold without being silence) and ends after ``end_silence_ms`` below it, or when it
has lasted ``max_utterance_ms``. With no speech at all for ``no_input_ms`` the turn ends with
NoInput. One endpointer serves one turn: after SpeechEnded or NoInput it is done and refuses more
frames; the caller makes a new one for the next turn (it is cheap).

Defaults come from scripts/bench-vad (benchmarks/vad.md) with the ``auto`` (mixed) detector.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from ivr_server.errors import AsrError, ConfigError


@dataclass(frozen=True)
class EndpointSettings:
    threshold: float = 0.5
    """Probability at or above which a frame counts towards speech starting."""
    stay_threshold: float = 0.35
    """Once speech has started, probability at or above which a frame keeps it going."""
    min_speech_ms: int = 20
    """Speech must last this long before it counts (a barge-in stops the prompt then)."""
    end_silence_ms: int = 700
    """Silence after speech that ends the utterance."""
    max_utterance_ms: int = 15000
    """Speech is cut off at this length, silence or not."""
    no_input_ms: int = 5000
    """With no speech started this long after the stream began, the turn ends (0 = never)."""

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold <= 1.0:
            raise ConfigError(f"VAD threshold must be in (0, 1], got {self.threshold!r}")
        if not 0.0 < self.stay_threshold <= self.threshold:
            raise ConfigError(
                f"VAD stay_threshold must be in (0, threshold={self.threshold}], got {self.stay_threshold!r}"
            )
        for name in ("min_speech_ms", "end_silence_ms", "max_utterance_ms", "no_input_ms"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ConfigError(f"VAD {name} must be a whole number of ms >= 0, got {value!r}")
        if self.end_silence_ms == 0:
            raise ConfigError("VAD end_silence_ms must be > 0 (0 would end speech on its first quiet frame)")
        if self.max_utterance_ms <= self.min_speech_ms:
            raise ConfigError(
                f"VAD max_utterance_ms ({self.max_utterance_ms}) must exceed "
                f"min_speech_ms ({self.min_speech_ms})"
            )


@dataclass(frozen=True)
class SpeechStarted:
    start_ms: int
    """Where the speech began: the first frame of the run that started it."""
    detected_ms: int
    """Where the endpointer decided: the end of the frame that completed ``min_speech_ms``."""
    probability: float
    """Mean probability over the frames of that run."""


@dataclass(frozen=True)
class SpeechEnded:
    start_ms: int
    end_ms: int
    """Where the speech ended: the start of the closing silence, or the cut for max_length."""
    detected_ms: int
    reason: Literal["silence", "max_length"]
    probability: float = 0.0
    """Mean probability over the closing silence (silence), or of the last frame (max_length)."""


@dataclass(frozen=True)
class NoInput:
    at_ms: int
    peak_probability: float = 0.0
    """The highest probability seen: a near miss shows as a value close to the threshold."""


EndpointEvent = SpeechStarted | SpeechEnded | NoInput


class Endpointer:
    def __init__(self, settings: EndpointSettings | None = None) -> None:
        self.settings = settings or EndpointSettings()
        self.position_ms = 0
        self.done = False
        self._start: SpeechStarted | None = None
        self._run_from: int | None = None  # candidate onset: first frame >= threshold
        self._run_sum = 0.0
        self._quiet_from: int | None = None  # in speech: first frame below stay_threshold
        self._quiet_sum = 0.0
        self._peak = 0.0

    @property
    def in_speech(self) -> bool:
        return self._start is not None and not self.done

    def feed(self, probability: float, frame_ms: int) -> list[EndpointEvent]:
        """One frame's probability; returns the events it caused (often none)."""
        if self.done:
            raise AsrError("endpointer already ended its turn: make a new one per turn")
        if not isinstance(frame_ms, int) or frame_ms <= 0:
            raise AsrError(f"frame_ms must be a positive whole number, got {frame_ms!r}")
        if math.isnan(probability) or not 0.0 <= probability <= 1.0:
            raise AsrError(f"VAD probability must be in [0, 1], got {probability!r}")
        at = self.position_ms
        self.position_ms = end = at + frame_ms
        self._peak = max(self._peak, probability)
        if self._start is None:
            return self._waiting(probability, at, end)
        return self._speaking(probability, at, end)

    def _waiting(self, p: float, at: int, end: int) -> list[EndpointEvent]:
        s = self.settings
        if p >= s.threshold:
            if self._run_from is None:
                self._run_from, self._run_sum = at, 0.0
            self._run_sum += p * (end - at)
            if end - self._run_from >= max(s.min_speech_ms, 1):
                self._start = SpeechStarted(self._run_from, end, self._run_sum / (end - self._run_from))
                self._quiet_from = None
                return [self._start]
        else:
            self._run_from = None
        # A run under way may still become speech: no-input waits for it to fail.
        if s.no_input_ms and self._run_from is None and end >= s.no_input_ms:
            self.done = True
            return [NoInput(end, self._peak)]
        return []

    def _speaking(self, p: float, at: int, end: int) -> list[EndpointEvent]:
        s, start = self.settings, self._start
        assert start is not None
        if p >= s.stay_threshold:
            self._quiet_from = None
        else:
            if self._quiet_from is None:
                self._quiet_from, self._quiet_sum = at, 0.0
            self._quiet_sum += p * (end - at)
            quiet_ms = end - self._quiet_from
            if quiet_ms >= s.end_silence_ms:
                self.done = True
                mean = self._quiet_sum / quiet_ms
                return [SpeechEnded(start.start_ms, self._quiet_from, end, "silence", mean)]
        if end - start.start_ms >= s.max_utterance_ms:
            self.done = True
            cut = self._quiet_from if self._quiet_from is not None else end
            return [SpeechEnded(start.start_ms, cut, end, "max_length", p)]
        return []
