"""Band-limited resampling."""

from __future__ import annotations

import numpy as np
import pytest

from ivr_server.media.resample import resample


def tone(freq: float, rate: int, seconds: float = 1.0, amplitude: float = 10000) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def peak(pcm: np.ndarray, rate: int) -> tuple[float, float]:
    """(frequency, RMS) of the strongest component, edges trimmed."""
    x = pcm[len(pcm) // 10 : -len(pcm) // 10].astype(np.float64)
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spectrum) * rate / len(x)), float(np.sqrt(np.mean(x * x)))


@pytest.mark.parametrize(("src", "dst"), [(16000, 8000), (8000, 16000), (22050, 16000), (16000, 22050)])
def test_a_tone_keeps_its_pitch_and_level(src: int, dst: int) -> None:
    out = resample(tone(1000, src), src, dst)
    assert len(out) == src * 1 * dst // src
    freq, rms = peak(out, dst)
    assert abs(freq - 1000) < 5
    assert abs(20 * np.log10(rms / (10000 / np.sqrt(2)))) < 0.5


def test_content_above_the_new_nyquist_is_removed() -> None:
    """A 5 kHz tone cannot exist at 8 kHz; it must not fold back as a 3 kHz alias."""
    out = resample(tone(5000, 16000), 16000, 8000)
    _, rms = peak(out, 8000)
    assert 20 * np.log10(max(rms, 1e-3) / (10000 / np.sqrt(2))) < -40


def test_same_rate_and_empty_input() -> None:
    pcm = tone(440, 8000, 0.1)
    assert np.array_equal(resample(pcm, 8000, 8000), pcm)
    assert len(resample(np.zeros(0, np.int16), 16000, 8000)) == 0
    with pytest.raises(ValueError, match="positive"):
        resample(pcm, 0, 8000)


@pytest.mark.parametrize(("src", "dst"), [(8000, 16000), (16000, 8000), (22050, 8000), (22050, 16000)])
def test_streaming_equals_whole_buffer(src: int, dst: int) -> None:
    """Chunk by chunk (any chunk sizes) the stream resampler produces the whole-buffer output."""
    from ivr_server.media.resample import StreamResampler

    rng = np.random.default_rng(7)
    pcm = (rng.standard_normal(src // 2) * 3000).astype(np.int16)
    stream = StreamResampler(src, dst)
    cuts = np.sort(rng.choice(np.arange(1, len(pcm)), size=40, replace=False))
    pieces = [stream.process(chunk) for chunk in np.split(pcm, cuts)] + [stream.flush()]
    streamed = np.concatenate(pieces)
    whole = resample(pcm, src, dst)
    assert len(streamed) == len(whole)
    assert np.max(np.abs(streamed.astype(np.int32) - whole.astype(np.int32))) <= 1
