"""Energy-based measure of when the caller speaks: pure logic, frame levels in, segments out.

A crude detector on purpose (the speech issue brings a measured VAD); it answers "how long did
the caller talk" well enough on telephone audio.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SpeechSegment:
    start_ms: int  # from the start of the stream
    end_ms: int

    @property
    def duration_ms(self) -> int:
        return self.end_ms - self.start_ms


class SpeechMeter:
    """Speech starts after ``min_speech_ms`` of frames above the threshold and ends after
    ``hangover_ms`` below it; the segment ends where the silence began."""

    def __init__(self, threshold_dbfs: float, min_speech_ms: int, hangover_ms: int) -> None:
        self.threshold_dbfs = threshold_dbfs
        self.min_speech_ms = min_speech_ms
        self.hangover_ms = hangover_ms
        self.position_ms = 0
        self.speech_ms = 0
        self.segments = 0
        self._in_speech = False
        self._loud_since: int | None = None
        self._quiet_since: int | None = None
        self._start_ms = 0

    @property
    def in_speech(self) -> bool:
        return self._in_speech

    def feed(self, level_dbfs: float, frame_ms: int) -> SpeechSegment | None:
        """One frame's level; returns a segment when one has just ended."""
        at = self.position_ms
        self.position_ms += frame_ms
        loud = level_dbfs >= self.threshold_dbfs
        if not self._in_speech:
            if not loud:
                self._loud_since = None
                return None
            if self._loud_since is None:
                self._loud_since = at
            if self.position_ms - self._loud_since >= max(self.min_speech_ms, frame_ms):
                self._in_speech = True
                self._start_ms = self._loud_since
                self._quiet_since = None
            return None
        if loud:
            self._quiet_since = None
            return None
        if self._quiet_since is None:
            self._quiet_since = at
        if self.position_ms - self._quiet_since >= self.hangover_ms:
            return self._close(self._quiet_since)
        return None

    def finish(self) -> SpeechSegment | None:
        """End of stream: close a segment still open."""
        if not self._in_speech:
            return None
        end = self._quiet_since if self._quiet_since is not None else self.position_ms
        return self._close(end)

    def _close(self, end_ms: int) -> SpeechSegment:
        segment = SpeechSegment(self._start_ms, end_ms)
        self._in_speech = False
        self._loud_since = None
        self._quiet_since = None
        self.speech_ms += segment.duration_ms
        self.segments += 1
        return segment
