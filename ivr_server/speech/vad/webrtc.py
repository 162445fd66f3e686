"""The WebRTC VAD (Google's GMM detector, via ``webrtcvad-wheels``): cheap and state-keeping.

It answers yes/no per 10, 20 or 30 ms; we ask per 10 ms and give the share of the two halves of
the frame it calls speech (0, 0.5 or 1), so a threshold of 0.5 means "either half" and 1.0
"both halves". ``aggressiveness`` 0-3 trades missed speech for fewer false alarms.

Its noise model starts from built-in defaults and calls the first 60-80 ms of a line with any
background noise speech (seen on FSDD recordings padded with their own background), so the
first ``_WARMUP_FRAMES`` of a stream are fed to it but reported as 0.
"""

from __future__ import annotations

from typing import Any

from ivr_server.errors import AsrError, EngineUnavailable
from ivr_server.media.g711 import Pcm
from ivr_server.speech.vad.base import check_frame, check_rate

DEFAULT_AGGRESSIVENESS = 3
_WARMUP_FRAMES = 5  # 100 ms


class WebRtcDetector:
    name = "webrtc"

    def __init__(self, sample_rate: int, aggressiveness: int = DEFAULT_AGGRESSIVENESS) -> None:
        check_rate(self.name, sample_rate, (8000, 16000, 32000, 48000))
        if aggressiveness not in (0, 1, 2, 3):
            raise AsrError(f"webrtc VAD aggressiveness must be 0, 1, 2 or 3, got {aggressiveness!r}")
        try:
            import webrtcvad
        except ImportError as err:
            raise EngineUnavailable(
                "the webrtc VAD needs the webrtcvad module: pip install webrtcvad-wheels"
            ) from err
        self.sample_rate = sample_rate
        self.aggressiveness = aggressiveness
        self._module: Any = webrtcvad
        self._vad: Any = webrtcvad.Vad(aggressiveness)
        self._half = sample_rate // 100 * 2  # bytes in 10 ms
        self._frames = 0

    def probability(self, pcm: Pcm) -> float:
        check_frame(self.name, self.sample_rate, pcm)
        data = pcm.astype("<i2").tobytes()
        first = self._vad.is_speech(data[: self._half], self.sample_rate)
        second = self._vad.is_speech(data[self._half :], self.sample_rate)
        self._frames += 1
        return (int(first) + int(second)) / 2.0 if self._frames > _WARMUP_FRAMES else 0.0

    def reset(self) -> None:
        self._vad = self._module.Vad(self.aggressiveness)
        self._frames = 0
