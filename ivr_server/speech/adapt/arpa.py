"""Back-off n-gram models in the ARPA text format: read, query, write.

The one format every estimator and decoder here speaks (IRSTLM writes it, PocketSphinx reads
it). A model is a dict per order from word tuples to (log10 probability, log10 back-off weight).
``logprob`` applies the standard back-off rule:

    log P(w | h) = logp(h w)                          if "h w" is listed
                 = bow(h) + log P(w | h minus its first word)   otherwise

Reading is bounded: a file over ``MAX_NGRAMS`` entries, or a line that is not an n-gram entry,
is a ``ResourceError`` naming the file and line.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ivr_server.errors import ResourceError

Words = tuple[str, ...]
NO_PROB = -99.0  # log10 of "never": what ARPA files write for <s>
MAX_NGRAMS = 5_000_000
_SECTION = re.compile(r"^\\(\d)-grams:$")
_COUNT = re.compile(r"^ngram (\d)\s*=\s*(\d+)$")


@dataclass
class ArpaModel:
    order: int
    grams: dict[int, dict[Words, tuple[float, float]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for n in range(1, self.order + 1):
            self.grams.setdefault(n, {})

    @property
    def vocabulary(self) -> list[str]:
        return [w for (w,) in self.grams[1]]

    def logprob(self, words: Words) -> float:
        """log10 P(last word | the words before it), backing off as the model says."""
        backoff = 0.0
        while words:
            n = len(words)
            if n <= self.order:
                entry = self.grams[n].get(words)
                if entry is not None:
                    return backoff + entry[0]
            if n == 1:
                unknown = self.grams[1].get(("<unk>",))
                return backoff + (unknown[0] if unknown is not None else NO_PROB)
            context = self.grams.get(n - 1, {}).get(words[:-1]) if n - 1 <= self.order else None
            backoff += context[1] if context is not None else 0.0
            words = words[1:]
        return NO_PROB

    def sentence_logprob(self, words: Iterable[str]) -> float:
        """log10 P(<s> words </s>): what perplexity and the tests against hand counts use."""
        seq: Words = ("<s>", *words, "</s>")
        total = 0.0
        for i in range(1, len(seq)):
            total += self.logprob(seq[max(0, i + 1 - self.order) : i + 1])
        return total

    def size(self) -> int:
        return sum(len(g) for g in self.grams.values())


def read_arpa(path: Path) -> ArpaModel:
    try:
        with path.open(encoding="utf-8") as fh:
            return _parse(fh, str(path))
    except (OSError, UnicodeDecodeError) as err:
        raise ResourceError(f"{path}: cannot read the language model: {err}") from err


def _parse(lines: Iterable[str], name: str) -> ArpaModel:
    counts: dict[int, int] = {}
    grams: dict[int, dict[Words, tuple[float, float]]] = {}
    n = 0
    total = 0
    for number, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line == "\\data\\":
            continue
        if line == "\\end\\":
            break
        if (count := _COUNT.match(line)) is not None and n == 0:
            counts[int(count.group(1))] = int(count.group(2))
            continue
        if (section := _SECTION.match(line)) is not None:
            n = int(section.group(1))
            grams[n] = {}
            continue
        if n == 0:
            continue  # the free text some tools write before \data\
        parts = line.split()
        if len(parts) not in (n + 1, n + 2):
            raise ResourceError(f"{name}:{number}: expected a {n}-gram entry, got {line[:80]!r}")
        try:
            logp = float(parts[0])
            bow = float(parts[n + 1]) if len(parts) == n + 2 else 0.0
        except ValueError as err:
            raise ResourceError(f"{name}:{number}: not a number in {line[:80]!r}") from err
        total += 1
        if total > MAX_NGRAMS:
            raise ResourceError(f"{name}: more than {MAX_NGRAMS} n-grams")
        grams[n][tuple(parts[1 : n + 1])] = (logp, bow)
    if not grams:
        raise ResourceError(f"{name}: no n-gram sections (not an ARPA file?)")
    for order, expected in counts.items():
        if order in grams and len(grams[order]) != expected:
            raise ResourceError(
                f"{name}: header says {expected} {order}-grams, the file has {len(grams[order])}"
            )
    return ArpaModel(max(grams), grams)


def write_arpa(model: ArpaModel, path: Path) -> None:
    """Write ``model``; entries in a stable order, so the same model is the same bytes."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        fh.writelines(_lines(model))
    tmp.replace(path)


def _lines(model: ArpaModel) -> Iterator[str]:
    yield "\\data\\\n"
    for n in range(1, model.order + 1):
        yield f"ngram {n}={len(model.grams[n])}\n"
    for n in range(1, model.order + 1):
        yield f"\n\\{n}-grams:\n"
        top = n == model.order
        for words in sorted(model.grams[n]):
            logp, bow = model.grams[n][words]
            text = " ".join(words)
            yield f"{logp:.6f}\t{text}\n" if top else f"{logp:.6f}\t{text}\t{bow:.6f}\n"
    yield "\n\\end\\\n"


def log10(p: float) -> float:
    return math.log10(p) if p > 0 else NO_PROB
