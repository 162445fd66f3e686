"""The recognizer's own general English model as the background of every flow's model.

PocketSphinx's en-us model (72,547 words, 2 M bigrams, 1.7 M trigrams) is queried through the
decoder library itself, word tuple in, log10 probability out; nothing is converted (its ARPA
export fails on that file). The most probable words of its vocabulary that the dictionary can
pronounce are the background words a flow's vocabulary is widened with.
"""

from __future__ import annotations

import math
import threading
from pathlib import Path
from typing import Any

from ivr_server.errors import EngineUnavailable, ResourceError
from ivr_server.speech.adapt.arpa import NO_PROB, Words
from ivr_server.speech.adapt.lexicon import Lexicon

_LOGMATH_TO_LOG10 = math.log10(1.0001)  # PocketSphinx's default log base
_IMPOSSIBLE = -(1 << 28)  # what it returns for a word it does not know


class GeneralModel:
    def __init__(self, lm_path: Path, lexicon: Lexicon) -> None:
        try:
            import pocketsphinx
        except ImportError as err:
            raise EngineUnavailable("PocketSphinx is not installed: pip install pocketsphinx") from err
        try:
            self._lm: Any = pocketsphinx.NGramModel.readfile(str(lm_path))
        except Exception as err:  # the library raises bare RuntimeError/ValueError
            raise ResourceError(f"cannot read the general language model {lm_path}: {err}") from err
        self.path = lm_path
        self.lexicon = lexicon
        self._lock = threading.Lock()  # compiles may run in several threads
        self._ranked: list[str] | None = None

    def logprob(self, words: Words) -> float:
        """log10 P(last word | the ones before), as the general model says (with back-off)."""
        if words[-1] == "<s>":
            return NO_PROB
        with self._lock:
            value = self._lm.prob(list(reversed(words)))  # the library wants the word first
        return NO_PROB if value <= _IMPOSSIBLE // 2 else value * _LOGMATH_TO_LOG10

    def strong_bigrams(self, contexts: int, words: int, min_prob: float) -> list[Words]:
        """Bigrams "h w" among the most probable words whose P(w | h) is at least ``min_prob``:
        the general model's structure a flow's model is mixed with (its full bigram table
        cannot be exported). ~6 M queries for 2000 x 3000: ~10 s, done once per cache."""
        top = self.top_words(max(contexts, words))
        threshold = math.log10(min_prob) / _LOGMATH_TO_LOG10
        out: list[Words] = []
        with self._lock:
            prob = self._lm.prob
            for h in top[:contexts]:
                out.extend((h, w) for w in top[:words] if prob([w, h]) >= threshold)
        return out

    def top_words(self, count: int) -> list[str]:
        """The ``count`` most probable words that the dictionary pronounces."""
        if self._ranked is None:
            scored = [(self.logprob((w,)), w) for w in self.lexicon.entries if w.isalpha() or "'" in w]
            self._ranked = [w for p, w in sorted(scored, key=lambda s: (-s[0], s[1])) if p > NO_PROB]
        return self._ranked[:count]
