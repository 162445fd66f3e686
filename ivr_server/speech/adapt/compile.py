"""Compiling a flow's recognition resources, cached by the hash of what they are built from.

For a flow: the *open* model (its corpus estimated with IRSTLM, with digit strings as callers
say them inside a request when its slots collect digits, mixed with the recognizer's general
English model), one model per kind of closed question the flow asks (yes/no, amounts, numbers,
dates: that corpus, with the repairs callers ask for there, mixed with the open model, so "no,
I said five" still comes through), a grammar per length of digit string its slots ask for
(grammars.py) with the *aside* model heard beside it (the repairs and digit strings mixed with
the open model: "cancel that", "what's my balance first?"), and one pronouncing dictionary.
The version is the SHA-256 of the inputs (corpora, pronunciations, settings, the general
model's file, this compiler's version): the same flow on a restart finds its files in
``cache_dir/<version>/`` and builds nothing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import threading
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import structlog

from ivr_server.dialog.spec.model import Flow
from ivr_server.errors import IvrError, ResourceError
from ivr_server.speech.adapt import corpus
from ivr_server.speech.adapt.arpa import ArpaModel, write_arpa
from ivr_server.speech.adapt.background import GeneralModel
from ivr_server.speech.adapt.estimate import estimate
from ivr_server.speech.adapt.grammars import answer_kind, digit_range, digits_jsgf, kind_of
from ivr_server.speech.adapt.lexicon import Lexicon, pronounce
from ivr_server.speech.adapt.mix import choose_weight, interpolate
from ivr_server.speech.asr.base import DIGIT_WORDS, LanguageModel

log = structlog.get_logger(__name__)
COMPILER_VERSION = "4"  # 2: digit grammars; 3: digits in the open corpus; 4: repairs, aside


@dataclass(frozen=True)
class AdaptSettings:
    order: int = 3
    """n-gram order of every model."""
    flow_weight: float | None = None
    """Share of the flow's own corpus in the open model, the rest being the general model;
    None: chosen by EM on a tenth of the flow's sentences held out (big corpora earn more)."""
    background_words: int = 3000
    """The general model's most probable words added to the flow's vocabulary."""
    background_contexts: int = 2000
    """Histories (most probable words first) whose strong general bigrams join the mix..."""
    background_bigram_min: float = 0.003
    """...those with P(w | h) at least this."""
    closed_weight: float = 0.7
    """Share of the closed answers in a closed question's model; the rest is the open model."""
    aside_weight: float = 0.5
    """Share of the repairs and digit strings in the aside model; the rest is the open model."""
    max_words: int = 50_000
    """Distinct words a flow's corpus may hold (each needs a pronunciation and search space)."""


@dataclass(frozen=True)
class FlowResources:
    flow: str
    version: str
    directory: Path
    models: dict[str, LanguageModel] = field(default_factory=dict)  # "open", "yesno", ...
    words: int = 0
    seconds: float = 0.0
    cached: bool = False

    def model(self, kind: str | None) -> LanguageModel | None:
        """The model for a question of ``kind`` (None: open); the open one for kinds not built."""
        return self.models.get(kind or corpus.OPEN) or self.models.get(corpus.OPEN)


