"""What the VAD benchmark measures: each detector's per-frame probabilities (and their CPU
cost), frame accuracy against the reference labels, the endpointer's start and end decisions on
speech, its false starts on noise alone, and the median over runs."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from benchmarks.common import median, percentile
from benchmarks.vad.streams import CONDITIONS, NOISE_ONLY, NOISE_ONLY_S, Stream, build, noise_only
from ivr_server.media.g711 import Pcm
from ivr_server.speech.vad.base import FRAME_MS, VoiceDetector
from ivr_server.speech.vad.detectors import load_detector
from ivr_server.speech.vad.endpointer import Endpointer, EndpointSettings, SpeechEnded, SpeechStarted

Probabilities = npt.NDArray[np.float64]
Segment = tuple[SpeechStarted, SpeechEnded | None]

DETECTORS = ["energy", "webrtc:1", "webrtc:2", "webrtc:3", "silero", "mixed"]


@dataclass(frozen=True)
class Variant:
    detector: str
    threshold: float
    stay: float

    @property
    def label(self) -> str:
        hyst = f"/{self.stay:g}" if self.stay != self.threshold else ""
        return f"{self.detector} p>={self.threshold:g}{hyst}"


VARIANTS = (
    Variant("energy", 0.5, 0.5),
    Variant("energy", 0.5, 0.3),
    Variant("webrtc:1", 0.5, 0.5),
    Variant("webrtc:2", 0.5, 0.5),
    Variant("webrtc:3", 0.5, 0.5),
    Variant("webrtc:3", 1.0, 0.5),
    Variant("silero", 0.5, 0.5),
    Variant("silero", 0.5, 0.35),
    Variant("silero", 0.3, 0.2),
    Variant("silero", 0.7, 0.5),
    Variant("mixed", 0.5, 0.5),
    Variant("mixed", 0.5, 0.35),
)


@dataclass(frozen=True)
class Plan:
    """One benchmark's settings (the script's options)."""

    runs: int = 3
    files: int = 16
    seed: int = 7
    rates: tuple[int, ...] = (8000, 16000)
    min_speech: tuple[int, ...] = (20, 40, 60, 100)
    default_min_speech: int = 20
    end_silence: int = 700
    variants: tuple[Variant, ...] = VARIANTS

    @property
    def detectors(self) -> list[str]:
        return [d for d in DETECTORS if any(v.detector == d for v in self.variants)]


@dataclass
class Clock:
    """CPU time spent in one detector and the frames it took."""

    seconds: float = 0.0
    frames: int = 0

    @property
    def us_per_frame(self) -> float:
        return self.seconds / self.frames * 1e6


@dataclass
class DetectorOutput:
    speech: dict[tuple[str, int | None], list[Probabilities]] = field(default_factory=dict)
    noise: dict[str, Probabilities] = field(default_factory=dict)


def probabilities(detector: VoiceDetector, pcm: Pcm, rate: int, clock: Clock) -> Probabilities:
    """The detector's probability for each whole 20 ms frame of a fresh stream."""
    step = rate * FRAME_MS // 1000
    detector.reset()
    out = np.empty(len(pcm) // step)
    t0 = time.perf_counter()
    for i in range(len(out)):
        out[i] = detector.probability(pcm[i * step : (i + 1) * step])
    clock.seconds += time.perf_counter() - t0
    clock.frames += len(out)
    return out


def endpoint(probs: Probabilities, settings: EndpointSettings) -> list[Segment]:
    """All utterances in a stream: the endpointer restarted after each end; the last one's end
    is None when the stream stops inside it."""
    segments: list[Segment] = []
    ep, base, start = Endpointer(settings), 0, None
    for p in probs:
        for ev in ep.feed(float(p), FRAME_MS):
            if isinstance(ev, SpeechStarted):
                start = SpeechStarted(ev.start_ms + base, ev.detected_ms + base, ev.probability)
            elif isinstance(ev, SpeechEnded) and start is not None:
                ended = SpeechEnded(ev.start_ms + base, ev.end_ms + base, ev.detected_ms + base, ev.reason)
                segments.append((start, ended))
                start = None
        if ep.done:
            base += ep.position_ms
            ep = Endpointer(settings)
    if start is not None:
        segments.append((start, None))
    return segments


def settings_for(v: Variant, min_speech_ms: int, end_silence_ms: int) -> EndpointSettings:
    return EndpointSettings(
        threshold=v.threshold, stay_threshold=v.stay, min_speech_ms=min_speech_ms,
        end_silence_ms=end_silence_ms, max_utterance_ms=15000, no_input_ms=0,
    )  # fmt: skip


def condition_name(cond: tuple[str, int | None]) -> str:
    return cond[0] if cond[1] is None else f"{cond[0]} {cond[1]}"


def _float_median(values: list[int]) -> float | None:
    m = median(values)
    return None if m is None else float(m)


def frame_scores(streams: list[Stream], probs: list[Probabilities], threshold: float) -> dict[str, float]:
    """Frame accuracy, speech recall and false-alarm rate of ``p >= threshold`` over streams."""
    ref = np.concatenate([s.ref for s in streams])
    pred = np.concatenate([p >= threshold for p in probs])
    return {
        "accuracy": float((pred == ref).mean()),
        "recall": float(pred[ref].mean()),
        "false_alarm": float(pred[~ref].mean()),
    }


def endpoint_scores(
    cases: list[tuple[Stream, Probabilities]], noises: dict[str, Probabilities], settings: EndpointSettings
) -> dict[str, Any]:
    """Start and end latencies against the true onset and offset, misses, early false starts,
    split utterances, and false starts per minute on each noise-only stream."""
    onset: list[int] = []
    ends: list[int] = []
    misses = splits = early = 0
    for s, p in cases:
        segs = endpoint(p, settings)
        hit = [(a, b) for a, b in segs if a.start_ms < s.offset_ms and (b is None or b.end_ms > s.onset_ms)]
        early += sum(1 for _a, b in segs if b is not None and b.end_ms <= s.onset_ms)
        if not hit:
            misses += 1
            continue
        onset.append(hit[0][0].detected_ms - s.onset_ms)
        splits += len(hit) > 1
        last_end = hit[-1][1]
        if last_end is not None and last_end.reason == "silence":
            ends.append(last_end.detected_ms - s.offset_ms)
    p90 = percentile(onset, 90)
    return {
        "onset_latency_ms_median": _float_median(onset),
        "onset_latency_ms_p90": None if p90 is None else float(p90),
        "miss_rate": misses / len(cases),
        "false_start_before_speech_rate": early / len(cases),
        "split_rate": splits / len(cases),
        "end_latency_ms_median": _float_median(ends),
        "noise_false_starts_per_min": {
            k: len(endpoint(p, settings)) * 60 / NOISE_ONLY_S for k, p in noises.items()
        },
    }


def one_run(run: int, plan: Plan, recordings: list[Path]) -> dict[str, Any]:
    """Run ``run`` (its own seed): per rate, CPU µs per frame of each detector and, per variant,
    frame scores per condition and endpointing scores per min_speech_ms."""
    rng = np.random.default_rng(plan.seed + run)
    files = [recordings[i] for i in rng.choice(len(recordings), size=plan.files, replace=False)]
    result: dict[str, Any] = {}
    for rate in plan.rates:
        streams = {c: [build(rng, f, recordings, c[0], c[1], rate) for f in files] for c in CONDITIONS}
        noises = {k: noise_only(rng, k, rate, recordings) for k in NOISE_ONLY}
        clocks: dict[str, Clock] = {}
        outputs: dict[str, DetectorOutput] = {}
        for name in plan.detectors:
            det = load_detector(name, rate)
            clock = clocks.setdefault(name, Clock())
            out = outputs[name] = DetectorOutput()
            for c, ss in streams.items():
                out.speech[c] = [probabilities(det, s.pcm, rate, clock) for s in ss]
            out.noise = {k: probabilities(det, pcm, rate, clock) for k, pcm in noises.items()}
        at_rate = result.setdefault(str(rate), {})
        at_rate["us_per_frame"] = {n: c.us_per_frame for n, c in clocks.items()}
        for v in plan.variants:
            out = outputs[v.detector]
            row: dict[str, Any] = {
                "conditions": {
                    condition_name(c): frame_scores(ss, out.speech[c], v.threshold)
                    for c, ss in streams.items()
                }
            }
            cases = [(s, p) for c, ss in streams.items() for s, p in zip(ss, out.speech[c], strict=True)]
            for ms in plan.min_speech:
                st = settings_for(v, ms, plan.end_silence)
                row[f"min_speech_{ms}"] = endpoint_scores(cases, out.noise, st)
            at_rate[v.label] = row
    return result


def merge(runs: list[Any]) -> Any:
    """Median over runs, leaf by leaf (None where no run has a value)."""
    first = runs[0]
    if isinstance(first, dict):
        return {k: merge([r[k] for r in runs]) for k in first}
    m = median(runs)
    return None if m is None else float(m)
