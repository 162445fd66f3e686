"""PocketSphinx with the US-English model its wheel ships: the engine that works out of the box.

Decoders are expensive to build (the acoustic model is loaded per decoder), so the engine keeps
a pool per grammar and search profile, and a recognizer borrows one for its stream. An n-gram
model is loaded once per process and shared by every decoder that searches with it (a decoder
keeps only its own search tree): a warm decoder of a flow's model costs about 5.4 MB, not 7.5 MB,
and one of the general model 55 MB, not 88 MB. A worker decodes one stream at a time (and the
binding holds the GIL), so decoders never read a shared model at the same moment. Each stream
starts with a fresh front end (cepstral mean, noise estimate), so a result never depends on the
caller decoded before; only the acoustic model and search are reused. Audio at any rate is
resampled to the model's 16 kHz as it streams.

Open-vocabulary search has two profiles (benchmarks/speech.md measures both): ``accurate``
(PocketSphinx's defaults) and ``fast`` (at most 1500 active HMMs a frame, no second flat-lexicon
pass, acoustic scores on every other frame), about 3.8x cheaper for about 7 points more word
errors on telephone-band speech. ``auto`` gives a stream the accurate search while this process
decodes fewer than ``accurate_streams`` open-vocabulary streams, and the fast one beyond: quality
when the box is quiet, capacity when it is busy. Grammars are cheap and always search fully.
The profile a result came from is part of its ``model`` id, so a stored turn says which it was.

The digits grammar also runs the bundled digit classifier (digits.py): PocketSphinx alone gets
about half of telephone digits right. A flow's compiled digit grammar comes with its aside
model, heard on the same audio (aside.py): a caller who says "cancel that" instead of the
digits is heard saying it.

Narrowband streams (a call at 8 kHz) are heard with the telephone-channel means
(speech/acoustic/telephone.py) unless ``telephone_model`` is ``off``; wideband ones with the
model as shipped. The model id of a result says which (``+telephone-en-us@<version>``).
"""

from __future__ import annotations

import functools
import math
import re
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import structlog

from ivr_server.errors import AsrError, EngineUnavailable
from ivr_server.media.g711 import Pcm
from ivr_server.speech.acoustic.telephone import telephone_model as telephone_model_for
from ivr_server.speech.adapt.grammars import digit_range
from ivr_server.speech.asr.aside import AsideRecognizer
from ivr_server.speech.asr.base import (
    DIGIT_WORDS,
    Alternative,
    AsrResult,
    LanguageModel,
    Recognizer,
    StreamState,
    WordTiming,
    utterance_confidence,
)
from ivr_server.speech.asr.cmn import TELEPHONE_CMN
from ivr_server.speech.asr.digit_model import DigitClassifier
from ivr_server.speech.asr.digit_model import preload as preload_digits
from ivr_server.speech.asr.digit_span import DigitSpanRecognizer
from ivr_server.speech.asr.digits import DigitsRecognizer
from ivr_server.speech.asr.model_input import MODEL_RATE, ModelInput

log = structlog.get_logger(__name__)

FRAMES_PER_S = 100  # PocketSphinx's feature frame rate
_FILLERS = re.compile(r"^(<s>|</s>|<sil>|\[.*\]|\+\+.*\+\+)$")
_WORD = re.compile(r"^[a-z0-9'][a-z0-9'.-]*$")
SEARCHES = ("auto", "accurate", "fast")
# (grammar phrases, or None for an n-gram search; search profile; a flow's compiled model or None
# for the general one; whether the stream is narrowband: telephone means)
_Key = tuple[tuple[str, ...] | None, str, LanguageModel | None, bool]
SILENT_PEAK = 100  # about -50 dBFS: nothing but silence or line noise (as media/audio.py warns)
NBEST = 5  # hypotheses kept for understanding (the first is the result's text)
_PROFILES: dict[str, dict[str, Any]] = {
    "accurate": {},
    "fast": {"maxhmmpf": 1500, "fwdflat": False, "ds": 2},
}


