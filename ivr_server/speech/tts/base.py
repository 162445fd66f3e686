"""The TTS contract every engine meets.

An engine is loaded once per process (voices are large) and is called from worker threads,
never from the event loop: ``synthesize`` blocks. It takes one piece of text (the synthesizer
has already split it into sentences and applied the lexicon) and yields 16-bit mono PCM at the
engine's ``native_rate``, in one or more chunks; the synthesizer resamples to the call's rate.

``version`` names everything that changes the audio for a given text (package version, voice
file digest, synthesis settings): it is part of every prompt-cache key, so a new voice or
setting never plays stale audio.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ivr_server.media.g711 import Pcm


class TtsEngine(Protocol):
    name: str
    voice: str
    version: str
    native_rate: int
    languages: frozenset[str]

    def synthesize(self, text: str) -> Iterator[Pcm]:
        """Speak ``text``: int16 chunks at ``native_rate``. Blocks; raises on failure."""
        ...


@dataclass(frozen=True)
class SpeechChunk:
    """One sentence of speech, ready to play."""

    pcm: Pcm
    """Samples at ``rate`` (read-only: it may be shared with the cache)."""
    rate: int
    """Sample rate of ``pcm`` in Hz: the call's rate."""
    sentence: str
    """The sentence as written, before the lexicon (for logs and transcripts)."""
    engine: str
    """The engine that spoke it: the primary, or the fallback after a failure."""
    cached: bool
    """Served from the prompt cache rather than synthesized now."""
    final: bool = True
    """The last chunk of its sentence (a stream's first sentence may come in two)."""

    @property
    def duration_s(self) -> float:
        return len(self.pcm) / self.rate


def language_family(tag: str) -> str:
    """ "en-us" / "en_US" -> "en": the part engines and settings agree on."""
    return tag.replace("_", "-").split("-")[0].lower()


_FULL_HASH_BYTES = 256 * 1024 * 1024  # above this, hash the ends and the size: seconds saved at start-up
_BLOCK = 1 << 20


def fingerprint(path: Path) -> str:
    """12 hex digits identifying a model file's content, for ``version``: a replaced voice or
    checkpoint changes every cache key. Large checkpoints are sampled (size, first and last MiB)."""
    h = hashlib.sha256()
    size = path.stat().st_size
    with path.open("rb") as fh:
        if size <= _FULL_HASH_BYTES:
            for block in iter(lambda: fh.read(_BLOCK), b""):
                h.update(block)
        else:
            h.update(str(size).encode())
            h.update(fh.read(_BLOCK))
            fh.seek(size - _BLOCK)
            h.update(fh.read(_BLOCK))
    return h.hexdigest()[:12]
