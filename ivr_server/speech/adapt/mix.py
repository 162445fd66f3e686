"""Linear interpolation of a flow's model with a background model, as one back-off model.

    P(w | h) = weight * P_flow(w | h) + (1 - weight) * P_background(w | h)

for every n-gram the flow's model lists and every one given from the background (its strongest
bigrams), over a vocabulary of the flow's words plus the background's most likely ones (so
"actually I want to talk to someone" still comes through in a flow that never saw "actually").
Unigrams are renormalized over that vocabulary; back-off weights are recomputed so every
context's distribution sums to one again:

    bow(h) = (1 - sum of P(w | h) over listed "h w") / (1 - sum of P(w | h') over the same w)

where h' is h without its first word. The background is any function giving log10 P(w | h)
(the recognizer's general model, or another ARPA model).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from ivr_server.errors import ResourceError
from ivr_server.speech.adapt.arpa import NO_PROB, ArpaModel, Words, log10

Background = Callable[[Words], float]
MIN_MASS = 1e-6  # a context whose listed words take all the mass keeps this much for the rest


def interpolate(
    flow: ArpaModel,
    background: Background,
    weight: float,
    extra_words: Iterable[str] = (),
    background_grams: Iterable[Words] = (),
) -> ArpaModel:
    if not 0.0 < weight <= 1.0:
        raise ResourceError(f"interpolation weight must be in (0, 1], not {weight}")
    vocabulary = {w for w in flow.vocabulary if w != "<unk>"} | set(extra_words) | {"<s>", "</s>"}
    grams: dict[int, dict[Words, tuple[float, float]]] = {n: {} for n in range(1, flow.order + 1)}
    probs: dict[int, dict[Words, float]] = {n: {} for n in range(1, flow.order + 1)}

    unigram = {}
    for w in vocabulary - {"<s>"}:
        own = 10 ** flow.logprob((w,)) if (w,) in flow.grams[1] else 0.0
        unigram[w] = weight * own + (1 - weight) * 10 ** background((w,))
    total = sum(unigram.values())
    if total <= 0:
        raise ResourceError("the interpolated model has no probability mass")
    probs[1] = {(w,): p / total for w, p in unigram.items()}
    probs[1][("<s>",)] = 0.0
    bows: dict[Words, float] = {}

    def lower(words: Words) -> float:
        """P(w | h) in the mixed model built so far (orders below the one being built)."""
        listed = probs[len(words)].get(words)
        if listed is not None:
            return listed
        return bows.get(words[:-1], 1.0) * lower(words[1:])

    extra_grams: dict[int, list[Words]] = {}
    for words in background_grams:
        extra_grams.setdefault(len(words), []).append(words)
    for n in range(2, flow.order + 1):
        contexts: dict[Words, list[Words]] = {}
        for words in (*flow.grams[n], *(w for w in extra_grams.get(n, ()) if w not in flow.grams[n])):
            if all(w in vocabulary for w in words) and words[:-1] in probs[n - 1]:
                p = weight * 10 ** flow.logprob(words) + (1 - weight) * 10 ** background(words)
                probs[n][words] = p
                contexts.setdefault(words[:-1], []).append(words)
        for context, listed in contexts.items():
            mass = sum(probs[n][w] for w in listed)
            denominator = 1.0 - sum(lower(w[1:]) for w in listed)
            if denominator < MIN_MASS:  # the lower order has nothing left to back off to
                for gram in listed:
                    probs[n][gram] /= mass
                bows[context] = 1.0
            else:
                bows[context] = max(1.0 - mass, MIN_MASS) / denominator
    for n in range(1, flow.order + 1):
        grams[n] = {
            words: (log10(p) if words != ("<s>",) else NO_PROB, log10(bows.get(words, 1.0)))
            for words, p in probs[n].items()
        }
    return ArpaModel(flow.order, grams)


def choose_weight(flow: ArpaModel, held_out: Iterable[Iterable[str]], background: Background) -> float:
    """The flow model's share that best predicts sentences it was not estimated from: EM on
    the mixture weight over the held-out words (the standard way to set it; a big, consistent
    corpus earns a high share, a dozen phrases a low one)."""
    pairs = []
    for sentence in held_out:
        seq: Words = ("<s>", *sentence, "</s>")
        for i in range(1, len(seq)):
            words = seq[max(0, i + 1 - flow.order) : i + 1]
            f, b = 10 ** flow.logprob(words), 10 ** background(words)
            if f + b > 1e-30:  # a word neither model has says nothing about the weight
                pairs.append((f, b))
    if not pairs:
        return 0.5
    weight = 0.5
    for _ in range(50):
        share = sum(weight * f / max(weight * f + (1 - weight) * b, 1e-300) for f, b in pairs) / len(pairs)
        if abs(share - weight) < 1e-4:
            break
        weight = share
    return min(0.98, max(0.05, weight))
