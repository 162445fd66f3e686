"""The intent model: character/word TF-IDF ⊕ sentence embeddings (encoder.py) -> logistic regression.

Chosen by measurement (research/intent-model/README.md): the TF-IDF block carries the exact
words and survives ASR misspellings, the embedding carries paraphrases; multinomial LR on both
was the best or tied-best on banking77, banking77 10-shot and CLINC150, at ~4 ms an utterance with
MiniLM alone (~15 ms beside mpnet, the default: encoder.py).

Confidence is calibrated: one temperature fitted on out-of-fold predictions of the training
data (>= 1 while some category has fewer than SHARPEN_MIN examples). Out of scope: the ``oos``
category when the data has one, plus a threshold on the top in-scope probability chosen on the
same out-of-fold predictions (the lowest that keeps out-of-scope recall >= ``oos_recall``
there, so in-scope accuracy loses as little as it can).
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

from ivr_server.dialog.decide import Guess
from ivr_server.dialog.nlu.data import OUT_OF_SCOPE, Example
from ivr_server.dialog.nlu.encoder import Encoder, default_encoder, encoder_named
from ivr_server.errors import NluError

if TYPE_CHECKING:
    from sklearn.linear_model import LogisticRegression

# scikit-learn is imported where a model is trained (or unpickled: pickle imports it), not with
# this module: its ~0.8 s would sit on the server's start-up path before anything else loads.

FORMAT = 3  # bump when training changes in a way the settings do not show: a new version hash
TOP_GUESSES = 5
SHARPEN_MIN = 10  # examples per category before calibration may make the model surer


@dataclass(frozen=True)
class NluSettings:
    c: float = 30.0  # inverse regularisation of the LR (banking77 CV peak)
    embedding_weight: float = 1.5  # the embedding block against the unit-norm TF-IDF blocks
    # Out-of-fold out-of-scope recall the threshold keeps. 0.90 was chosen on CLINC150's train split
    # alone (two halves, mpnet): 0.85 caught 80 % on the other half, 0.90 90 % at 96.7 % in-scope,
    # 0.95 fell under 95 % in-scope (scripts/bench-nlu's oos-select part; benchmarks/nlu.md).
    oos_recall: float = 0.90
    calibration_folds: int = 3  # 0: no calibration, no threshold (faster; confidences raw)
    seed: int = 0


def model_version(examples: Sequence[Example], settings: NluSettings, encoder_version: str) -> str:
    """Hash of everything that decides the trained model: data, settings, encoder, code format."""
    h = hashlib.sha256()
    h.update(json.dumps([FORMAT, encoder_version, asdict(settings)], sort_keys=True).encode())
    for example in sorted(examples, key=lambda e: (e.category, e.text)):
        h.update(f"\n{example.category}\t{example.text}".encode())
    return h.hexdigest()[:12]


class _Features:
    def __init__(self, settings: NluSettings, encoder: Encoder) -> None:
        self.settings, self.encoder = settings, encoder
        self.encoder_name = encoder.name  # a reloaded model gets the encoder it was trained with
        from sklearn.feature_extraction.text import TfidfVectorizer

        common = {"sublinear_tf": True, "lowercase": True, "dtype": np.float32}
        self.char = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), **common)
        self.word = TfidfVectorizer(
            analyzer="word", ngram_range=(1, 2), token_pattern=r"(?u)\b\w+\b", **common
        )

    def __getstate__(self) -> dict[str, object]:  # the onnxruntime session does not pickle
        return {k: v for k, v in self.__dict__.items() if k != "encoder"}

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)
        name = getattr(self, "encoder_name", "minilm")
        chosen = default_encoder()
        self.encoder = chosen if chosen.name == name else encoder_named(name)

    def fit(self, texts: Sequence[str], embeddings: np.ndarray) -> sp.csr_matrix:
        self.char.fit(texts)
        self.word.fit(texts)
        return self.transform(texts, embeddings)

    def transform(self, texts: Sequence[str], embeddings: np.ndarray | None = None) -> sp.csr_matrix:
        if embeddings is None:
            embeddings = self.encoder.encode(texts)
        blocks = [
            self.char.transform(texts) / np.sqrt(2.0),  # two unit blocks -> unit TF-IDF part
            self.word.transform(texts) / np.sqrt(2.0),
            sp.csr_matrix(embeddings * self.settings.embedding_weight),
        ]
        return sp.hstack(blocks, format="csr")


def _fit_lr(x: sp.csr_matrix, labels: Sequence[str], settings: NluSettings) -> LogisticRegression:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    lr = LogisticRegression(C=settings.c, max_iter=1000, class_weight="balanced")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # 1000 iterations is plenty in practice
        lr.fit(x, labels)
    return lr


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)  # type: ignore[no-any-return]


class IntentClassifier:
    """Implements the engine's IntentModel: ``version`` and ``guesses(text)``."""

    def __init__(
        self,
        version: str,
        features: _Features,
        lr: LogisticRegression,
        temperature: float,
        oos_threshold: float | None,
        trained_on: int,
    ) -> None:
        self.version = version
        self.features, self.lr = features, lr
        self.categories: list[str] = [str(c) for c in lr.classes_]
        self.temperature = temperature
        self.oos_threshold = oos_threshold
        self.trained_on = trained_on
        self._oos = self.categories.index(OUT_OF_SCOPE) if OUT_OF_SCOPE in self.categories else None

    def probabilities(self, texts: Sequence[str]) -> np.ndarray:
        logits = self.lr.decision_function(self.features.transform(texts))
        if logits.ndim == 1:  # two categories: sklearn gives one column
            logits = np.stack([-logits, logits], axis=1)
        return _softmax(logits / self.temperature)

    def predict(self, texts: Sequence[str]) -> list[str]:
        return self.predict_from(self.probabilities(texts))

    def predict_from(self, probs: np.ndarray) -> list[str]:
        """The category per row of probabilities, out-of-scope rule applied."""
        decided = _decide(probs, self._oos, self.oos_threshold)
        return [self.categories[i] if i >= 0 else OUT_OF_SCOPE for i in decided]

    def guesses(self, text: str) -> list[Guess]:
        """Calibrated guesses, best first; ``oos`` first when the utterance is out of scope."""
        if not text.strip():
            return []
        return self.guesses_from(self.probabilities([text])[0])

    def guesses_from(self, probs: np.ndarray) -> list[Guess]:
        """Guesses from one row of probabilities (one text's, or several hypotheses' combined)."""
        order = [int(i) for i in np.argsort(-probs) if int(i) != self._oos][:TOP_GUESSES]
        guesses = [Guess(self.categories[i], round(float(probs[i]), 4)) for i in order]
        if _decide(probs[None, :], self._oos, self.oos_threshold)[0] < 0:
            top_in = float(probs[order[0]]) if order else 0.0
            oos = float(probs[self._oos]) if self._oos is not None else 0.0
            guesses.insert(0, Guess(OUT_OF_SCOPE, round(max(oos, 1.0 - top_in), 4)))
        return guesses


