"""The telephone cepstral-mean prior (speech/asr/cmn.py), computed from recordings."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from ivr_server.evaluation.channel import Line, telephone
from ivr_server.media.audio import read_wav
from ivr_server.media.resample import resample
from ivr_server.speech.asr.bandfill import BandFill

MODEL_RATE = 16000
# The search does not change the mean: a digit grammar decodes fastest.
GRAMMAR = (
    "#JSGF V1.0;\ngrammar g;\n"
    "public <g> = ( zero | oh | one | two | three | four | five | six | seven | eight | nine )+ ;\n"
)


def calibration_decoder(model_dir: Path) -> Any:
    import pocketsphinx

    decoder = pocketsphinx.Decoder(
        hmm=str(model_dir / "en-us"), lm=None, dict=str(model_dir / "cmudict-en-us.dict"),
        samprate=MODEL_RATE, logfn="/dev/null",
    )  # fmt: skip
    decoder.add_jsgf_string("digits", GRAMMAR)
    decoder.activate_search("digits")
    return decoder


def utterance_mean(decoder: Any, pcm_8k: np.ndarray) -> list[float]:
    """The cepstral mean PocketSphinx computes over one whole 8 kHz utterance, fed as the call
    path feeds it (upsampled, top band filled)."""
    audio = BandFill(MODEL_RATE, 4000).process(resample(pcm_8k, 8000, MODEL_RATE))
    decoder.start_utt()
    decoder.process_raw(audio.tobytes(), False, True)
    decoder.end_utt()
    return [float(v) for v in decoder.get_cmn().split(",")]


def telephone_prior(recordings: Iterable[Path], decoder: Any) -> str:
    """The mean of the utterance means of recordings sent through the telephone voice band,
    as a ``cmninit`` string."""
    means = []
    for path in recordings:
        rate, pcm = read_wav(path)
        means.append(utterance_mean(decoder, telephone(pcm, rate, Line(snr_db=None))))
    if not means:
        raise ValueError("no recordings to calibrate from")
    return ",".join(f"{v:.2f}" for v in np.mean(means, axis=0))
