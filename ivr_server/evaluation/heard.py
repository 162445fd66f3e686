"""Training phrases as the recognizer hears them: spoken by synthetic voices, sent through the
telephone line, recognized with the flow's own resources (``scripts/bench-spoken
--heard-per-intent N`` measures what training on them is worth).

The intent model learns from what callers' words become after recognition ("i lost my court")
as well as from the words themselves. The voices here are not the ones the spoken benchmark
tests with (other espeak-ng voices, other Piper rates), so the benchmark measures what this
teaches about recognition errors, not about its own test voices.
"""

from __future__ import annotations

import csv
import multiprocessing
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ivr_server.dialog.nlu.data import Example
from ivr_server.evaluation.channel import Line, telephone
from ivr_server.evaluation.voices import Renderer, Voice
from ivr_server.speech.asr.base import LanguageModel, feed_all

TRAINING_VOICES = (
    "piper:0.9",
    "piper:1.3",
    "espeak:en-us+m2:170",
    "espeak:en-gb+f2:145",
    "espeak:en-us+f4:155",
)


@dataclass(frozen=True)
class HeardSettings:
    per_intent: int = 20  # training phrases spoken per intent (all of a smaller one)
    voices: tuple[str, ...] = TRAINING_VOICES
    snr_db: float = 30.0
    seed: int = 11
    processes: int = 2  # decoding is the cost: one process per core


def pick(examples: Sequence[Example], per_intent: int, seed: int) -> list[Example]:
    """Up to ``per_intent`` examples of each category, a seeded draw, in a stable order."""
    by: dict[str, list[Example]] = {}
    for e in examples:
        by.setdefault(e.category, []).append(e)
    rng = random.Random(seed)
    out = []
    for category in sorted(by):
        pool = by[category]
        out.extend(rng.sample(pool, min(per_intent, len(pool))))
    return out


def heard_examples(
    examples: Sequence[Example], model: LanguageModel | None, settings: HeardSettings = HeardSettings()
) -> list[Example]:
    """Each picked example as recognized (empty recognitions dropped), same category."""
    chosen = pick(examples, settings.per_intent, settings.seed)
    jobs = [(i, e.text, e.category, settings.voices[i % len(settings.voices)]) for i, e in enumerate(chosen)]
    shards = [jobs[k :: settings.processes] for k in range(settings.processes)]
    args = [(shard, model, settings.snr_db, settings.seed) for shard in shards if shard]
    if len(args) == 1:
        results = [_recognize(*args[0])]
    else:
        with multiprocessing.get_context("spawn").Pool(len(args)) as pool:
            results = pool.starmap(_recognize, args)
    heard = sorted((item for part in results for item in part), key=lambda t: t[0])
    return [Example(text, category) for _, text, category in heard if text]


def _recognize(
    jobs: list[tuple[int, str, str, str]], model: LanguageModel | None, snr_db: float, seed: int
) -> list[tuple[int, str, str]]:
    from ivr_server.speech.asr.pocketsphinx_engine import PocketSphinxEngine

    engine = PocketSphinxEngine(search="accurate")
    renderer = Renderer()
    out = []
    for i, text, category, voice in jobs:
        pcm, rate = renderer.render(Voice.parse(voice), text)
        recognizer = engine.recognizer(8000, None, model)
        feed_all(recognizer, telephone(pcm, rate, Line(snr_db=snr_db, seed=seed * 7919 + i)), 8000)
        out.append((i, recognizer.finish().text, category))
    return out


def write_csv(examples: Sequence[Example], path: Path) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "category"])
        writer.writerows((e.text, e.category) for e in examples)