def _decide(probs: np.ndarray, oos: int | None, threshold: float | None) -> np.ndarray:
    """Category index per row, -1 for out of scope."""
    best: np.ndarray = probs.argmax(axis=1)
    if oos is None and threshold is None:
        return best
    in_scope = probs.copy()
    if oos is not None:
        in_scope[:, oos] = -1.0
    top_in = in_scope.argmax(axis=1)
    reject = in_scope.max(axis=1) < (threshold or 0.0)
    if oos is not None:
        reject |= best == oos
    decided: np.ndarray = np.where(reject, -1, top_in)
    return decided


def train(
    examples: Sequence[Example], settings: NluSettings | None = None, encoder: Encoder | None = None
) -> IntentClassifier:
    settings = settings or NluSettings()
    encoder = encoder or default_encoder()
    counts = Counter(e.category for e in examples)
    if len([c for c in counts if c != OUT_OF_SCOPE]) < 2:
        raise NluError(
            f"an intent model needs at least two intents with examples (got: {sorted(counts) or 'none'})"
        )
    texts = [e.text for e in examples]
    labels = [e.category for e in examples]
    embeddings = encoder.encode(texts)
    temperature, threshold = 1.0, None
    folds = min(settings.calibration_folds, *counts.values())
    if folds >= 2:
        sharpen = min(counts.values()) >= SHARPEN_MIN
        temperature, threshold = _calibrate(texts, labels, embeddings, settings, encoder, folds, sharpen)
    features = _Features(settings, encoder)
    lr = _fit_lr(features.fit(texts, embeddings), labels, settings)
    version = model_version(examples, settings, encoder.version)
    return IntentClassifier(version, features, lr, temperature, threshold, len(examples))


