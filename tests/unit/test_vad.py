"""Voice activity detectors on real speech and generated noise, and the endpointer's rules."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ivr_server.errors import AsrError, ConfigError, EngineUnavailable
from ivr_server.media.audio import read_wav
from ivr_server.media.g711 import Pcm, ulaw_decode, ulaw_encode
from ivr_server.media.resample import resample
from ivr_server.speech.vad import silero
from ivr_server.speech.vad.base import VoiceDetector
from ivr_server.speech.vad.detectors import AUTO, load_detector
from ivr_server.speech.vad.endpointer import (
    Endpointer,
    EndpointEvent,
    EndpointSettings,
    NoInput,
    SpeechEnded,
    SpeechStarted,
)
from tests.support.data import FSDD

REPO = Path(__file__).resolve().parents[2]
DETECTORS = ["energy", "webrtc", "silero", "mixed"]
LEAD_MS, TAIL_MS = 1000, 1500


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[str, Pcm]]:
    """Three spoken digits at 8 kHz: FSDD recordings (one per speaker) when the data set is
    there, else espeak-ng's voice (CI machines without the data set have espeak-ng)."""
    names = ["3_jackson_7.wav", "6_nicolas_12.wav", "8_yweweler_40.wav"]
    if all((FSDD / n).is_file() for n in names):
        return [(n, read_wav(FSDD / n)[1]) for n in names]
    out = []
    for word in ("three", "six", "eight"):
        raw, wav = (
            tmp_path_factory.mktemp("espeak") / "raw.wav",
            tmp_path_factory.mktemp("espeak") / f"{word}.wav",
        )
        subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(raw), word], check=True)
        subprocess.run(
            ["sox", str(raw), "-r", "8000", "-c", "1", "-b", "16", "-e", "signed-integer", str(wav)],
            check=True,
        )
        out.append((word, read_wav(wav)[1]))
    return out


