"""PocketSphinx with the US-English model its wheel ships: the engine that works out of the box.

Decoders are expensive to build (the acoustic model is loaded per decoder), so the engine keeps
a pool per grammar and a recognizer borrows one for its stream. Each stream starts with a fresh
front end (cepstral mean, noise estimate), so a result never depends on the caller decoded
before; only the acoustic model and search are reused. Audio
at any rate is resampled to the model's 16 kHz as it streams.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ivr_server.errors import AsrError, EngineUnavailable
from ivr_server.media.g711 import Pcm
from ivr_server.media.resample import StreamResampler
from ivr_server.speech.asr.bandfill import BandFill
from ivr_server.speech.asr.base import AsrResult, StreamState, WordTiming

MODEL_RATE = 16000
FRAMES_PER_S = 100  # PocketSphinx's feature frame rate
_FILLERS = re.compile(r"^(<s>|</s>|<sil>|\[.*\]|\+\+.*\+\+)$")
_WORD = re.compile(r"^[a-z0-9'][a-z0-9'.-]*$")


class PocketSphinxEngine:
    name = "pocketsphinx"
    languages = frozenset({"en"})

    def __init__(self, model_dir: Path | None = None) -> None:
        try:
            import pocketsphinx
        except ImportError as err:
            raise EngineUnavailable("PocketSphinx is not installed: pip install pocketsphinx") from err
        self._ps: Any = pocketsphinx
        self.model_dir = model_dir or Path(pocketsphinx.get_model_path()) / "en-us"
        for needed in ("en-us", "cmudict-en-us.dict", "en-us.lm.bin"):
            if not (self.model_dir / needed).exists():
                raise EngineUnavailable(
                    f"PocketSphinx model incomplete: {self.model_dir / needed} is missing"
                )
        version = getattr(pocketsphinx, "__version__", "5")
        self.model_id = f"pocketsphinx-{version}/{self.model_dir.name}"
        self._pool: dict[tuple[str, ...] | None, list[Any]] = {}
        self._lock = threading.Lock()  # recognizers may live in worker threads

    def accepts_rate(self, sample_rate: int) -> bool:
        return 8000 <= sample_rate <= 48000

    def recognizer(self, sample_rate: int, phrases: Sequence[str] | None = None) -> PocketSphinxRecognizer:
        key = tuple(phrases) if phrases else None
        with self._lock:
            idle = self._pool.setdefault(key, [])
            decoder = idle.pop() if idle else None
        if decoder is None:
            decoder = self._new_decoder(key)
        else:
            decoder.reinit_feat()  # fresh front end: cepstral mean and noise estimate
        return PocketSphinxRecognizer(self, decoder, key, sample_rate)

    def _release(self, key: tuple[str, ...] | None, decoder: Any) -> None:
        with self._lock:
            self._pool.setdefault(key, []).append(decoder)

    def _new_decoder(self, phrases: tuple[str, ...] | None) -> Any:
        d = self.model_dir
        kwargs: dict[str, Any] = {
            "hmm": str(d / "en-us"),
            "dict": str(d / "cmudict-en-us.dict"),
            "samprate": MODEL_RATE,
            "logfn": "/dev/null",
        }
        if phrases is None:
            return self._ps.Decoder(lm=str(d / "en-us.lm.bin"), **kwargs)
        decoder = self._ps.Decoder(lm=None, **kwargs)
        unknown = sorted({w for p in phrases for w in p.split() if decoder.lookup_word(w) is None})
        bad = sorted({w for p in phrases for w in p.split() if not _WORD.match(w)})
        if bad or unknown:
            raise AsrError(f"grammar words the English dictionary lacks: {', '.join(bad + unknown)}")
        rule = " | ".join(f"( {p} )" for p in phrases)
        decoder.add_jsgf_string("grammar", f"#JSGF V1.0;\ngrammar g;\npublic <g> = ( {rule} )+ ;\n")
        decoder.activate_search("grammar")
        return decoder


class PocketSphinxRecognizer:
    def __init__(
        self, engine: PocketSphinxEngine, decoder: Any, key: tuple[str, ...] | None, sample_rate: int
    ) -> None:
        self._engine = engine
        self._decoder = decoder
        self._key = key
        self._resampler = StreamResampler(sample_rate, MODEL_RATE)
        # Narrowband audio (a call at 8 kHz) leaves the model's upper filters empty: fill them.
        self._fill = BandFill(MODEL_RATE, sample_rate / 2) if sample_rate < MODEL_RATE else None
        self._state = StreamState(engine.name, engine.model_id)
        decoder.start_utt()

    def feed(self, pcm: Pcm) -> AsrResult | None:
        self._state.check_open()
        samples = self._band(self._resampler.process(pcm))
        if len(samples):  # process_raw refuses an empty buffer
            self._decoder.process_raw(samples.tobytes(), False, False)
        hyp = self._decoder.hyp()
        return self._state.partial(hyp.hypstr if hyp is not None else "")

    def _band(self, samples: Pcm) -> Pcm:
        return self._fill.process(samples) if self._fill is not None and len(samples) else samples

    def finish(self) -> AsrResult:
        self._state.close()
        d = self._decoder
        try:
            tail = self._band(self._resampler.flush())
            if len(tail):
                d.process_raw(tail.tobytes(), False, False)
            d.end_utt()
            hyp = d.hyp()
            logmath = d.get_logmath()
            words = tuple(
                WordTiming(
                    seg.word.split("(")[0],
                    seg.start_frame / FRAMES_PER_S,
                    (seg.end_frame + 1) / FRAMES_PER_S,
                    _probability(logmath, seg.prob),
                )
                for seg in (d.seg() or ())
                if not _FILLERS.match(seg.word)
            )
            confidence = _probability(logmath, d.get_prob()) if hyp is not None else None
            text = hyp.hypstr if hyp is not None else ""
        finally:
            self._engine._release(self._key, d)
        return AsrResult(text, True, self._engine.name, self._engine.model_id, confidence, words)


def _probability(logmath: Any, log_value: int) -> float | None:
    """PocketSphinx's log-base posterior as a probability; None where the search gives none."""
    if log_value == 0:
        return None  # grammar searches report no posterior (a literal 0 would read as certainty)
    return float(min(1.0, max(0.0, logmath.exp(log_value))))
