"""ASR capacity: the real AsrService (worker processes for PocketSphinx, threads for Vosk) with
N callers fed 20 ms frames at real-time pace by one clock tick; the largest N at which every
caller stays real time (its final results prompt, its partial results not lagging)."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from benchmarks.speech import log, spread
from benchmarks.speech.asr import SEARCH, asr_engine, korean_model
from benchmarks.speech.audio import FRAME, KOREAN, RATE, SENTENCES, Voices, with_silence
from benchmarks.speech.machine import cpu_counters, other_cores, rss_mb_of
from ivr_server.media.g711 import Pcm

CONCURRENCY_LABELS = ("pocketsphinx", "pocketsphinx-fast", "pocketsphinx-auto", "vosk-ko")
ENGINE_OF = {label: label.removesuffix("-ko") for label in CONCURRENCY_LABELS}  # vosk-ko: engine "vosk"
# A stream stays real time when its final result comes within FINAL_MS of its last frame and no
# partial result arrives more than PARTIAL_LAG_MS after the frame that produced it.
FINAL_MS = 500
PARTIAL_LAG_MS = 1000
PAUSE_S = 0.5  # between sentences of a concurrency stream
TAIL_S = 0.3  # silence after a stream's last sentence (the endpointing silence of a call)
TICK_S = 0.02


@dataclass(frozen=True)
class Load:
    """How the callers are made and served: the search ladder (streams), speech per caller,
    the service's workers, and asr_accurate_streams for pocketsphinx-auto."""

    levels: tuple[int, ...]
    stream_seconds: float
    asr_workers: int
    accurate_streams: int


@dataclass
class Utterance:
    pcm: Pcm  # a sentence and TAIL_S of silence: what a call feeds one recognizer stream
    partials: list[tuple[int, str]]  # (frame index, text): when a lone recognizer first said it


_utterances: dict[tuple[str, str], Utterance] = {}


