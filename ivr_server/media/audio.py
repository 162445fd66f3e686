"""Whole-buffer audio helpers: reading WAV files, frame energy."""

from __future__ import annotations

import io
import math
import wave
from pathlib import Path

import numpy as np

from ivr_server.errors import MediaError
from ivr_server.media.g711 import Pcm


def read_wav(path: Path) -> tuple[int, Pcm]:
    """(sample rate, samples) of a 16-bit mono PCM WAV file."""
    try:
        with wave.open(str(path), "rb") as wav:
            if wav.getnchannels() != 1 or wav.getsampwidth() != 2:
                raise MediaError(
                    f"{path}: need 16-bit mono PCM, got {wav.getnchannels()} channel(s) of "
                    f"{8 * wav.getsampwidth()} bits"
                )
            rate = wav.getframerate()
            data = wav.readframes(wav.getnframes())
    except (wave.Error, EOFError) as err:
        raise MediaError(f"{path}: not a PCM WAV file ({err})") from err
    except OSError as err:
        raise MediaError(f"{path}: cannot be read ({err})") from err
    return rate, np.frombuffer(data, dtype="<i2").astype(np.int16)


def frame_dbfs(pcm: Pcm) -> float:
    """RMS level of a frame relative to full scale; -120 for digital silence."""
    if len(pcm) == 0:
        return -120.0
    x = pcm.astype(np.float32)
    rms = math.sqrt(float(np.dot(x, x)) / len(x)) / 32768.0
    return 20.0 * math.log10(rms) if rms > 1e-6 else -120.0


def write_wav(path: Path, rate: int, pcm: Pcm) -> None:
    """A 16-bit mono PCM WAV file; MediaError names the path when it cannot be written."""
    try:
        path.write_bytes(wav_bytes(rate, pcm))
    except OSError as err:
        raise MediaError(f"{path}: cannot be written ({err})") from err


def wav_bytes(rate: int, pcm: Pcm) -> bytes:
    """A 16-bit mono PCM WAV file's bytes (what Asterisk's media cache fetches as ``.wav``)."""
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(pcm.astype("<i2").tobytes())
    return out.getvalue()


def audio_warnings(pcm: Pcm, rate: int) -> list[str]:
    """What about a recording will make recognition poor, in words an admin can act on."""
    if len(pcm) == 0:
        return ["the file holds no audio"]
    warnings = []
    peak = int(np.abs(pcm.astype(np.int32)).max())
    if peak < 100:  # about -50 dBFS: nothing but silence or line noise
        warnings.append(f"the audio is silent (peak {20 * math.log10(max(peak, 1) / 32768):.0f} dBFS)")
    clipped = float(np.mean(np.abs(pcm.astype(np.int32)) >= 32767))
    if clipped > 0.001:
        warnings.append(f"the audio is clipped ({clipped:.1%} of samples at full scale)")
    if len(pcm) / rate > 60:
        warnings.append(f"{len(pcm) / rate:.0f} s of audio: a call turn is cut at vad_max_utterance_ms")
    return warnings
