"""espeak-ng: the fallback that always works. Formant synthesis from the Debian package, run as
a subprocess per sentence (``--stdout``), so it needs no Python dependency, shares no state
with the server and cannot take the process down with it. About 20 ms of start-up per sentence.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator

import numpy as np

from ivr_server.errors import EngineUnavailable, SpeechError
from ivr_server.media.g711 import Pcm
from ivr_server.speech.tts.base import language_family

INSTALL_HINT = "apt-get install espeak-ng"
DEFAULT_VOICE = "en-us"
DEFAULT_WPM = 160
TIMEOUT_S = 30.0  # a sentence takes milliseconds; this only stops a hung process
_RIFF_FMT_RATE = slice(24, 28)


class EspeakEngine:
    name = "espeak"

    def __init__(self, voice: str | None = None, words_per_minute: int = DEFAULT_WPM) -> None:
        binary = shutil.which("espeak-ng")
        if binary is None:
            raise EngineUnavailable(f"espeak-ng is not installed: {INSTALL_HINT}")
        self._binary = binary
        self.voice = voice or DEFAULT_VOICE
        self._wpm = words_per_minute
        try:
            banner = subprocess.run(
                [binary, "--version"], capture_output=True, text=True, timeout=TIMEOUT_S, check=True
            ).stdout
            probe = self._run("a")  # fails here, not mid-call, on an unknown voice
        except (OSError, subprocess.SubprocessError, SpeechError) as err:
            raise EngineUnavailable(f"espeak-ng does not run with voice {self.voice!r}: {err}") from err
        self.native_rate = int.from_bytes(probe[_RIFF_FMT_RATE], "little")
        release = banner.split(":")[1].split()[0] if ":" in banner else "unknown"
        self.version = f"espeak-ng {release}/{self.voice}/{words_per_minute}wpm"
        self.languages = frozenset({language_family(self.voice)})

    def synthesize(self, text: str) -> Iterator[Pcm]:
        wav = self._run(text)
        data = wav.find(b"data")
        if wav[:4] != b"RIFF" or data < 0:
            raise SpeechError(f"espeak-ng returned no WAV audio for {text[:40]!r}")
        # On a pipe the header's sizes are placeholders: the samples are all that follows.
        body = wav[data + 8 :]
        yield np.frombuffer(body[: len(body) // 2 * 2], dtype="<i2").astype(np.int16)

    def _run(self, text: str) -> bytes:
        # Text on stdin, not argv: no length limit, and a leading "-" is not an option.
        cmd = [self._binary, "--stdout", "-b", "1", "-v", self.voice, "-s", str(self._wpm)]
        try:
            done = subprocess.run(
                cmd, input=text.encode(), capture_output=True, timeout=TIMEOUT_S, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as err:
            raise SpeechError(f"espeak-ng failed: {err}") from err
        if done.returncode != 0 or not done.stdout:  # an unknown voice exits 0 with nothing out
            message = done.stderr.decode(errors="replace").strip() or f"exit status {done.returncode}"
            raise SpeechError(f"espeak-ng -v {self.voice} failed: {message}")
        return done.stdout
