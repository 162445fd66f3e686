"""Silero gated by energy: speech needs both a speech-like sound and a level above the line's floor.

Silero tells speech from stationary noise, hum and clipping well but calls background talkers
speech too (they are); the energy detector's adaptive floor rises under a steady babble, so only
the foreground voice stands above it. The smaller of the two probabilities rules, with the
energy margin set lower (``gate_snr_db``) than for energy alone: it only vetoes, it does not
decide.
"""

from __future__ import annotations

from ivr_server.media.g711 import Pcm
from ivr_server.speech.vad.energy import EnergyDetector
from ivr_server.speech.vad.silero import SileroDetector


class MixedDetector:
    name = "mixed"

    def __init__(self, sample_rate: int, gate_snr_db: float = 6.0) -> None:
        self.sample_rate = sample_rate
        self._silero = SileroDetector(sample_rate)
        self._energy = EnergyDetector(sample_rate, snr_db=gate_snr_db)

    def probability(self, pcm: Pcm) -> float:
        return min(self._silero.probability(pcm), self._energy.probability(pcm))

    def reset(self) -> None:
        self._silero.reset()
        self._energy.reset()