def padded(speech: Pcm, rate: int, seed: int = 1) -> Pcm:
    """``speech`` (8 kHz) with LEAD_MS before and TAIL_MS after of line noise at the recording's own
    background level, through µ-law at 8 kHz or upsampled to ``rate``."""
    rng = np.random.default_rng(seed)
    floor = min(
        float(np.sqrt(np.mean(speech[i : i + 80].astype(np.float64) ** 2)))
        for i in range(0, len(speech) - 79, 80)
    )
    total = (LEAD_MS + len(speech) // 8 + TAIL_MS) // 20 * 20
    x = rng.normal(0, max(floor, 2.0), total * 8)
    x[LEAD_MS * 8 : LEAD_MS * 8 + len(speech)] = speech
    pcm = np.clip(np.rint(x), -32768, 32767).astype(np.int16)
    return ulaw_decode(ulaw_encode(pcm)) if rate == 8000 else resample(pcm, 8000, rate)


def onset_offset_ms(speech: Pcm) -> tuple[int, int]:
    """Where the digit is in a clean recording: 10 ms levels above max(peak - 30 dB, floor + 6 dB)."""
    x = speech[: len(speech) // 80 * 80].astype(np.float64).reshape(-1, 80)
    db = 10 * np.log10(np.maximum((x**2).mean(axis=1), 1e-3))
    above = np.flatnonzero(db >= max(db.max() - 30, db.min() + 6))
    return int(above[0]) * 10, int(above[-1] + 1) * 10


def run(
    detector: VoiceDetector, pcm: Pcm, endpoint: EndpointSettings
) -> tuple[list[float], list[EndpointEvent]]:
    step = detector.sample_rate // 50
    ep, probs, events = Endpointer(endpoint), [], []
    for i in range(len(pcm) // step):
        p = detector.probability(pcm[i * step : (i + 1) * step])
        probs.append(p)
        if not ep.done:
            events += ep.feed(p, 20)
    return probs, events


def feed_all(ep: Endpointer, probs: list[float], frame_ms: int = 20) -> list[EndpointEvent]:
    events: list[EndpointEvent] = []
    for p in probs:
        events += ep.feed(p, frame_ms)
        if ep.done:
            break
    return events


# -- the endpointer on synthetic probabilities ---------------------------------------------------


def test_speech_starts_after_min_speech_at_the_start_of_the_run() -> None:
    """SpeechStarted comes at the end of the frame completing min_speech_ms, dated from the run's start."""
    ep = Endpointer(EndpointSettings(min_speech_ms=60, no_input_ms=0))
    events = feed_all(ep, [0.125] * 10 + [0.75, 0.5, 1.0] + [0.875] * 5)
    assert events == [SpeechStarted(start_ms=200, detected_ms=260, probability=0.75)]
    assert ep.in_speech


def test_a_burst_shorter_than_min_speech_is_not_speech() -> None:
    """Two loud frames (40 ms) then quiet do not start speech when 60 ms are required."""
    ep = Endpointer(EndpointSettings(min_speech_ms=60, no_input_ms=0))
    assert feed_all(ep, ([0.0] * 5 + [1.0, 1.0]) * 20) == []
    assert not ep.in_speech


def test_speech_ends_after_the_silence_dated_where_the_silence_began() -> None:
    """end_ms is the first quiet frame; the decision comes end_silence_ms later; a shorter gap does not end it."""
    s = EndpointSettings(min_speech_ms=40, end_silence_ms=300, stay_threshold=0.5, no_input_ms=0)
    ep = Endpointer(s)
    probs = [0.0] * 5 + [1.0] * 10 + [0.0] * 14 + [1.0] * 5 + [0.0] * 30
    events = feed_all(ep, probs)
    assert events[0] == SpeechStarted(100, 140, 1.0)
    assert events[1] == SpeechEnded(100, 680, 980, "silence", 0.0)
    assert len(events) == 2 and ep.done


def test_hysteresis_keeps_speech_between_the_two_thresholds_but_does_not_start_it() -> None:
    """0.4 (between stay 0.3 and threshold 0.5) neither starts speech nor ends it."""
    s = EndpointSettings(
        threshold=0.5, stay_threshold=0.3, min_speech_ms=40, end_silence_ms=200, no_input_ms=0
    )
    assert feed_all(Endpointer(s), [0.4] * 100) == []
    events = feed_all(Endpointer(s), [0.9] * 3 + [0.4] * 50 + [0.125] * 10)
    assert [type(e) for e in events] == [SpeechStarted, SpeechEnded]
    assert events[1] == SpeechEnded(0, 1060, 1260, "silence", 0.125)


def test_max_length_cuts_speech_that_never_pauses() -> None:
    """Speech is cut at max_utterance_ms after its start, with reason max_length."""
    s = EndpointSettings(min_speech_ms=20, max_utterance_ms=1000, no_input_ms=0)
    events = feed_all(Endpointer(s), [0.0] * 3 + [0.95] * 200)
    assert events[1] == SpeechEnded(60, 1060, 1060, "max_length", 0.95)


def test_no_input_fires_at_the_deadline_and_not_when_off() -> None:
    """NoInput at no_input_ms with the peak probability; nothing when no_input_ms is 0."""
    events = feed_all(Endpointer(EndpointSettings(no_input_ms=1000)), [0.2, 0.45] + [0.0] * 100)
    assert events == [NoInput(1000, 0.45)]
    assert feed_all(Endpointer(EndpointSettings(no_input_ms=0)), [0.0] * 1000) == []


def test_no_input_waits_for_a_run_under_way() -> None:
    """Speech beginning just before the deadline becomes SpeechStarted, not NoInput."""
    s = EndpointSettings(min_speech_ms=100, no_input_ms=1000)
    events = feed_all(Endpointer(s), [0.0] * 47 + [0.875] * 10)
    assert events == [SpeechStarted(940, 1040, 0.875)]
    # A run that fails after the deadline gives NoInput on its first quiet frame.
    events = feed_all(Endpointer(s), [0.0] * 48 + [0.9] * 3 + [0.0] * 3)
    assert events == [NoInput(1040, 0.9)]


def test_the_endpointer_is_spent_after_its_turn() -> None:
    """After SpeechEnded or NoInput, feeding again is an error: one endpointer per turn."""
    ep = Endpointer(EndpointSettings(no_input_ms=100))
    feed_all(ep, [0.0] * 10)
    with pytest.raises(AsrError, match="new one per turn"):
        ep.feed(0.0, 20)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("threshold", 0.0, "threshold"),
        ("threshold", 1.5, "threshold"),
        ("stay_threshold", 0.9, "stay_threshold"),
        ("min_speech_ms", -20, "min_speech_ms"),
        ("end_silence_ms", 0, "end_silence_ms"),
        ("no_input_ms", 2.5, "no_input_ms"),
        ("max_utterance_ms", 10, "max_utterance_ms"),
    ],
)
def test_bad_settings_name_the_field(field: str, value: float, message: str) -> None:
    """Each invalid setting raises ConfigError naming it and its value."""
    with pytest.raises(ConfigError, match=message):
        EndpointSettings(**{field: value})  # type: ignore[arg-type]


@pytest.mark.parametrize(("probability", "frame_ms"), [(float("nan"), 20), (1.2, 20), (-0.1, 20), (0.5, 0)])
def test_bad_frames_are_refused(probability: float, frame_ms: int) -> None:
    """A probability outside [0, 1] (or NaN) and a non-positive frame length raise AsrError."""
    with pytest.raises(AsrError):
        Endpointer().feed(probability, frame_ms)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.floats(0.0, 1.0), max_size=400),
    st.integers(0, 200),
    st.integers(20, 600),
    st.sampled_from([10, 20, 30]),
)
def test_event_invariants_hold_for_any_probabilities(
    probs: list[float], min_speech: int, silence: int, frame: int
) -> None:
    """Whatever the probabilities: at most one start then at most one end, in order, with
    consistent positions, and nothing after the turn is over."""
    s = EndpointSettings(
        min_speech_ms=min_speech, end_silence_ms=silence, max_utterance_ms=3000, no_input_ms=2000
    )
    ep = Endpointer(s)
    events = feed_all(ep, probs, frame)
    kinds = [type(e) for e in events]
    assert kinds in ([], [SpeechStarted], [SpeechStarted, SpeechEnded], [NoInput])
    if events and isinstance(events[0], SpeechStarted):
        start = events[0]
        assert start.detected_ms - start.start_ms >= min_speech
        assert s.threshold <= start.probability <= 1.0
        if len(events) == 2:
            end = events[1]
            assert isinstance(end, SpeechEnded)
            assert start.start_ms <= end.end_ms <= end.detected_ms
            assert end.detected_ms - end.start_ms <= s.max_utterance_ms
            if end.reason == "silence":
                assert end.detected_ms - end.end_ms >= silence
    if events and isinstance(events[0], NoInput):
        assert events[0].at_ms >= 2000
    assert ep.done == (len(events) == 2 or kinds == [NoInput])


