"""Telephone audio into a wideband acoustic model: fill the empty band above 4 kHz.

PocketSphinx's bundled model was trained on 16 kHz speech; its mel filters reach 6.8 kHz. A call
brings 8 kHz audio (nothing above 4 kHz), so after upsampling those filters see near-zero
energy, their log goes to extremes and the cepstra stop looking like speech. Filling the band
with noise that follows the speech level (here 25 dB below it) keeps those filters in the range
the model knows. Measured on all 1500 FSDD recordings with the digits grammar (`asr eval`):
36.3 % -> 55.3 % utterance accuracy; and Piper's "I want to speak to an agent" through 8 kHz
µ-law goes from "i want to beat one who did" to word-perfect.

Chunking does not change the output: the level is updated at fixed 20 ms block boundaries.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from ivr_server.media.g711 import Pcm

BLOCK_S = 0.02


class BandFill:
    def __init__(
        self,
        sample_rate: int = 16000,
        cutoff_hz: float = 4000.0,
        gain_db: float = -25.0,
        time_constant_s: float = 0.5,
        floor_dbfs: float = -70.0,
        seed: int = 0,
    ) -> None:
        self.block = int(sample_rate * BLOCK_S)
        self._alpha = BLOCK_S / time_constant_s
        self._gain = 10 ** (gain_db / 20)
        self._floor = 32768 * 10 ** (floor_dbfs / 20)
        self._noise = _band_noise(sample_rate, cutoff_hz, seed)
        self._pos = 0  # samples processed: position in the looping noise
        self._in_block = 0  # samples of the current block seen so far
        self._block_energy = 0.0
        self._level: float | None = None  # running RMS of the speech

    def process(self, pcm: Pcm) -> Pcm:
        x = pcm.astype(np.float64)
        out = x.copy()
        start = 0
        while start < len(x):
            take = min(self.block - self._in_block, len(x) - start)
            part = x[start : start + take]
            amplitude = max(self._level or 0.0, self._floor) * self._gain
            idx = (self._pos + np.arange(take)) % len(self._noise)
            out[start : start + take] += self._noise[idx] * amplitude
            self._block_energy += float(np.dot(part, part))
            self._in_block += take
            self._pos = (self._pos + take) % len(self._noise)
            start += take
            if self._in_block == self.block:  # block complete: update the level
                rms = (self._block_energy / self.block) ** 0.5
                self._level = rms if self._level is None else self._level + self._alpha * (rms - self._level)
                self._in_block, self._block_energy = 0, 0.0
        result: Pcm = np.clip(np.rint(out), -32768, 32767).astype(np.int16)
        return result


def _band_noise(rate: int, cutoff_hz: float, seed: int) -> npt.NDArray[np.float64]:
    """One second of white noise above ``cutoff_hz`` with unit RMS, looped by the caller."""
    noise = np.random.default_rng(seed).standard_normal(rate)
    spectrum = np.fft.rfft(noise)
    spectrum[: int(len(spectrum) * cutoff_hz / (rate / 2))] = 0
    band = np.fft.irfft(spectrum, rate)
    normalized: npt.NDArray[np.float64] = band / np.sqrt(np.mean(band**2))
    return normalized
