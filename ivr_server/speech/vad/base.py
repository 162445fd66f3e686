"""The VAD contract: one 20 ms frame in, a speech probability out.

A detector keeps its own state across the frames of one stream (noise floor, model state,
samples buffered up to the model's window), so a call opens one detector per stream and calls
``reset()`` only when the stream restarts. Frames have the size a call delivers: 20 ms of
16-bit mono PCM at the detector's rate; anything else is a bug upstream and fails loudly.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from ivr_server.errors import AsrError
from ivr_server.media.g711 import Pcm

FRAME_MS = 20  # what ExternalMedia delivers, and what every detector is fed


class VoiceDetector(Protocol):
    name: str
    sample_rate: int

    def probability(self, pcm: Pcm) -> float:
        """Speech probability (0..1) of one 20 ms frame, given everything fed before it."""
        ...

    def reset(self) -> None:
        """Forget the stream: the next frame starts a new one."""
        ...


def frame_samples(sample_rate: int) -> int:
    return sample_rate * FRAME_MS // 1000


def check_rate(name: str, sample_rate: int, rates: tuple[int, ...]) -> None:
    if sample_rate not in rates:
        supported = ", ".join(str(r) for r in rates)
        raise AsrError(f"VAD {name} does not take {sample_rate} Hz audio (takes {supported} Hz)")


def check_frame(name: str, sample_rate: int, pcm: Pcm) -> None:
    """Reject anything but one 20 ms frame of int16 samples, naming what was given."""
    want = frame_samples(sample_rate)
    if pcm.ndim != 1 or pcm.dtype != np.int16 or len(pcm) != want:
        raise AsrError(
            f"VAD {name} at {sample_rate} Hz takes {FRAME_MS} ms frames of {want} int16 samples, "
            f"got shape {pcm.shape} of {pcm.dtype}"
        )
