"""Accuracy and speed of an ASR engine over a manifest of recordings (``path,text`` CSV).

Audio is streamed in 20 ms chunks as a call streams it. Decode latency is the time ``finish()``
takes after the last chunk: what a caller waits for once they stop speaking, endpointing aside.
"""

from __future__ import annotations

import csv
import re
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ivr_server.errors import AsrError, MediaError
from ivr_server.media.audio import read_wav
from ivr_server.speech.asr.base import AsrEngine, feed_all, require

_KEEP = re.compile(r"[^a-z0-9'\s\u00c0-\uffff]")
# Spoken forms that mean the same digit.
DIGIT_SYNONYMS = {"oh": "zero", "o": "zero"}


def normalize(text: str, synonyms: dict[str, str] | None = None) -> list[str]:
    """Lower case, punctuation gone, optional synonym folding: the words WER compares."""
    words = _KEEP.sub(" ", text.lower()).split()
    return [(synonyms or {}).get(w, w) for w in words]


def word_errors(reference: Sequence[str], hypothesis: Sequence[str]) -> int:
    """Substitutions + deletions + insertions (word-level Levenshtein distance)."""
    previous = list(range(len(hypothesis) + 1))
    for i, ref_word in enumerate(reference, 1):
        current = [i]
        for j, hyp_word in enumerate(hypothesis, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ref_word != hyp_word)))
        previous = current
    return previous[-1]


@dataclass
class EvalReport:
    engine: str
    model: str
    grammar: str | None
    utterances: int
    words: int
    word_errors: int
    wer: float
    utterance_accuracy: float
    audio_s: float
    rtf: float
    latency_p50_ms: float
    latency_p95_ms: float
    mistakes: list[dict[str, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_manifest(manifest: Path) -> list[tuple[Path, str]]:
    try:
        with manifest.open(newline="") as fh:
            rows = list(csv.DictReader(fh))
    except OSError as err:
        raise MediaError(f"manifest {manifest} cannot be read: {err}") from err
    if not rows:
        raise MediaError(f"manifest {manifest} has no rows (expected a header 'path,text' and lines)")
    if not {"path", "text"} <= set(rows[0]):
        raise MediaError(f"manifest {manifest} needs columns path,text; it has {','.join(rows[0])}")
    items = []
    for line, row in enumerate(rows, 2):
        path = manifest.parent / (row["path"] or "")
        if not row["path"] or not path.is_file():
            raise MediaError(f"{manifest}:{line}: no audio file {path}")
        items.append((path, row["text"] or ""))
    return items


def evaluate(
    engine: AsrEngine,
    manifest: Path,
    phrases: Sequence[str] | None = None,
    grammar_name: str | None = None,
    chunk_ms: int = 20,
) -> EvalReport:
    synonyms = DIGIT_SYNONYMS if grammar_name == "digits" else None
    total_words = errors = exact = 0
    audio_s = decode_s = 0.0
    latencies: list[float] = []
    mistakes: list[dict[str, str]] = []
    models: list[str] = []  # what actually decoded (a grammar may add a model, a profile a suffix)
    items = read_manifest(manifest)
    for path, text in items:
        rate, pcm = read_wav(path)
        require(engine, rate)
        if len(pcm) == 0:
            raise MediaError(f"{path}: the file holds no audio")
        recognizer = engine.recognizer(rate, phrases)
        started = time.perf_counter()
        feed_all(recognizer, pcm, rate, chunk_ms)
        before_finish = time.perf_counter()
        result = recognizer.finish()
        done = time.perf_counter()
        if result.model not in models:
            models.append(result.model)
        latencies.append(done - before_finish)
        decode_s += done - started
        audio_s += len(pcm) / rate
        ref, hyp = normalize(text, synonyms), normalize(result.text, synonyms)
        errs = word_errors(ref, hyp)
        total_words += len(ref)
        errors += errs
        exact += errs == 0
        if errs:
            mistakes.append({"path": str(path), "expected": " ".join(ref), "heard": " ".join(hyp)})
    if not items:
        raise AsrError("nothing to evaluate")
    return EvalReport(
        engine=engine.name,
        model=", ".join(models),
        grammar=grammar_name,
        utterances=len(items),
        words=total_words,
        word_errors=errors,
        wer=round(errors / max(total_words, 1), 4),
        utterance_accuracy=round(exact / len(items), 4),
        audio_s=round(audio_s, 2),
        rtf=round(decode_s / audio_s, 4),
        latency_p50_ms=round(float(np.percentile(latencies, 50)) * 1000, 1),
        latency_p95_ms=round(float(np.percentile(latencies, 95)) * 1000, 1),
        mistakes=mistakes,
    )