def _calibrate(
    texts: list[str],
    labels: list[str],
    embeddings: np.ndarray,
    settings: NluSettings,
    encoder: Encoder,
    folds: int,
    sharpen: bool,
) -> tuple[float, float | None]:
    """Temperature (and the out-of-scope threshold) from out-of-fold logits on the training data."""
    from scipy.optimize import minimize_scalar
    from sklearn.model_selection import StratifiedKFold

    categories = sorted(set(labels))
    index = {c: i for i, c in enumerate(categories)}
    y = np.array([index[c] for c in labels])
    logits = np.full((len(texts), len(categories)), -1e4)  # a category absent from a fold: never picked
    splitter = StratifiedKFold(folds, shuffle=True, random_state=settings.seed)
    for train_rows, test_rows in splitter.split(texts, y):
        features = _Features(settings, encoder)
        x = features.fit([texts[i] for i in train_rows], embeddings[train_rows])
        lr = _fit_lr(x, [labels[i] for i in train_rows], settings)
        scores = lr.decision_function(
            features.transform([texts[i] for i in test_rows], embeddings[test_rows])
        )
        if scores.ndim == 1:
            scores = np.stack([-scores, scores], axis=1)
        columns = [index[str(c)] for c in lr.classes_]
        logits[np.ix_(test_rows, columns)] = scores

    def nll(log_t: float) -> float:
        p = _softmax(logits / np.exp(log_t))
        return float(-np.log(np.maximum(p[np.arange(len(y)), y], 1e-12)).mean())

    # With fewer than SHARPEN_MIN examples in some category the temperature only softens:
    # out-of-fold accuracy on a flow's few tidy examples overstates how sure the model should
    # be of a caller's words after ASR. With more, it may sharpen too (banking77 10-shot: ECE
    # 14.6 % -> 2.9 % on fold 0).
    low = -3.0 if sharpen else 0.0
    temperature = float(np.exp(minimize_scalar(nll, bounds=(low, 3.0), method="bounded").x))
    if OUT_OF_SCOPE not in index:
        return temperature, None
    probs = _softmax(logits / temperature)
    return temperature, _oos_threshold(probs, y, index[OUT_OF_SCOPE], settings.oos_recall)


def _oos_threshold(probs: np.ndarray, y: np.ndarray, oos: int, recall: float) -> float:
    """The lowest threshold on the top in-scope probability that keeps out-of-scope recall."""
    is_oos = y == oos
    in_scope = probs.copy()
    in_scope[:, oos] = -1.0
    top_in = in_scope.max(axis=1)
    caught_by_class = probs.argmax(axis=1) == oos
    # Out-of-scope rows the class misses are caught only if the threshold is above their top_in.
    missed = np.sort(top_in[is_oos & ~caught_by_class])
    need = int(np.ceil(recall * is_oos.sum())) - int((is_oos & caught_by_class).sum())
    if need <= 0 or len(missed) == 0:
        return 0.0
    return float(np.nextafter(missed[min(need, len(missed)) - 1], 1.0))