class Compiler:
    """Holds the general model and the dictionary (loaded on first use) for every compile."""

    def __init__(self, cache_dir: Path, model_dir: Path | None = None, settings: AdaptSettings | None = None):
        self.cache_dir = cache_dir
        self.settings = settings or AdaptSettings()
        self._model_dir = model_dir
        self._general: GeneralModel | None = None
        self._bigrams: list[tuple[str, ...]] | None = None
        self._lock = threading.Lock()

    @property
    def model_dir(self) -> Path:
        """The recognizer's model: its dictionary and general language model are the base."""
        if self._model_dir is None:
            try:
                import pocketsphinx
            except ImportError as err:
                raise ResourceError("PocketSphinx is not installed: pip install pocketsphinx") from err
            self._model_dir = Path(pocketsphinx.get_model_path()) / "en-us"
        return self._model_dir

    def general(self) -> GeneralModel:
        with self._lock:
            if self._general is None:
                lexicon = Lexicon.read(self.model_dir / "cmudict-en-us.dict")
                self._general = GeneralModel(self.model_dir / "en-us.lm.bin", lexicon)
            return self._general

    def background_bigrams(self) -> list[tuple[str, ...]]:
        """The general model's strong bigrams, computed once per machine (cached beside the
        resources, keyed by the model file and the settings that choose them)."""
        general = self.general()
        with self._lock:
            if self._bigrams is not None:
                return self._bigrams
            s = self.settings
            stat = general.path.stat()
            key = hashlib.sha256(
                f"{general.path}:{stat.st_size}:{int(stat.st_mtime)}:{s.background_contexts}:"
                f"{s.background_words}:{s.background_bigram_min}".encode()
            ).hexdigest()[:12]
            path = self.cache_dir / f"general-bigrams-{key}.txt"
            try:
                self._bigrams = [
                    tuple(line.split()) for line in path.read_text(encoding="utf-8").splitlines()
                ]
            except OSError:
                self._bigrams = general.strong_bigrams(
                    s.background_contexts, s.background_words, s.background_bigram_min
                )
                try:
                    self.cache_dir.mkdir(parents=True, exist_ok=True)
                    tmp = path.with_suffix(f".{os.getpid()}.tmp")
                    tmp.write_text("".join(" ".join(b) + "\n" for b in self._bigrams), encoding="utf-8")
                    tmp.replace(path)
                except OSError as err:
                    log.warning("asr.background_not_cached", path=str(path), error=str(err))
            return self._bigrams

    def compile(self, flow: Flow) -> FlowResources:
        """The flow's resources, from the cache or built; ResourceError names the file and what
        could not be compiled (a word with no pronunciation, a corpus with no words)."""
        started = time.perf_counter()
        try:
            inputs = self._inputs(flow)
        except ResourceError:  # already names the file and what is wrong
            raise
        except IvrError as err:  # a data file the flow names (NluError)
            raise ResourceError(f"{flow.file}: {err}") from err
        version = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:12]
        cached = self._cached(flow.name, version)
        if cached is not None:
            return cached
        try:
            resources = self._build(flow, version, inputs, started)
        except ResourceError as err:
            raise ResourceError(f"{flow.file}: {err}") from err
        log.info("asr.resources_compiled", flow=flow.name, version=version, words=resources.words,
                 models=sorted(resources.models), seconds=resources.seconds)  # fmt: skip
        return resources

    # --- inputs and cache -------------------------------------------------------------------
    def _inputs(self, flow: Flow) -> dict[str, object]:
        kinds = {k for s in flow.slots.values() if (k := kind_of(s))} | {"yesno"}
        grammars = self._grammars(flow)
        kinds |= {corpus.ASIDE} if grammars else set()
        lm = self.model_dir / "en-us.lm.bin"
        try:
            stat = lm.stat()
        except OSError as err:
            raise ResourceError(f"the general language model {lm} is missing: {err}") from err
        return {
            "compiler": COMPILER_VERSION,
            "settings": asdict(self.settings),
            "general": [str(lm), stat.st_size, int(stat.st_mtime)],
            "open": corpus.open_sentences(flow),
            "open_digits": corpus.digit_sentences(flow),
            "closed": {k: corpus.closed_sentences(k, flow) for k in sorted(kinds)},
            "grammars": grammars,
            "pronunciations": dict(sorted(flow.recognition.pronunciations.items())),
        }

    @staticmethod
    def _grammars(flow: Flow) -> dict[str, str]:
        """The JSGF text of every digit-string length the flow's slots ask for."""
        kinds = {answer_kind(s) for s in flow.slots.values()}
        try:
            return {k: digits_jsgf(k) for k in sorted(k for k in kinds if k and digit_range(k) is not None)}
        except ResourceError as err:
            raise ResourceError(f"{flow.file}: {err}") from err

    def _cached(self, flow: str, version: str) -> FlowResources | None:
        directory = self.cache_dir / version
        try:
            manifest = json.loads((directory / "manifest.json").read_text(encoding="utf-8"))
            models = _models(flow, version, directory, manifest["models"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        files = [f for m in models.values() for f in (m.arpa, m.grammar, m.dictionary) if f is not None]
        if any(bool(m.get("words")) and models[k].words is None for k, m in manifest["models"].items()):
            return None
        if not all(f.is_file() for f in files):
            return None
        return FlowResources(flow, version, directory, models, manifest["words"], 0.0, cached=True)

    # --- building ---------------------------------------------------------------------------
    def _build(self, flow: Flow, version: str, inputs: Mapping[str, object], started: float) -> FlowResources:
        s = self.settings
        general = self.general()
        open_sentences = list(inputs["open"])  # type: ignore[call-overload]
        if not open_sentences:
            raise ResourceError(
                "no phrases to learn its callers' words from (no intent examples, data or prompts)"
            )
        digits = list(inputs["open_digits"])  # type: ignore[call-overload]
        own = estimate(open_sentences + digits, s.order)
        if len(own.vocabulary) > s.max_words:
            raise ResourceError(
                f"{len(own.vocabulary)} distinct words: more than the {s.max_words} a flow may use"
            )
        weight = s.flow_weight if s.flow_weight is not None else self._weight(open_sentences, digits)
        open_model = interpolate(
            own, general.logprob, weight, general.top_words(s.background_words), self.background_bigrams()
        )
        built: dict[str, tuple[ArpaModel, tuple[str, ...]]] = {corpus.OPEN: (open_model, ())}
        closed: dict[str, list[str]] = inputs["closed"]  # type: ignore[assignment]
        corrections = set(corpus.correction_sentences(flow))
        for kind, sentences in closed.items():
            answers = estimate(sentences, s.order)
            share = s.aside_weight if kind == corpus.ASIDE else s.closed_weight
            mixed = interpolate(answers, open_model.logprob, share, open_model.vocabulary)
            # Phrase lists (Vosk) take what can be listed: not corrections' random digit strings.
            built[kind] = (mixed, tuple(sorted(set(sentences) - corrections)))
        grammars: dict[str, str] = inputs["grammars"]  # type: ignore[assignment]
        words = {w for model, _ in built.values() for w in model.vocabulary}
        words |= set(DIGIT_WORDS) if grammars else set()
        pronunciations = pronounce(words, general.lexicon, flow.recognition.pronunciations, flow.file)

        tmp = self.cache_dir / f".{version}.{os.getpid()}.{threading.get_ident()}"
        directory = self.cache_dir / version
        try:
            tmp.mkdir(parents=True, exist_ok=True)
            aside = corpus.ASIDE if corpus.ASIDE in built else None
            for kind, (model, _) in built.items():
                write_arpa(model, tmp / f"{kind}.arpa")
            for kind, jsgf in grammars.items():
                (tmp / f"{kind}.gram").write_text(jsgf, encoding="utf-8")
            _write_dictionary(pronunciations, tmp / "words.dict")
            seconds = round(time.perf_counter() - started, 2)
            manifest = {
                "flow": flow.name,
                "version": version,
                "words": len(pronunciations),
                "seconds": seconds,
                "flow_weight": round(weight, 4),
                "models": {
                    **{kind: {"ngrams": m.size(), "phrases": list(p)} for kind, (m, p) in built.items()},
                    **{
                        kind: {"grammar": f"{kind}.gram", "phrases": list(DIGIT_WORDS), "words": aside}
                        for kind in grammars
                    },  # fmt: skip
                },
            }
            (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1), encoding="utf-8")
            if directory.exists():  # another process built it meanwhile, or a torn earlier build
                shutil.rmtree(directory, ignore_errors=True)
            tmp.rename(directory)
        except OSError as err:
            shutil.rmtree(tmp, ignore_errors=True)
            raise ResourceError(f"cannot write recognition resources to {self.cache_dir}: {err}") from err
        entries: dict[str, dict[str, object]] = manifest["models"]  # type: ignore[assignment]
        models = _models(flow.name, version, directory, entries)
        return FlowResources(flow.name, version, directory, models, len(pronunciations), seconds)

    def _weight(self, sentences: list[str], digits: list[str]) -> float:
        """EM on every tenth sentence, the model estimated from the other nine and the digit
        sentences (made up here: how well they predict themselves says nothing of callers)."""
        if len(sentences) < 10:
            return 0.5
        held = sentences[9::10]
        rest = [x for i, x in enumerate(sentences) if i % 10 != 9]
        dev = estimate(rest + digits, self.settings.order)
        return choose_weight(dev, [h.split() for h in held], self.general().logprob)


def _models(
    flow: str, version: str, directory: Path, entries: Mapping[str, Mapping[str, object]]
) -> dict[str, LanguageModel]:
    """The manifest's entries as the recognizer takes them; a grammar's ``words`` names the
    model heard beside it."""
    models = {kind: _model(flow, version, directory, kind, m) for kind, m in entries.items()}
    grammars = tuple(m for m in models.values() if m.grammar is not None)
    for kind, entry in entries.items():
        beside = models.get(str(entry.get("words") or ""))
        if beside is not None:
            models[kind] = dataclasses.replace(models[kind], words=beside)
    if corpus.OPEN in models and grammars:
        models[corpus.OPEN] = dataclasses.replace(models[corpus.OPEN], digit_spans=grammars)
    return models


def _model(flow: str, version: str, directory: Path, kind: str, entry: Mapping[str, object]) -> LanguageModel:
    """A manifest entry as the recognizer takes it: an n-gram model or a grammar."""
    grammar = entry.get("grammar")
    return LanguageModel(
        f"{flow}/{kind}",
        version,
        None if grammar else directory / f"{kind}.arpa",
        directory / "words.dict",
        tuple(entry["phrases"]),  # type: ignore[arg-type]
        directory / str(grammar) if grammar else None,
    )


def _write_dictionary(pronunciations: Mapping[str, list[str]], path: Path) -> None:
    with path.open("w", encoding="utf-8") as fh:
        for word in sorted(pronunciations):
            for i, phones in enumerate(pronunciations[word]):
                fh.write(f"{word} {phones}\n" if i == 0 else f"{word}({i + 1}) {phones}\n")
