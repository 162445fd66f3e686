"""What a flow's callers are expected to say, as sentences of spoken words.

The *open* corpus (questions like "How can I help?") is everything the flow knows about its
callers' words: the intents' examples and keywords, the rows of its CSV data sets, its
out-of-scope phrases, and its prompts (callers repeat the menu's words back: "recent
transactions"). Each *closed* corpus is the answers to one kind of closed question (yes or no,
an amount, a number, a date), written here the way people answer them on the phone, carriers
included ("yes that's right", "it's about fifty dollars").
"""

from __future__ import annotations

import itertools
import random

from ivr_server.dialog.nlu.flow_model import flow_examples
from ivr_server.dialog.slots.parsers import MONTHS, NO, YES
from ivr_server.dialog.spec.model import Flow
from ivr_server.speech.adapt.words import number_words, ordinal, spoken

OPEN = "open"
CLOSED_KINDS = ("yesno", "amount", "number", "date")
SEED = 20261203  # closed corpora are drawn, reproducibly: same flow, same resources


def open_sentences(flow: Flow) -> list[str]:
    """Spoken-form sentences for the flow's open questions (NluError for a bad data file)."""
    texts = [e.text for e in flow_examples(flow)]
    texts += [k for intent in flow.intents.values() for k in intent.keywords]
    for prompt in flow.prompts.values():
        for template in prompt.text.values():  # the prompt's own words, not its slot values
            for part in template.parts:
                if isinstance(part, str):
                    texts.extend(_sentences(part))
    return [s for s in (spoken(t) for t in texts) if s]


def closed_sentences(kind: str) -> list[str]:
    if kind == "yesno":
        return _yes_no()
    if kind in ("amount", "number"):
        return _numbers(kind)
    if kind == "date":
        return _dates()
    raise ValueError(f"no closed corpus {kind!r}")


def _sentences(text: str) -> list[str]:
    parts = text.replace("?", ".").replace("!", ".").replace(":", ".").split(".")
    return [p.strip() for p in parts if p.strip()]


def _yes_no() -> list[str]:
    yes = sorted(YES - {"right", "correct", "sure"}) + ["that's right", "that is correct", "sure"]
    no = sorted(NO - {"not", "wrong", "incorrect"}) + ["that's wrong", "that is not right", "not really"]
    tails = ["", " please", " thanks", " thank you", " it is", " that's it"]
    out = [f"{w}{t}" for w in [*yes, *no] for t in tails]
    out += [f"{a} {b}" for a in ("yes", "no") for b in ("yes", "no") if a == b]  # "yes yes"
    out += ["correct", "right", "yes correct", "no that's not right", "no it isn't", "yes it is"]
    return out


def _numbers(kind: str) -> list[str]:
    rng = random.Random(SEED)
    values = list(range(0, 101)) + [rng.randrange(100, 100_000) for _ in range(300)]
    out = []
    for v in values:
        words = number_words(v)
        if kind == "amount":
            cents = rng.randrange(1, 100)
            out += [f"{words} dollars", f"{words} dollars and {number_words(cents)} cents",
                    f"about {words} dollars", f"it's {words}", f"{words} pounds", words]  # fmt: skip
        else:
            out += [words, f"it's {words}", f"number {words}"]
    return out


def _dates() -> list[str]:
    days = [ordinal(number_words(d)) for d in range(1, 32)]
    out = [f"{m} {d}" for m, d in itertools.product(MONTHS, days)]
    out += [f"the {d} of {m}" for m, d in itertools.product(MONTHS, days)]
    out += [f"on the {d}" for d in days]
    return [*out, "today", "yesterday", "tomorrow", "last week", "the day before yesterday"]