# -- detectors on real audio ---------------------------------------------------------------------


@pytest.mark.parametrize("rate", [8000, 16000])
@pytest.mark.parametrize("name", DETECTORS)
def test_each_detector_finds_the_digit_and_nothing_else(
    name: str, rate: int, digits: list[tuple[str, Pcm]]
) -> None:
    """Speech starts at the digit (not in the 1 s of line noise before it) and is detected within
    150 ms of its onset, and ends on silence within 300 ms of its end: one utterance."""
    endpoint = EndpointSettings(min_speech_ms=60, end_silence_ms=500, no_input_ms=0)
    for label, speech in digits:
        detector = load_detector(name, rate)
        _, events = run(detector, padded(speech, rate), endpoint)
        onset, offset = (LEAD_MS + t for t in onset_offset_ms(speech))
        assert [type(e) for e in events] == [SpeechStarted, SpeechEnded], (label, events)
        start, end = events
        assert isinstance(start, SpeechStarted) and isinstance(end, SpeechEnded)
        # The reference onset (peak - 30 dB) misses a soft fricative ("th-ree") that an
        # energy detector rightly hears: up to 100 ms early is the same onset.
        assert onset - 100 <= start.start_ms and start.detected_ms <= onset + 150, (label, onset, start)
        assert end.reason == "silence" and end.end_ms <= offset + 300, (label, offset, end)