class PocketSphinxEngine:
    name = "pocketsphinx"
    languages = frozenset({"en"})

    def __init__(
        self,
        model_dir: Path | None = None,
        *,
        search: str = "auto",
        accurate_streams: int = 1,
        telephone_model: str = "bundled",
        call_rate: int = 8000,
    ) -> None:
        """``telephone_model``: bundled, off or an adaptation directory (telephone.py);
        ``call_rate``: the rate calls arrive at (what ``warm`` builds decoders for)."""
        if search not in SEARCHES:
            raise EngineUnavailable(
                f"unknown PocketSphinx search {search!r} (choose from {', '.join(SEARCHES)})"
            )
        if accurate_streams < 0:
            raise EngineUnavailable(f"accurate_streams must be 0 or more, not {accurate_streams}")
        self.search = search
        self.accurate_streams = accurate_streams
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
        self.telephone = telephone_model_for(telephone_model, self.model_dir / "en-us")
        self.call_rate = call_rate
        self.model_id = f"pocketsphinx-{version}/{self.model_dir.name}"
        self._pool: dict[_Key, list[Any]] = {}
        self._ngrams: dict[Path, Any] = {}  # n-gram model file -> the one loaded copy decoders share
        self._open_vocabulary_streams = 0
        self._classifier: DigitClassifier | Literal[False] | None = None  # False: tried, failed
        self._lock = threading.Lock()  # recognizers may live in worker threads

    def accepts_rate(self, sample_rate: int) -> bool:
        return 8000 <= sample_rate <= 48000

    def recognizer(
        self, sample_rate: int, phrases: Sequence[str] | None = None, model: LanguageModel | None = None
    ) -> Recognizer:
        narrowband = sample_rate < MODEL_RATE and self.telephone is not None
        with self._lock:
            if phrases:  # a compiled grammar for them (a digit string's length) or a word loop
                grammar = model if model is not None and model.grammar is not None else None
                key: _Key = (tuple(phrases), "accurate", grammar, narrowband)
            else:
                key = (None, self._profile(), model, narrowband)
                self._open_vocabulary_streams += 1
            idle = self._pool.setdefault(key, [])
            decoder = idle.pop() if idle else None
        try:
            if decoder is None:
                decoder = self._new_decoder(key)
            else:
                decoder.reinit_feat()  # fresh front end: cepstral mean and noise estimate
        except BaseException:
            self._release(key, None)
            raise
        plain = PocketSphinxRecognizer(self, decoder, key, sample_rate)
        recognizer: Recognizer = plain
        grammar = key[2]
        bounds = digit_range(grammar.name.rsplit("/", 1)[-1]) if grammar is not None else None
        if key[0] == DIGIT_WORDS and (classifier := self._digit_classifier()) is not None:
            model_id = f"{plain.model}+{classifier.model_id}"
            aligned = grammar is not None  # held to a length: the classifier checks each digit
            recognizer = DigitsRecognizer(
                recognizer,
                classifier,
                sample_rate,
                model_id,
                aligned=aligned,
                least=bounds[0] if bounds else 1,
            )
        if grammar is not None and grammar.words is not None:
            try:
                aside = self.recognizer(sample_rate, None, grammar.words)
            except BaseException:
                recognizer.finish()  # its decoder back to the pool
                raise
            least, most = bounds if bounds else (1, 1)
            return AsideRecognizer(recognizer, aside, least, most)
        if key[0] is None and grammar is not None and (spans := _span_grammars(grammar)):
            return DigitSpanRecognizer(
                recognizer,
                lambda n: self.recognizer(sample_rate, DIGIT_WORDS, spans[n]),
                sample_rate,
                sorted(spans),
            )
        return recognizer

    def warm(self, streams: int, models: Sequence[LanguageModel | None] = (None,)) -> None:
        """Pool enough open-vocabulary decoders for ``streams`` at once with each of ``models``
        (a flow's compiled open model, or None: the general one), with the profiles they would
        get. A flow's decoder takes ~16 ms to build with its n-gram model shared (a general one
        ~0.25 s): built ahead, a burst of calls does not wait for them. Warm the models calls will use: a
        general decoder (its full dictionary's search tree, ~55 MB) is wasted memory when
        every flow has its own (~5 MB). Used decoders go back to the pool, so it also keeps
        what the busiest moment since start-up needed."""
        if self.search == "auto":
            accurate = min(streams, self.accurate_streams)
            wanted = {"accurate": accurate, "fast": streams - accurate}
        else:
            wanted = {self.search: streams}
        narrowband = self.call_rate < MODEL_RATE and self.telephone is not None
        for model in dict.fromkeys(models):
            for profile, count in wanted.items():
                key: _Key = (None, profile, model, narrowband)
                with self._lock:
                    missing = count - len(self._pool.setdefault(key, []))
                for _ in range(missing):
                    decoder = self._new_decoder(key)
                    with self._lock:
                        self._pool[key].append(decoder)
        self.preload()
        log.debug("asr.decoders_warm", streams=streams, models=[m.name if m else "general" for m in models],
                  idle=self.idle_decoders())  # fmt: skip

    def preload(self) -> None:
        """The digit classifier's model and what it computes with, loaded before the first
        digits are heard (once: later calls cost nothing)."""
        if self._digit_classifier() is not None:
            preload_digits()

    def idle_decoders(self) -> dict[str, int]:
        """Pooled decoders no stream holds: per open-vocabulary profile, and grammars together."""
        idle = {"accurate": 0, "fast": 0, "grammar": 0}
        with self._lock:
            for (phrases, profile, _model, _narrow), decoders in self._pool.items():
                idle["grammar" if phrases else profile] += len(decoders)
        return idle

    def _digit_classifier(self) -> DigitClassifier | None:
        """The bundled digit model, loaded on first use; None (logged once) if it cannot load."""
        with self._lock:
            if self._classifier is None:
                try:
                    self._classifier = DigitClassifier()
                except (EngineUnavailable, AsrError, OSError) as err:
                    log.warning("asr.digit_model_unavailable", error=str(err), using="pocketsphinx")
                    self._classifier = False
            return self._classifier or None

    def _profile(self) -> str:
        if self.search != "auto":
            return self.search
        return "accurate" if self._open_vocabulary_streams < self.accurate_streams else "fast"

    def _release(self, key: _Key, decoder: Any) -> None:
        with self._lock:
            if key[0] is None:
                self._open_vocabulary_streams -= 1
            if decoder is not None:
                self._pool.setdefault(key, []).append(decoder)

    def _new_decoder(self, key: _Key) -> Any:
        phrases, profile, model, narrowband = key
        d = self.model_dir
        kwargs: dict[str, Any] = {
            **({"mean": str(self.telephone.means)} if narrowband and self.telephone else {}),
            "hmm": str(d / "en-us"),
            "dict": str(model.dictionary if model else d / "cmudict-en-us.dict"),
            "samprate": MODEL_RATE,
            "logfn": "/dev/null",
            **_PROFILES[profile],
        }
        if phrases is None and model is not None:
            try:
                return self._searching(self._ps.Decoder(lm=None, **kwargs), model.arpa)
            except (RuntimeError, ValueError) as err:  # files removed or torn since compiling
                raise AsrError(
                    f"recognition resources {model.name} ({model.arpa}) fail to load: {err}"
                ) from err
        if phrases is None:
            return self._searching(self._ps.Decoder(lm=None, **kwargs), d / "en-us.lm.bin")
        decoder = self._ps.Decoder(lm=None, **kwargs)
        unknown = sorted({w for p in phrases for w in p.split() if decoder.lookup_word(w) is None})
        bad = sorted({w for p in phrases for w in p.split() if not _WORD.match(w)})
        if bad or unknown:
            raise AsrError(f"grammar words the English dictionary lacks: {', '.join(bad + unknown)}")
        if model is not None and model.grammar is not None:
            try:
                decoder.add_jsgf_file("grammar", str(model.grammar))
            except (RuntimeError, ValueError) as err:
                raise AsrError(
                    f"recognition resources {model.name} ({model.grammar}) fail to load: {err}"
                ) from err
        else:
            rule = " | ".join(f"( {p} )" for p in phrases)
            decoder.add_jsgf_string("grammar", f"#JSGF V1.0;\ngrammar g;\npublic <g> = ( {rule} )+ ;\n")
        decoder.activate_search("grammar")
        return decoder

    def _searching(self, decoder: Any, lm: Path | None) -> Any:
        """``decoder`` searching with the n-gram model in ``lm``, loaded once for the process."""
        if lm is None:
            raise ValueError("an open-vocabulary model without an n-gram file")
        with self._lock:
            shared = self._ngrams.get(lm)
        if shared is None:
            loaded = self._ps.NGramModel(decoder.config, decoder.logmath, str(lm))
            with self._lock:
                shared = self._ngrams.setdefault(lm, loaded)
        decoder.add_lm("open", shared)
        decoder.activate_search("open")
        return decoder

    def shared_ngram_models(self) -> int:
        """N-gram models loaded in this process (each shared by all its decoders)."""
        with self._lock:
            return len(self._ngrams)


