"""Choosing a detector by name, as the configuration does.

``auto`` is the detector benchmarks/vad.md chose by measurement (scripts/bench-vad), or WebRTC's
where Silero's model is not installed (a plain ``pip install``: silero-vad is installed apart,
as its metadata asks for torch). A webrtc detector takes its aggressiveness after a colon:
``webrtc:2``.
"""

from __future__ import annotations

import structlog

from ivr_server.errors import AsrError, EngineUnavailable
from ivr_server.speech.vad.base import VoiceDetector
from ivr_server.speech.vad.energy import EnergyDetector
from ivr_server.speech.vad.mixed import MixedDetector
from ivr_server.speech.vad.silero import SileroDetector
from ivr_server.speech.vad.webrtc import WebRtcDetector

NAMES = ("energy", "webrtc", "silero", "mixed", "auto")
AUTO = "mixed"
log = structlog.get_logger(__name__)
_warned: list[str] = []


def load_detector(name: str, sample_rate: int) -> VoiceDetector:
    """A fresh detector for one stream; EngineUnavailable (with the install command) when its
    package or model is missing, AsrError for an unknown name or an unsupported rate."""
    kind, _, option = name.strip().lower().partition(":")
    if kind == "auto" and not option:
        try:
            return load_detector(AUTO, sample_rate)
        except EngineUnavailable as err:
            if not _warned:
                _warned.append(str(err))
                log.warning("vad.fallback", wanted=AUTO, using="webrtc", error=str(err))
            return WebRtcDetector(sample_rate)
    if option and kind != "webrtc":
        raise AsrError(f"VAD {kind} takes no option, got {name!r}")
    if kind == "energy":
        return EnergyDetector(sample_rate)
    if kind == "webrtc":
        if not option:
            return WebRtcDetector(sample_rate)
        if not option.isdigit():
            raise AsrError(f"webrtc VAD aggressiveness must be 0-3, got {name!r}")
        return WebRtcDetector(sample_rate, int(option))
    if kind == "silero":
        return SileroDetector(sample_rate)
    if kind == "mixed":
        return MixedDetector(sample_rate)
    raise AsrError(f"unknown VAD {name!r}: choose one of {', '.join(NAMES)} (webrtc:0-3 sets aggressiveness)")
