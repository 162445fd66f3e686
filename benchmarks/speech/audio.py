"""Caller audio for the speech benchmark: the sentences callers say, the synthetic voices that
say them, the public recordings (FSDD digits, banking77 requests), all as a phone delivers them
(8 kHz, through mu-law)."""

from __future__ import annotations

import csv
import random
from pathlib import Path

import numpy as np

from ivr_server.evaluation.voices import Renderer, Voice
from ivr_server.media.audio import frame_dbfs, read_wav
from ivr_server.media.g711 import Pcm, ulaw_decode, ulaw_encode
from ivr_server.media.resample import resample
from tests.support.data import shared_data

RATE = 8000
FRAME = RATE * 20 // 1000  # samples per 20 ms frame
LOUD_DBFS = -45.0  # a frame above this carries speech (as tests/e2e/test_voice_call.py)
FSDD = shared_data() / "fsdd" / "recordings"
BANKING = shared_data() / "banking77" / "train.csv"
DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

# Caller sentences (English, Piper). The call section needs distinct ones: a repeated reply
# would come from the prompt cache.
SENTENCES = (
    "I would like to pay my bill.",
    "I want to check my account balance.",
    "Please send me a new credit card.",
    "My card was stolen yesterday.",
    "I need to change my address.",
    "Can you tell me about my last payment?",
    "I would like to speak to an agent.",
    "What time do you open tomorrow?",
    "I want to report a problem with my phone.",
    "Please cancel my order.",
    "How much do I owe this month?",
    "I forgot my password.",
    "I need help with my internet connection.",
    "Can I make a payment today?",
    "I would like to open a new account.",
    "My bill is too high this month.",
    "Please transfer me to the billing department.",
    "I want to stop my service.",
    "When will my order arrive?",
    "I have a question about my statement.",
)
KOREAN = (
    "안녕하세요 계좌 잔액을 확인하고 싶습니다",
    "카드를 잃어버렸어요",
    "상담원과 통화하고 싶습니다",
    "내일 몇 시에 문을 여나요",
)
# espeak-ng at its default 175 words per minute; Piper with its sampling noise off.
PIPER = Voice("piper", "joe-us", 1.0)
ESPEAK_EN = Voice("espeak", "en-us", 175)
ESPEAK_KO = Voice("espeak", "ko", 175)


def telephone(pcm: Pcm) -> Pcm:
    """8 kHz audio through mu-law and back: what reaches the server from a phone."""
    return ulaw_decode(ulaw_encode(pcm))


class Voices:
    """Caller audio, rendered once per process: Piper English, espeak-ng English and Korean.
    ``work`` is a scratch directory the call section writes its SIPp files into."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self._renderer = Renderer()
        self._cache: dict[tuple[str, str], Pcm] = {}

    def _say(self, voice: Voice, text: str) -> Pcm:
        key = (voice.label, text)
        if key not in self._cache:
            pcm, rate = self._renderer.render(voice, text)
            self._cache[key] = telephone(resample(pcm, rate, RATE))
        return self._cache[key]

    def piper(self, text: str) -> Pcm:
        return self._say(PIPER, text)

    def espeak(self, text: str) -> Pcm:
        return self._say(ESPEAK_EN, text)

    def korean(self, text: str) -> Pcm:
        return self._say(ESPEAK_KO, text)


def fsdd_clips(n: int, seed: int) -> list[tuple[str, Pcm]]:
    """``n`` FSDD recordings (8 kHz spoken digits), a fixed seeded choice: (digit word, audio)."""
    if not FSDD.is_dir():
        return []
    files = sorted(FSDD.glob("*.wav"))
    out = []
    for path in random.Random(seed).sample(files, min(n, len(files))):
        rate, pcm = read_wav(path)
        out.append((DIGIT_NAMES[int(path.name.split("_")[0])], telephone(resample(pcm, rate, RATE))))
    return out


def banking_clips(n: int, seed: int, voices: Voices) -> list[tuple[str, Pcm]]:
    """``n`` banking77 customer requests (a fixed seeded choice), half spoken by Piper, half by
    espeak-ng: varied open-vocabulary English for word error rates."""
    if not BANKING.is_file():
        return []
    with BANKING.open(newline="", encoding="utf-8") as fh:
        texts = [row["text"].strip() for row in csv.DictReader(fh)]
    chosen = random.Random(seed).sample(texts, min(n, len(texts)))
    return [(t, voices.piper(t) if i % 2 == 0 else voices.espeak(t)) for i, t in enumerate(chosen)]


def loud_span_s(pcm: Pcm) -> float:
    """From the start of the first 20 ms frame above LOUD_DBFS to the start of the last one."""
    frames = len(pcm) // FRAME
    loud = [i for i in range(frames) if frame_dbfs(pcm[i * FRAME : (i + 1) * FRAME]) > LOUD_DBFS]
    return (loud[-1] - loud[0]) * FRAME / RATE if loud else 0.0


def with_silence(speech: Pcm, seconds: float) -> Pcm:
    """``speech`` then ``seconds`` of silence, cut to whole 20 ms frames."""
    pcm = np.concatenate([speech, np.zeros(int(seconds * RATE), dtype=np.int16)])
    return pcm[: len(pcm) // FRAME * FRAME]