def utterance(engine_name: str, text: str, voices: Voices) -> Utterance:
    """A sentence as one call turn would feed it (speech, then the endpointing silence), and the
    partial results a lone recognizer gives on it frame by frame: the reference a stream under
    load is compared with."""
    key = (engine_name, text)
    if key not in _utterances:
        speech = voices.piper(text) if engine_name in SEARCH else voices.korean(text)
        pcm = with_silence(speech, TAIL_S)
        recognizer = asr_engine(engine_name).recognizer(RATE)
        partials = []
        for k in range(len(pcm) // FRAME):
            result = recognizer.feed(pcm[k * FRAME : (k + 1) * FRAME])
            if result is not None:
                partials.append((k, result.text))
        recognizer.finish()
        _utterances[key] = Utterance(pcm, partials)
    return _utterances[key]


@dataclass
class Turn:
    """One recognizer stream of a caller: what it was fed when, and what came back."""

    audio: Utterance
    start_tick: int
    stream: Any = None
    fed_at: list[float] = field(default_factory=list)
    partials: list[tuple[float, str]] = field(default_factory=list)
    final_ms: float | None = None
    error: str | None = None

    @property
    def frames(self) -> int:
        return len(self.audio.pcm) // FRAME

    def partial_lags_ms(self) -> tuple[list[float], int]:
        """Each partial's delay after the frame that produced it (as a lone recognizer tells),
        and how many partials matched no reference text (not timed)."""
        lags, unmatched, ref_at = [], 0, 0
        for arrived, text in self.partials:
            for j in range(ref_at, len(self.audio.partials)):
                frame, ref = self.audio.partials[j]
                if ref == text and frame < len(self.fed_at):
                    lags.append((arrived - self.fed_at[frame]) * 1000)
                    ref_at = j + 1
                    break
            else:
                unmatched += 1
        return lags, unmatched

    def ok(self) -> bool:
        lags, _ = self.partial_lags_ms()
        return (
            self.final_ms is not None and self.final_ms <= FINAL_MS and max(lags, default=0) <= PARTIAL_LAG_MS
        )


def channel(engine_name: str, index: int, voices: Voices, seconds: float, rng: random.Random) -> list[Turn]:
    """One caller: sentences in turn (from ``index``), each a recognizer stream of its own,
    PAUSE_S apart, until ``seconds`` of speech; it starts at a random tick of the first second."""
    texts = SENTENCES[:6] if engine_name in SEARCH else KOREAN
    turns: list[Turn] = []
    tick, spoken, i = rng.randrange(50), 0.0, index
    while spoken < seconds:
        audio = utterance(engine_name, texts[i % len(texts)], voices)
        turns.append(Turn(audio, tick))
        tick += len(audio.pcm) // FRAME + int(PAUSE_S * 50)
        spoken += len(audio.pcm) / RATE - TAIL_S
        i += 1
    return turns


def level_result(channels: Sequence[Sequence[Turn]]) -> dict[str, Any]:
    """The figures of one level from its callers' turns once every stream has finished."""
    turns = [t for c in channels for t in c]
    final_ms = [t.final_ms for t in turns if t.final_ms is not None]
    lags: list[float] = []
    unmatched = 0
    for t in turns:
        lag, miss = t.partial_lags_ms()
        lags += lag
        unmatched += miss
    passing = sum(all(t.ok() for t in c) for c in channels)
    return {
        "streams": len(channels),
        "passed": passing == len(channels),
        "streams_ok": passing,
        "utterances": len(turns),
        **spread(final_ms, "final_ms_{}"),
        **spread(lags, "partial_lag_ms_{}"),
        "partials_unmatched": unmatched,
        "partials": len(lags) + unmatched,
        "errors": sum(t.error is not None for t in turns),
    }


async def one_level(
    engine_name: str, n: int, voices: Voices, load: Load, rng: random.Random
) -> dict[str, Any]:
    """N callers through a fresh AsrService, fed by one 20 ms clock on this loop."""
    from ivr_server.speech.asr.service import AsrService
    from ivr_server.speech.asr.worker import EngineSpec

    engine = asr_engine(engine_name)
    if engine_name in SEARCH:
        spec = EngineSpec("pocketsphinx", search=SEARCH[engine_name], accurate_streams=load.accurate_streams)
    else:
        spec = EngineSpec(engine_name, korean_model(), "ko")
    # Decoders built ahead for the N streams, as an admin expecting N calls sets asr_warm_streams.
    service = AsrService(engine, spec, "auto", load.asr_workers, warm_streams=n)
    started = time.perf_counter()
    await service.start()
    start_s = time.perf_counter() - started
    loop = asyncio.get_running_loop()
    channels = [channel(engine_name, i, voices, load.stream_seconds, rng) for i in range(n)]
    turns = [t for c in channels for t in c]
    finals: list[asyncio.Task[None]] = []

    async def finish(turn: Turn) -> None:
        last = turn.fed_at[-1]
        try:
            await turn.stream.finish(timeout_s=15)
            turn.final_ms = (loop.time() - last) * 1000
        except Exception as err:  # AsrError: failed or timed out
            turn.error = str(err)

    def partial_to(turn: Turn) -> Callable[[str], None]:
        return lambda text: turn.partials.append((loop.time(), text))

    ticks = max(t.start_tick + t.frames for t in turns)
    late_ms: list[float] = []
    cpu = cpu_counters()
    t0 = loop.time() + 0.1
    try:
        for k in range(ticks):
            delay = t0 + k * TICK_S - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            now = loop.time()
            late_ms.append((now - (t0 + k * TICK_S)) * 1000)
            for turn in turns:
                j = k - turn.start_tick
                if 0 <= j < turn.frames:
                    if j == 0:
                        turn.stream = service.open(RATE, None, partial_to(turn))
                    turn.stream.feed(turn.audio.pcm[j * FRAME : (j + 1) * FRAME])
                    turn.fed_at.append(now)
                    if j == turn.frames - 1:
                        finals.append(asyncio.create_task(finish(turn)))
        await asyncio.gather(*finals)
        rss_mb = sum(rss_mb_of(pid) for pid in service.worker_pids())
    finally:
        for task in finals:
            task.cancel()
        await service.close()
    return {
        **level_result(channels),
        "tick_late_ms_max": round(max(late_ms), 1),
        "other_processes_cores": other_cores(cpu),
        "start_s": round(start_s, 2),
        "workers_rss_mb": round(rss_mb),
    }


async def largest_passing(
    passes: Callable[[int], Awaitable[bool]], levels: Sequence[int], start: int | None
) -> int:
    """The largest N for which ``passes`` holds. From scratch (``start`` None): up the ``levels``
    ladder to the first failure, then bisection between the last pass and it (to a tenth). From a
    previous run's answer: that N and its neighbours (steps of a tenth), up or down until the
    boundary is seen. 0 when nothing passes."""
    ladder = sorted(levels)
    best = 0
    if start is None:
        fail = None
        for n in ladder:
            if not await passes(n):
                fail = n
                break
            best = n
        if fail is not None:
            lo, hi = best, fail
            while hi - lo > max(1, lo // 10):
                mid = (lo + hi) // 2
                lo, hi = (mid, hi) if await passes(mid) else (lo, mid)
            best = lo
        return best
    n = max(1, start)
    if await passes(n):
        best = n
        while n < ladder[-1] and await passes(n + max(1, n // 10)):
            n += max(1, n // 10)
            best = n
        return best
    while n > 1:
        n -= max(1, n // 10)
        if await passes(n):
            return n
    return best


async def find_capacity(
    engine_name: str, voices: Voices, load: Load, rng: random.Random, start: int | None
) -> tuple[int, list[dict[str, Any]]]:
    """The largest N that passes (see largest_passing) and every level tried, by N."""
    tried: dict[int, dict[str, Any]] = {}

    async def passes(n: int) -> bool:
        if n not in tried:
            tried[n] = await one_level(engine_name, n, voices, load, rng)
            r = tried[n]
            log(
                f"  {engine_name} x{n}: {'pass' if r['passed'] else 'FAIL'} ({r['streams_ok']}/{n} ok), "
                f"final "
                f"p50/max {r['final_ms_p50']}/{r['final_ms_max']} ms, partial lag p95/max "
                f"{r['partial_lag_ms_p95']}/{r['partial_lag_ms_max']} ms"
            )
        return bool(tried[n]["passed"])

    best = await largest_passing(passes, load.levels, start)
    return best, [tried[n] for n in sorted(tried)]


async def run_concurrency(
    voices: Voices, load: Load, labels: Sequence[str], rng: random.Random, previous: dict[str, int]
) -> dict[str, Any]:
    """Each label's capacity (in CONCURRENCY_LABELS order); ``previous`` holds, and gets, each
    label's answer, the next run's starting point."""
    out: dict[str, Any] = {}
    for label in CONCURRENCY_LABELS:
        if label not in labels:
            continue
        best, levels = await find_capacity(ENGINE_OF[label], voices, load, rng, previous.get(label))
        previous[label] = best
        out[label] = {"max_realtime_streams": best, "levels": levels}
    return out
