"""The speech benchmark's caller audio and ASR section (benchmarks/speech/audio.py, asr.py):
scoring on known strings, audio as a phone delivers it, real PocketSphinx decodes."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.speech.asr import AsrCase, asr_engine, bench_asr_case, decode, errors, thread_scaling, words
from benchmarks.speech.audio import (
    DIGIT_NAMES,
    FRAME,
    FSDD,
    KOREAN,
    RATE,
    SENTENCES,
    Voices,
    fsdd_clips,
    loud_span_s,
    telephone,
    with_silence,
)


@pytest.fixture(scope="module")
def voices(tmp_path_factory: pytest.TempPathFactory) -> Voices:
    return Voices(tmp_path_factory.mktemp("voices"))


def test_words_are_lower_case_without_punctuation() -> None:
    """What WER compares: lower case, apostrophes kept, other punctuation and symbols gone."""
    assert words("I've paid £1, OK?") == ["i've", "paid", "1", "ok"]


def test_word_errors_count_substitutions_deletions_and_insertions() -> None:
    """``wer`` scores words against the reference, case and punctuation aside."""
    reference = "I would like to pay my bill."
    assert errors("wer", "i would like to pay my bill", reference) == (0, 7)
    assert errors("wer", "i would like to pay the bill", reference) == (1, 7)
    assert errors("wer", "pay bill", reference) == (5, 7)
    assert errors("wer", "i would like to pay my bill now", reference) == (1, 7)


def test_exact_scoring_counts_whole_answers() -> None:
    """``exact`` (FSDD digits): one error when the answer is anything but the one word."""
    assert errors("exact", "seven", "seven") == (0, 1)
    assert errors("exact", "seven seven", "seven") == (1, 1)
    assert errors("exact", "", "seven") == (1, 1)


def test_character_errors_ignore_spaces() -> None:
    """``cer`` (Korean): characters compared with spaces removed on both sides."""
    assert errors("cer", "카드를잃어버렸어요", KOREAN[1]) == (0, 9)
    assert errors("cer", "카드 잃어 버렸어요", KOREAN[1]) == (1, 9)


def test_voices_give_telephone_audio_rendered_once(voices: Voices) -> None:
    """Each voice's audio is 8 kHz 16-bit already through mu-law (another pass changes nothing),
    of a plausible length, and the same array on a second request (rendered once)."""
    for say, text in (
        (voices.piper, SENTENCES[0]),
        (voices.espeak, SENTENCES[0]),
        (voices.korean, KOREAN[1]),
    ):
        pcm = say(text)
        assert pcm.dtype == np.int16
        assert 0.8 < len(pcm) / RATE < 5
        np.testing.assert_array_equal(telephone(pcm), pcm)
        assert say(text) is pcm


@pytest.mark.skipif(not FSDD.is_dir(), reason=f"FSDD not at {FSDD}")
def test_fsdd_clips_are_a_seeded_labelled_choice() -> None:
    """The same seed picks the same recordings, another seed others; each comes with its digit
    word and as telephone audio."""
    clips = fsdd_clips(5, 7)
    again = fsdd_clips(5, 7)
    assert len(clips) == 5
    assert [ref for ref, _ in clips] == [ref for ref, _ in again]
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(clips, again, strict=True))
    assert [len(p) for _, p in clips] != [len(p) for _, p in fsdd_clips(5, 8)]
    assert all(ref in DIGIT_NAMES for ref, _ in clips)
    assert all(np.array_equal(telephone(pcm), pcm) for _, pcm in clips)


def test_loud_span_runs_from_the_first_to_the_last_loud_frame() -> None:
    """Half a second of silence, a second of tone, half a second of silence: the loud frames
    are 25 to 74, a span of 49 frames; silence alone has none."""
    tone = (8000 * np.sin(2 * np.pi * 440 * np.arange(RATE) / RATE)).astype(np.int16)
    silence = np.zeros(RATE // 2, np.int16)
    assert loud_span_s(np.concatenate([silence, tone, silence])) == pytest.approx(49 * FRAME / RATE)
    assert loud_span_s(silence) == 0.0


def test_with_silence_appends_the_tail_in_whole_frames(voices: Voices) -> None:
    """A stream's audio: the speech, then the tail of silence, cut to 20 ms frames."""
    speech = voices.piper(SENTENCES[1])
    pcm = with_silence(speech, 0.3)
    assert len(pcm) % FRAME == 0
    assert len(speech) + int(0.3 * RATE) - FRAME < len(pcm) <= len(speech) + int(0.3 * RATE)
    np.testing.assert_array_equal(pcm[: len(speech)], speech)
    assert not pcm[len(speech) :].any()


def test_decode_recognizes_a_sentence_fed_in_chunks(voices: Voices) -> None:
    """A Piper sentence through PocketSphinx: close to the text, faster than real time, and
    finish() a part of the whole decode time."""
    engine = asr_engine("pocketsphinx-fast")
    assert asr_engine("pocketsphinx-fast") is engine  # one engine per label
    pcm = voices.piper(SENTENCES[0])
    text, wall, cpu, finish = decode(engine, None, pcm)
    assert errors("wer", text, SENTENCES[0])[0] <= 3, text
    assert 0 < finish <= wall < len(pcm) / RATE
    assert cpu > 0


def test_a_case_reports_speed_finish_time_and_errors(voices: Voices) -> None:
    """A digit string through the digits grammar: every figure of the ASR table, the digits
    recognized without error (as in the committed results)."""
    spoken = "four one seven two"
    case = AsrCase(
        "pocketsphinx+digits",
        "pocketsphinx",
        "digits",
        "Piper digit strings",
        [(spoken, voices.piper(spoken.replace(" ", ", ") + "."))],
        "wer",
    )
    result = bench_asr_case(case)
    assert result["case"] == "pocketsphinx+digits" and result["clips"] == 1
    assert result["audio_s"] == pytest.approx(len(case.clips[0][1]) / RATE, abs=0.01)
    assert 0 < result["rtf_cpu"] < 1 and 0 < result["rtf_wall"] < 1
    assert result["finish_ms_p50"] > 0
    assert result["error_rate"] == 0.0
    assert result["score"] == "WER"


def test_thread_scaling_is_a_throughput_ratio(voices: Voices) -> None:
    """Two threads' throughput over one: positive and at most about two (two threads cannot do
    more than twice the work of one), whatever the machine's load."""
    speedup = thread_scaling("pocketsphinx-fast", [voices.piper(SENTENCES[2])])
    assert 0.2 < speedup < 2.5