class PocketSphinxRecognizer:
    def __init__(self, engine: PocketSphinxEngine, decoder: Any, key: _Key, sample_rate: int) -> None:
        self._engine = engine
        self._decoder = decoder
        self._key = key
        self._input = ModelInput(sample_rate, MODEL_RATE)  # resampled, narrowband band-filled
        self.model = engine.model_id
        if key[3] and engine.telephone is not None:
            self.model += f"+{engine.telephone.label}"
        self.model += "#fast" if key[1] == "fast" else ""
        self._resources = key[2].version if key[2] is not None else None
        if key[2] is not None:
            self.model += f"+{key[2].name}@{key[2].version}"
        self._state = StreamState(engine.name, self.model)
        self._peak = 0  # loudest sample fed: audio that never rose above silence has no words
        if sample_rate < MODEL_RATE and (key[0] is None or key[3]):
            # A call's narrowband audio: start from its channel's mean (the telephone model was
            # adapted from it too). Grammars heard with the wideband model keep the default
            # their island logic was measured with (digits.py).
            decoder.set_cmn(TELEPHONE_CMN)
        decoder.start_utt()

    def feed(self, pcm: Pcm) -> AsrResult | None:
        self._state.check_open()
        if len(pcm):
            self._peak = max(self._peak, int(np.abs(pcm.astype(np.int32)).max()))
        samples = self._input.process(pcm)
        if len(samples):  # process_raw refuses an empty buffer
            self._decoder.process_raw(samples.tobytes(), False, False)
        hyp = self._decoder.hyp()
        return self._state.partial(hyp.hypstr if hyp is not None else "")

    def finish(self) -> AsrResult:
        self._state.close()
        d = self._decoder
        try:
            tail = self._input.flush()
            if len(tail):
                d.process_raw(tail.tobytes(), False, False)
            d.end_utt()
            hyp = d.hyp()
            # Word posteriors come from the n-gram search's lattice; a grammar search gives none.
            posteriors = self._key[0] is None
            words = tuple(
                WordTiming(
                    seg.word.split("(")[0],
                    seg.start_frame / FRAMES_PER_S,
                    (seg.end_frame + 1) / FRAMES_PER_S,
                    _probability(seg.prob) if posteriors else None,
                )
                for seg in (d.seg() or ())
                if not _FILLERS.match(seg.word)
            )
            confidence = utterance_confidence(words)
            text = hyp.hypstr if hyp is not None else ""
            alternatives = _nbest(d, text) if self._key[0] is None else ()
            if self._peak < SILENT_PEAK:  # digital silence: the decoder would still name words
                text, words, confidence, alternatives = "", (), None, ()
        finally:
            self._engine._release(self._key, d)
        return AsrResult(
            text, True, self._engine.name, self.model, confidence, words, alternatives, self._resources
        )