@pytest.mark.parametrize("rate", [8000, 16000])
@pytest.mark.parametrize("name", DETECTORS)
def test_no_detector_fires_on_silence_or_line_noise(name: str, rate: int) -> None:
    """Digital silence, 5 s of white noise at -60 dBFS, 5 s of pink noise at -40 dBFS (each a new
    stream): no speech."""
    rng = np.random.default_rng(3)
    spectrum = np.fft.rfft(rng.normal(size=rate * 5)) / np.sqrt(
        np.maximum(np.fft.rfftfreq(rate * 5, 1 / rate), 20)
    )
    pink = np.fft.irfft(spectrum, rate * 5)
    for noise in (np.zeros(rate * 3), rng.normal(0, 33, rate * 5), pink * 328 / pink.std()):
        pcm = np.clip(np.rint(noise), -32768, 32767).astype(np.int16)
        probs, events = run(load_detector(name, rate), pcm, EndpointSettings(min_speech_ms=60, no_input_ms=0))
        assert events == [], f"max probability {max(probs):.2f}"


def test_energy_follows_a_noisier_line_within_two_seconds() -> None:
    """After a step from -60 to -30 dBFS white noise, the energy detector's probability falls
    back below 0.5 within its 2 s window and stays there."""
    rng = np.random.default_rng(5)
    pcm = np.clip(
        np.concatenate([rng.normal(0, 33, 16000), rng.normal(0, 1036, 40000)]), -32768, 32767
    ).astype(np.int16)
    probs, _ = run(load_detector("energy", 8000), pcm, EndpointSettings(no_input_ms=0))
    assert max(probs[100 + 100 :]) < 0.5
    assert max(probs[100 : 100 + 10]) > 0.5  # the step itself did look like speech


@pytest.mark.parametrize("name", DETECTORS)
def test_reset_makes_a_detector_start_over(name: str, digits: list[tuple[str, Pcm]]) -> None:
    """The same stream after reset() gives the same probabilities as on a fresh detector."""
    pcm = padded(digits[0][1], 8000)
    detector = load_detector(name, 8000)
    first, _ = run(detector, pcm, EndpointSettings(no_input_ms=0))
    detector.reset()
    again, _ = run(detector, pcm, EndpointSettings(no_input_ms=0))
    assert again == pytest.approx(first, abs=1e-6)
    assert max(first) > 0.5


@pytest.mark.parametrize("name", DETECTORS)
@pytest.mark.parametrize(
    "bad",
    [
        np.zeros(159, np.int16),
        np.zeros(320, np.int16),
        np.zeros(160, np.float32),
        np.zeros((2, 80), np.int16),
    ],
)
def test_a_frame_of_the_wrong_size_or_type_is_refused(name: str, bad: Pcm) -> None:
    """Anything but 160 int16 samples at 8 kHz raises AsrError saying what a frame must be."""
    with pytest.raises(AsrError, match="20 ms frames of 160 int16 samples"):
        load_detector(name, 8000).probability(bad)


