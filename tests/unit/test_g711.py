"""G.711 µ-law tables."""

from __future__ import annotations

import warnings

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from ivr_server.media.g711 import ulaw_decode, ulaw_encode

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop  # CPython's C implementation of the same reference: an independent check


def test_encoder_matches_the_reference_for_every_sample() -> None:
    """All 65,536 16-bit values encode exactly as CPython's audioop (the Sun reference)."""
    pcm = np.arange(-32768, 32768, dtype=np.int16)
    assert ulaw_encode(pcm) == audioop.lin2ulaw(pcm.tobytes(), 2)


def test_decoder_matches_the_reference_for_every_code() -> None:
    codes = bytes(range(256))
    expected = np.frombuffer(audioop.ulaw2lin(codes, 2), dtype=np.int16)
    assert np.array_equal(ulaw_decode(codes), expected)


def test_known_codes() -> None:
    assert list(ulaw_decode(bytes([0xFF, 0x7F, 0x00, 0x80]))) == [0, 0, -32124, 32124]


@given(arrays(np.int16, st.integers(1, 400)))
def test_round_trip_error_is_within_the_quantisation_step(pcm: np.ndarray) -> None:
    """Decoding an encoding lands within G.711's step for that magnitude (about 1/16 of it)."""
    back = ulaw_decode(ulaw_encode(pcm)).astype(np.int32)
    error = np.abs(back - pcm.astype(np.int32))
    assert np.all(error <= np.maximum(np.abs(pcm.astype(np.int32)) // 16, 8) + 4)


def test_every_code_survives_decode_then_encode() -> None:
    """What a µ-law leg carries survives decode/encode unchanged (why bridged audio matches),
    except negative zero (0x7F), which comes back as positive zero (0xFF)."""
    codes = bytes(range(256))
    back = ulaw_encode(ulaw_decode(codes))
    assert [c for c, b in zip(codes, back, strict=True) if c != b] == [0x7F]
    assert back[0x7F] == 0xFF
