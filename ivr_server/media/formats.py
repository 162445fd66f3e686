"""The ExternalMedia formats: what goes in an RTP payload and how to turn it into PCM."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ivr_server.errors import RtpParseError
from ivr_server.media.g711 import Pcm, ulaw_decode, ulaw_encode

FRAME_MS = 20


@dataclass(frozen=True)
class MediaFormat:
    name: str  # as ARI's externalMedia `format` parameter spells it
    sample_rate: int
    payload_type: int  # what Asterisk sends and expects for this format
    bytes_per_sample: int

    @property
    def frame_samples(self) -> int:
        return self.sample_rate * FRAME_MS // 1000

    @property
    def frame_bytes(self) -> int:
        return self.frame_samples * self.bytes_per_sample

    def decode(self, payload: bytes) -> Pcm:
        if not payload:
            raise RtpParseError(f"empty {self.name} payload")
        if self.name == "ulaw":
            return ulaw_decode(payload)
        if len(payload) % 2:
            raise RtpParseError(f"{self.name} payload of odd length {len(payload)}")
        return np.frombuffer(payload, dtype=">i2").astype(np.int16)

    def encode(self, pcm: Pcm) -> bytes:
        if self.name == "ulaw":
            return ulaw_encode(pcm)
        return np.ascontiguousarray(pcm, dtype=np.int16).astype(">i2").tobytes()

    def silence(self) -> Pcm:
        return np.zeros(self.frame_samples, dtype=np.int16)


# Asterisk's RTP engine maps slin16 to dynamic payload type 118 (measured on Asterisk 22).
ULAW = MediaFormat("ulaw", 8000, 0, 1)
SLIN16 = MediaFormat("slin16", 16000, 118, 2)
FORMATS = {f.name: f for f in (ULAW, SLIN16)}