def test_names_rates_and_options_are_checked() -> None:
    """Unknown names, options and rates fail with AsrError; auto is the measured choice."""
    assert load_detector("auto", 8000).name == AUTO
    assert load_detector("webrtc:1", 16000).name == "webrtc"
    with pytest.raises(AsrError, match="unknown VAD"):
        load_detector("neural", 8000)
    with pytest.raises(AsrError, match="aggressiveness"):
        load_detector("webrtc:5", 8000)
    with pytest.raises(AsrError, match="takes no option"):
        load_detector("silero:2", 8000)
    with pytest.raises(AsrError, match="44100 Hz"):
        load_detector("silero", 44100)


def test_missing_packages_raise_engine_unavailable_with_the_install_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without webrtcvad, onnxruntime or the silero-vad wheel: EngineUnavailable saying what to install."""
    monkeypatch.setitem(sys.modules, "webrtcvad", None)
    with pytest.raises(EngineUnavailable, match="pip install webrtcvad-wheels"):
        load_detector("webrtc", 8000)
    monkeypatch.setattr(silero, "_DISTRIBUTION", "silero-vad-not-installed")
    with pytest.raises(EngineUnavailable, match="--no-deps silero-vad"):
        load_detector("silero", 8000)
    monkeypatch.undo()
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    silero._session.cache_clear()
    try:
        with pytest.raises(EngineUnavailable, match="onnxruntime"):
            load_detector("silero", 16000)
    finally:
        silero._session.cache_clear()


def test_auto_falls_back_to_webrtc_where_silero_is_not_installed() -> None:
    """A plain `pip install ivr-server` has no silero-vad (installed apart: its metadata asks for
    torch): `auto` still serves calls, with WebRTC's detector, in a fresh process."""
    code = (
        "from importlib import metadata\n"
        "real = metadata.distribution\n"
        "def gone(name):\n"
        "    if name == 'silero-vad':\n"
        "        raise metadata.PackageNotFoundError(name)\n"
        "    return real(name)\n"
        "metadata.distribution = gone\n"
        "from ivr_server.speech.vad.detectors import load_detector\n"
        "from ivr_server.speech.vad.webrtc import WebRtcDetector\n"
        "assert isinstance(load_detector('auto', 8000), WebRtcDetector)\n"
        "try:\n"
        "    load_detector('silero', 8000)\n"
        "except Exception as err:\n"
        "    print(type(err).__name__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    lines = out.stdout.strip().splitlines()
    assert "vad.fallback" in lines[0] and "using=webrtc" in lines[0]  # said once, with the fix
    assert lines[-1] == "EngineUnavailable", out.stderr  # asked for by name: still an error


def test_card_digits_read_with_pauses_are_one_turn_at_the_digit_end_of_turn() -> None:
    """Piper reading an account number pauses at each comma; with the banking flow's quick end of
    turn (300 ms) the server's detector (auto) ends the turn after the first digits, with a digit
    question's (call_port.end_of_turn_ms: 800 ms) the eight digits are one turn."""
    from ivr_server.dialog.call_port import end_of_turn_ms
    from ivr_server.dialog.spec.model import Settings as StateSettings
    from tests.support.audio import piper

    said = "one, two, three, four, five, six, seven, eight."
    pcm = np.concatenate([np.zeros(4000, np.int16), piper(said, 8000), np.zeros(16000, np.int16)])
    flow = StateSettings(end_silence_ms=300)
    turns = {}
    for grammar in (None, "digits4"):
        ms = end_of_turn_ms(flow, grammar, 700)
        _, events = run(load_detector(AUTO, 8000), pcm, EndpointSettings(end_silence_ms=ms, no_input_ms=0))
        ended = [e for e in events if isinstance(e, SpeechEnded)]
        assert ended, events
        turns[grammar] = ended[0].end_ms - ended[0].start_ms
    speech_ms = 1000 * len(piper(said, 8000)) / 8000
    assert turns[None] < speech_ms / 2 < speech_ms * 0.8 < turns["digits4"], (turns, speech_ms)
