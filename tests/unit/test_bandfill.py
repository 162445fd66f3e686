"""Band filling for narrowband audio: only the upper band gets noise, at a level that follows the
speech, and how the stream is chunked does not change a sample."""

from __future__ import annotations

import numpy as np

from ivr_server.speech.asr.bandfill import BandFill


def band_energy(x: np.ndarray, rate: int, lo: float, hi: float) -> float:
    spectrum = np.abs(np.fft.rfft(x.astype(np.float64))) ** 2
    freqs = np.fft.rfftfreq(len(x), 1 / rate)
    return float(spectrum[(freqs >= lo) & (freqs < hi)].sum())


def tone(seconds: float, level: float, rate: int = 16000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (np.sin(2 * np.pi * 440 * t) * level).astype(np.int16)


def test_only_the_empty_band_is_filled_and_the_voice_band_is_untouched() -> None:
    x = tone(2.0, 8000)
    y = BandFill(16000, 4000).process(x)
    assert (
        band_energy(y - x.astype(np.int64), 16000, 0, 3900) < 1e-3 * band_energy(y, 16000, 4100, 8000) + 1e6
    )
    high_before, high_after = band_energy(x, 16000, 4100, 8000), band_energy(y, 16000, 4100, 8000)
    assert high_after > 100 * max(high_before, 1.0)


def test_the_fill_follows_the_speech_level_25_db_below() -> None:
    for level in (1000, 8000):
        x = tone(3.0, level)
        y = BandFill(16000, 4000).process(x).astype(np.float64) - x
        tail = y[-16000:]  # after the level settled
        ratio_db = 20 * np.log10(np.sqrt(np.mean(tail**2)) / (level / np.sqrt(2)))
        assert -26.5 < ratio_db < -23.5, ratio_db


def test_chunking_does_not_change_the_output() -> None:
    rng = np.random.default_rng(3)
    x = (rng.standard_normal(16000 * 2) * 2000).astype(np.int16)
    whole = BandFill().process(x)
    fill = BandFill()
    cuts = np.sort(rng.choice(np.arange(1, len(x)), 40, replace=False))
    parts = [fill.process(p) for p in np.split(x, cuts)]
    assert np.array_equal(np.concatenate(parts), whole)
    assert BandFill().process(np.zeros(0, np.int16)).size == 0
