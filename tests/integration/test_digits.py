"""The digits grammar on real recordings: the bundled classifier per digit, cut at the pauses."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from structlog.testing import capture_logs

from ivr_server.errors import AsrError, EngineUnavailable
from ivr_server.media.audio import read_wav
from ivr_server.media.g711 import Pcm, ulaw_decode, ulaw_encode
from ivr_server.speech.asr.base import GRAMMARS, feed_all
from ivr_server.speech.asr.digit_model import DigitClassifier, at_speed
from ivr_server.speech.asr.pocketsphinx_engine import PocketSphinxEngine
from tests.support.data import FSDD

RATE = 8000
needs_fsdd = pytest.mark.skipif(not FSDD.is_dir(), reason=f"FSDD recordings not at {FSDD}")


def line(pcm: Pcm, seed: int = 0) -> Pcm:
    """A phone line: a -60 dBFS noise floor under the audio, then mu-law."""
    noise = np.random.default_rng(seed).standard_normal(len(pcm)) * 30
    return ulaw_decode(ulaw_encode(np.clip(pcm + noise, -32768, 32767).astype(np.int16)))


def fsdd(name: str) -> Pcm:
    rate, pcm = read_wav(FSDD / f"{name}.wav")
    assert rate == RATE
    return pcm


def silence(seconds: float) -> Pcm:
    return np.zeros(int(seconds * RATE), dtype=np.int16)


def recognize(pcm: Pcm, engine: PocketSphinxEngine | None = None) -> tuple[str, str, tuple[float, ...]]:
    recognizer = (engine or PocketSphinxEngine()).recognizer(RATE, GRAMMARS["digits"])
    feed_all(recognizer, pcm, RATE)
    result = recognizer.finish()
    return result.text, result.model, tuple(w.confidence or 0.0 for w in result.words)


@needs_fsdd
def test_digits_said_one_by_one_are_each_classified() -> None:
    """Four recordings of three speakers in one utterance, as a caller keys in the last four digits
    of a card by voice: pre-roll, pauses of 0.3-0.5 s, the endpointing silence."""
    parts = [silence(0.3)]
    for name, pause in (
        ("4_jackson_7", 0.4),
        ("4_nicolas_3", 0.3),
        ("2_yweweler_11", 0.5),
        ("1_jackson_9", 0.3),
    ):
        parts += [fsdd(name), silence(pause)]
    text, model, confidences = recognize(line(np.concatenate(parts)))
    assert text == "four four two one"
    assert "+digits-8k-" in model and all(0.5 < c <= 1.0 for c in confidences)


@needs_fsdd
def test_one_recording_is_one_digit_whatever_its_speaker() -> None:
    for name, word in (("0_jackson_0", "zero"), ("6_nicolas_0", "six"), ("9_yweweler_5", "nine")):
        assert recognize(line(np.concatenate([silence(0.3), fsdd(name), silence(0.3)])))[0] == word


def test_silence_and_noise_hear_no_digit() -> None:
    assert recognize(silence(2.0))[0] == ""
    noise = np.random.default_rng(3).standard_normal(2 * RATE) * 2000
    assert recognize(line(noise.astype(np.int16)))[0] == ""


def test_without_the_digit_model_the_grammar_runs_on_pocketsphinx_and_says_so(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import ivr_server.speech.asr.pocketsphinx_engine as ps

    monkeypatch.setattr(ps, "DigitClassifier", lambda: DigitClassifier(tmp_path))
    engine = PocketSphinxEngine()
    with capture_logs() as logs:
        _, model, _ = recognize(silence(1.0), engine)
        recognize(silence(1.0), engine)
    assert model.startswith(engine.model_id) and "digits-8k" not in model  # PocketSphinx alone
    warnings = [e for e in logs if e["event"] == "asr.digit_model_unavailable"]
    assert len(warnings) == 1 and "digit model not found" in warnings[0]["error"]


def test_the_classifier_names_what_is_wrong_with_its_input(tmp_path: Path) -> None:
    classifier = DigitClassifier()
    with pytest.raises(AsrError, match="empty"):
        classifier.classify(np.zeros(0, dtype=np.int16), RATE)
    with pytest.raises(AsrError, match="silent"):
        classifier.classify(silence(1.0), RATE)
    with pytest.raises(AsrError, match="outside 8000-48000"):
        classifier.classify(silence(1.0), 4000)
    with pytest.raises(EngineUnavailable, match="digit model not found"):
        DigitClassifier(tmp_path)


def test_at_speed_plays_faster_with_higher_pitch() -> None:
    t = np.arange(RATE) / RATE
    tone = (8000 * np.sin(2 * np.pi * 500 * t)).astype(np.int16)
    for factor in (0.9, 1.1):
        faster = at_speed(tone, RATE, factor)
        assert abs(len(faster) - RATE / factor) <= 2
        peak_hz = np.argmax(np.abs(np.fft.rfft(faster))) * RATE / len(faster)
        assert abs(peak_hz - 500 * factor) < 3


@needs_fsdd
def test_an_unsure_clip_is_heard_again_slower_and_faster(monkeypatch: pytest.MonkeyPatch) -> None:
    """The retry averages the logits of the clip as it is and at each RETRY_SPEEDS; a sure clip
    is classified once."""
    import ivr_server.speech.asr.digit_model as dm

    classifier = DigitClassifier()
    clip = fsdd("3_nicolas_7")
    plain = classifier.logits(clip, RATE)
    assert classifier.classify(clip, RATE).probabilities == pytest.approx(tuple(_softmax(plain)))
    monkeypatch.setattr(dm, "UNSURE_BELOW", 1.01)  # every clip is unsure
    heard = [plain] + [classifier.logits(at_speed(clip, RATE, v), RATE) for v in dm.RETRY_SPEEDS]
    assert len(heard) == 3
    retried = classifier.classify(clip, RATE)
    assert retried.probabilities == pytest.approx(tuple(_softmax(np.mean(heard, 0))))
    assert retried.probabilities != pytest.approx(tuple(_softmax(plain)))


def _softmax(z: np.ndarray) -> np.ndarray:
    p = np.exp(z - z.max())
    return p / p.sum()


@needs_fsdd
def test_the_telephone_cepstral_mean_prior_is_what_calibration_gives() -> None:
    """TELEPHONE_CMN is reproducible: a tenth of FSDD through the voice band gives the same
    mean to within a unit per coefficient (scripts/calibrate-cmn uses all of it)."""
    import pocketsphinx

    from ivr_server.evaluation.calibrate import calibration_decoder, telephone_prior
    from ivr_server.speech.asr.cmn import TELEPHONE_CMN

    files = sorted(FSDD.glob("*.wav"))[::10]
    decoder = calibration_decoder(Path(pocketsphinx.get_model_path()) / "en-us")
    got = [float(v) for v in telephone_prior(files, decoder).split(",")]
    assert got == pytest.approx([float(v) for v in TELEPHONE_CMN.split(",")], abs=1.0)
