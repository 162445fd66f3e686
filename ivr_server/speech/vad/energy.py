"""Energy VAD with an adaptive noise floor: speech is energy well above the line's own noise.

The level is measured in the telephone voice band (250-3800 Hz) so mains hum and DC do not count.
The noise floor is a low percentile of the band levels over the last two seconds (minimum
statistics): it follows a line that gets noisier within that time, while a word, shorter than
the window and broken by gaps, cannot lift it. The probability is a logistic of the level's
margin above the floor, so the endpointer's threshold sets the margin (0.5 = ``snr_db``).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from ivr_server.media.g711 import Pcm
from ivr_server.speech.vad.base import FRAME_MS, check_frame, check_rate, frame_samples

_BAND_HZ = (250.0, 3800.0)
_MIN_FLOOR_DBFS = -65.0  # below this a line is quiet; a margin over digital silence means nothing
_SLOPE_DB = 2.0  # logistic width: 0.12 at snr_db - 4 dB, 0.88 at snr_db + 4 dB
_PERCENTILE = 0.1


class EnergyDetector:
    name = "energy"

    def __init__(self, sample_rate: int, snr_db: float = 10.0, window_ms: int = 2000) -> None:
        check_rate(self.name, sample_rate, (8000, 16000, 32000, 48000))
        self.sample_rate = sample_rate
        self.snr_db = snr_db
        n = frame_samples(sample_rate)
        self._window: npt.NDArray[np.float64] = np.hanning(n)
        freqs = np.fft.rfftfreq(n, 1.0 / sample_rate)
        self._band = (freqs >= _BAND_HZ[0]) & (freqs <= _BAND_HZ[1])
        # Mean square in the band, relative to full scale (as frame_dbfs).
        self._scale = 2.0 / (n * float(np.dot(self._window, self._window)) * 32768.0**2)
        self._levels = np.full(max(1, window_ms // FRAME_MS), np.nan)
        self._count = 0

    def probability(self, pcm: Pcm) -> float:
        check_frame(self.name, self.sample_rate, pcm)
        level = self.band_dbfs(pcm)
        self._levels[self._count % len(self._levels)] = level
        self._count += 1
        seen = self._levels[: min(self._count, len(self._levels))]
        k = int(_PERCENTILE * (len(seen) - 1))
        floor = float(np.partition(seen, k)[k])
        margin = level - max(floor, _MIN_FLOOR_DBFS)
        return 1.0 / (1.0 + math.exp(-(margin - self.snr_db) / _SLOPE_DB))

    def band_dbfs(self, pcm: Pcm) -> float:
        spectrum = np.fft.rfft(pcm.astype(np.float64) * self._window)[self._band]
        power = float(np.sum(spectrum.real**2 + spectrum.imag**2)) * self._scale
        return 10.0 * math.log10(power) if power > 1e-12 else -120.0

    def reset(self) -> None:
        self._levels[:] = np.nan
        self._count = 0
