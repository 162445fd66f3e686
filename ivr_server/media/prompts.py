"""Prompt audio from prompts/: checked at start-up, converted once per sample rate."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from ivr_server.errors import MediaError
from ivr_server.media.audio import read_wav
from ivr_server.media.g711 import Pcm
from ivr_server.media.resample import resample

MANIFEST = "prompts.toml"


PROMPT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


def read_texts(directory: Path) -> dict[str, str]:
    """Prompt id -> text from ``directory``/prompts.toml; MediaError says what is wrong."""
    manifest = directory / MANIFEST
    try:
        with manifest.open("rb") as fh:
            texts = tomllib.load(fh).get("prompts", {})
    except FileNotFoundError as err:
        raise MediaError(f"no prompt manifest at {manifest} (check IVR_PROMPTS_DIR)") from err
    except tomllib.TOMLDecodeError as err:
        raise MediaError(f"{manifest} is not valid TOML: {err}") from err
    if not isinstance(texts, dict) or not texts:
        raise MediaError(f'{manifest} has no [prompts] table of id = "text" lines')
    # An id names a file (<id>.wav beside the manifest): "../x" or "/x" would write elsewhere.
    bad = sorted(k for k in texts if not PROMPT_ID.fullmatch(str(k)))
    if bad:
        raise MediaError(f"{manifest}: prompt ids {', '.join(map(repr, bad[:5]))} are not names "
                         "(letters, digits, _ and -, starting with a letter or digit)")  # fmt: skip
    return {str(k): str(v) for k, v in texts.items()}


class PromptLibrary:
    """Every prompt named in prompts.toml, loaded from ``<id>.wav`` beside it."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.texts = read_texts(directory)
        self._audio: dict[str, tuple[int, Pcm]] = {}
        missing = [pid for pid in self.texts if not (directory / f"{pid}.wav").is_file()]
        if missing:
            raise MediaError(
                f"prompts without audio in {directory}: {', '.join(sorted(missing))}; "
                "run: ivr-server prompts render"
            )
        for pid in self.texts:
            self._audio[pid] = read_wav(directory / f"{pid}.wav")
        self._converted: dict[tuple[str, int], Pcm] = {}

    def __contains__(self, prompt_id: object) -> bool:
        return prompt_id in self._audio

    def audio(self, prompt_id: str, rate: int) -> Pcm:
        """The prompt's samples at ``rate`` Hz (converted once, then cached)."""
        key = (prompt_id, rate)
        if key not in self._converted:
            if prompt_id not in self._audio:
                raise MediaError(f"unknown prompt {prompt_id!r}; known: {', '.join(sorted(self._audio))}")
            src_rate, pcm = self._audio[prompt_id]
            self._converted[key] = resample(pcm, src_rate, rate)
        return self._converted[key]

    def prepare(self, rate: int) -> None:
        """Convert every prompt to ``rate`` now, so no call waits for a conversion."""
        for prompt_id in self._audio:
            self.audio(prompt_id, rate)

    def duration_s(self, prompt_id: str) -> float:
        rate, pcm = self._audio[prompt_id]
        return len(pcm) / rate
