"""Caller audio cut into the 20 ms frames everything downstream takes (VAD, meters, ASR feed).

A peer picks its own packet size: 10 or 30 ms ptime, or a broken or hostile one with an odd
number of bytes. The remainder of a packet waits for the next one (under one frame is held).
"""

from __future__ import annotations

import numpy as np

from ivr_server.media.g711 import Pcm

FRAME_MS = 20


class Reframer:
    def __init__(self, sample_rate: int, frame_ms: int = FRAME_MS) -> None:
        self.size = sample_rate * frame_ms // 1000
        self._held = np.zeros(0, np.int16)

    def push(self, pcm: Pcm) -> list[Pcm]:
        """The whole frames that ``pcm`` completes, oldest first."""
        if not len(self._held) and len(pcm) == self.size:  # the usual 20 ms packet: no copy
            return [pcm]
        audio = np.concatenate([self._held, pcm]) if len(self._held) else pcm
        whole = len(audio) - len(audio) % self.size
        self._held = audio[whole:].copy()
        return [audio[i : i + self.size] for i in range(0, whole, self.size)]
