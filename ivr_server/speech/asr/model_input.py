"""A call's audio as PocketSphinx's 16 kHz model takes it: resampled as it streams and, when the
call is narrowband (a telephone's 8 kHz), its empty band above 4 kHz filled (bandfill.py).

One place for this, because the recognizer and the acoustic adaptation (speech/acoustic/) must
feed the model the same signal: the adaptation is estimated on what this produces.
"""

from __future__ import annotations

from ivr_server.media.g711 import Pcm
from ivr_server.media.resample import StreamResampler
from ivr_server.speech.asr.bandfill import BandFill

MODEL_RATE = 16000


class ModelInput:
    def __init__(self, sample_rate: int, model_rate: int = MODEL_RATE) -> None:
        self.narrowband = sample_rate < model_rate
        self._resampler = StreamResampler(sample_rate, model_rate)
        self._fill = BandFill(model_rate, sample_rate / 2) if self.narrowband else None

    def process(self, pcm: Pcm) -> Pcm:
        return self._band(self._resampler.process(pcm))

    def flush(self) -> Pcm:
        """What the resampler still holds, at the end of the stream."""
        return self._band(self._resampler.flush())

    def _band(self, samples: Pcm) -> Pcm:
        return self._fill.process(samples) if self._fill is not None and len(samples) else samples

    def whole(self, pcm: Pcm) -> Pcm:
        """A whole recording, chunked as a call streams it (20 ms at 8 kHz: the same output)."""
        import numpy as np

        step = 160
        parts = [self.process(pcm[i : i + step]) for i in range(0, len(pcm), step)]
        parts.append(self.flush())
        return np.concatenate([p for p in parts if len(p)] or [pcm[:0]])