@functools.lru_cache(maxsize=64)  # once per flow version, not once per call
def _span_grammars(model: LanguageModel) -> dict[int, LanguageModel]:
    """An open model's digit grammars by the one length each holds (compiled without their
    aside model: the stretch cut out is digits)."""
    out = {}
    for grammar in model.digit_spans:
        bounds = digit_range(grammar.name.rsplit("/", 1)[-1])
        if bounds is not None and bounds[0] == bounds[1]:
            out[bounds[0]] = grammar
    return out


def _nbest(decoder: Any, best: str) -> tuple[Alternative, ...]:
    """The best distinct word strings of the lattice with their path scores, as log10
    posteriors among those listed; the decoder's own best first (it is scored as the best of
    the list when the lattice search did not list it)."""
    texts: dict[str, float] = {}
    try:
        for hyp in decoder.nbest() or ():  # None: no lattice (the fast search keeps none)
            if hyp is None:  # the iterator ends with None on some lattices
                break
            text = " ".join(w for w in hyp.hypstr.split() if not _FILLERS.match(w))
            if text and text not in texts and hyp.score > 0:
                texts[text] = math.log10(hyp.score)
            if len(texts) >= NBEST:
                break
    except Exception as err:  # extra information only: never the reason a turn is lost
        log.debug("asr.nbest_unavailable", error=f"{type(err).__name__}: {err}")
    if not best:
        return ()
    scores = {best: texts.get(best, max(texts.values(), default=0.0)), **texts}
    top = max(scores.values())
    norm = top + math.log10(sum(10 ** (v - top) for v in scores.values()))
    ranked = [best, *sorted((t for t in scores if t != best), key=lambda t: -scores[t])]
    return tuple(Alternative(t, round(scores[t] - norm, 4)) for t in ranked)


def _probability(value: float) -> float:
    """A posterior as the library gives it (already a probability), kept in [0, 1]."""
    return round(float(min(1.0, max(0.0, value))), 4)
