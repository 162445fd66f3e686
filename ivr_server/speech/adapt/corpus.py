"""What a flow's callers are expected to say, as sentences of spoken words.

The *open* corpus (questions like "How can I help?") is everything the flow knows about its
callers' words: the intents' examples and keywords, the rows of its CSV data sets, its
out-of-scope phrases, and its prompts (callers repeat the menu's words back: "recent
transactions"). Each *closed* corpus is the answers to one kind of closed question (yes or no,
an amount, a number, a date), written here the way people answer them on the phone, carriers
included ("yes that's right", "it's about fifty dollars").

A flow whose slots collect digits also gets *digit sentences* in its open corpus: callers give
them before being asked ("my card ending in four four two one was stolen"), and the engine fills
the slot from the opening request only when the open model lets digit words follow each other.

Every closed corpus also has the *repair phrases* the engine answers in every state ("say that
again", "cancel that", "hold on": dialog/repair_words.py, and the flow's own), and a yes/no
question also has *corrections* of a digit string ("no I said five six seven eight"): a caller
asked "I have four four two one, is that right?" answers those as often as yes or no. The open
corpus keeps the flow's own words (the general model already has these common phrases). The
*aside* corpus, heard beside a digit grammar, is the repairs and the digit sentences.
"""

from __future__ import annotations

import itertools
import random

from ivr_server.dialog.nlu.flow_model import flow_examples
from ivr_server.dialog.repair_words import CORRECTING, PHRASES
from ivr_server.dialog.slots.parsers import MONTHS, NO, YES
from ivr_server.dialog.spec.model import Flow, Slot
from ivr_server.dialog.spec.template import Placeholder
from ivr_server.speech.adapt.words import ONES, number_words, ordinal, spoken

OPEN = "open"
ASIDE = "aside"  # what is said at a question instead of its answer: heard beside a digit grammar
CLOSED_KINDS = ("yesno", "amount", "number", "date")
SEED = 20261203  # closed corpora are drawn, reproducibly: same flow, same resources
DIGIT_STRINGS = 80  # random strings per digits slot in the open corpus (30: fewer digits right)
PROMPT_DIGIT_STRINGS = 3  # per prompt that says the slot's value ("the card ending {last4}")
# Words around a digit string in any flow's requests; the flow's own nouns ("card", "account
# number") come from its prompts. "" says the string alone or ends the sentence with it.
DIGITS_BEFORE = (
    "", "ending", "ending in", "ending with", "that ends in", "it ends with", "ends in",
    "the last digits are", "the number is", "my number is", "number", "it's", "it is", "that's",
)  # fmt: skip
DIGITS_AFTER = ("", "", "please", "thank you", "thanks")
OH_SHARE = 0.3  # strings with "oh" for zero, as account numbers are read
CORRECTION_STRINGS = 15  # random digit strings per digits slot said as a correction
REPAIR_AROUND = ("sorry", "please", "um")  # said before or after a repair phrase ("sorry what")


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


def repair_sentences(flow: Flow) -> list[str]:
    """The repairs callers ask for in words, in spoken form: the engine's English phrases and the
    flow's own, each alone and once with a polite word before or after ("sorry say that again")."""
    rng = random.Random(SEED + 2)
    phrases = [p for table in (PHRASES["en"], flow.repair.phrases) for ps in table.values() for p in ps]
    out = []
    for phrase in sorted(set(phrases)):
        polite = rng.choice(REPAIR_AROUND)
        out += [phrase, f"{phrase} {polite}" if polite == "please" else f"{polite} {phrase}"]
    return [s for s in (spoken(t) for t in out) if s]


def correction_sentences(flow: Flow) -> list[str]:
    """A "no" that carries the digits instead ("no I said four four two one", "no it's ..."),
    for each slot that collects digits: the engine's own correcting words as carriers."""
    rng = random.Random(SEED + 1)
    carriers = [c for c in CORRECTING["en"] if c not in ("no", "nope", "not", "wrong")]
    out = []
    for slot in flow.slots.values():
        lengths = _digit_lengths(slot)
        for _ in range(CORRECTION_STRINGS if lengths else 0):
            said = _digit_string(rng, rng.choice(lengths))
            lead = rng.choice(("no", "no no", "nope", "wrong"))
            carrier = rng.choice(["", *carriers])
            out.append(" ".join(w for w in (lead, carrier, said) if w))
    return [s for s in (spoken(t) for t in out) if s]


def digit_sentences(flow: Flow) -> list[str]:
    """Digit strings as a flow's callers say them inside a request, for each slot that collects
    digits: strings of the slot's length said digit by digit, alone or after a carrier any flow's
    callers use ("ending in", "the number is"), and inside the flow's prompts that say the
    slot's value ("the card ending four four two one is blocked"). None without such slots."""
    rng = random.Random(SEED)
    out = []
    for slot in flow.slots.values():
        lengths = _digit_lengths(slot)
        if not lengths:
            continue
        for _ in range(DIGIT_STRINGS):
            said = _digit_string(rng, rng.choice(lengths))
            out.append(" ".join(w for w in (rng.choice(DIGITS_BEFORE), said, rng.choice(DIGITS_AFTER)) if w))
        templates = [t for p in flow.prompts.values() for t in p.text.values() if slot.name in t.slots]
        for template in templates:
            for _ in range(PROMPT_DIGIT_STRINGS):
                said = _digit_string(rng, rng.choice(lengths))
                text = "".join(_fill(part, slot.name, said) for part in template.parts)
                out.extend(x for x in _sentences(text) if said in x)  # not the prompt's other sentences
    return [s for s in (spoken(t) for t in out) if s]


def _digit_lengths(slot: Slot) -> list[int]:
    """How many digits a slot's answers have; [] for slots that are not digit strings."""
    if slot.type == "card_number":
        return [15, 16]
    if slot.type == "digits":
        return [slot.length] if slot.length is not None else list(range(4, 11))
    return []


def _digit_string(rng: random.Random, length: int) -> str:
    zero = "oh" if rng.random() < OH_SHARE else "zero"
    return " ".join(zero if d == 0 else ONES[d] for d in (rng.randrange(10) for _ in range(length)))


def _fill(part: str | Placeholder, slot: str, said: str) -> str:
    """A template's part with ``slot`` said as ``said`` (other slots' values left out)."""
    if isinstance(part, str):
        return part
    return f" {said} " if part.slot == slot else ""


def closed_sentences(kind: str, flow: Flow | None = None) -> list[str]:
    """The answers to a closed question of ``kind``; with a flow, also what its callers say there
    instead of answering: repairs, and at a yes/no question corrections of its digit strings."""
    if kind == ASIDE:  # at a digit question: the digits too, or the digits would sound like words
        return repair_sentences(flow) + digit_sentences(flow) if flow is not None else []
    if kind == "yesno":
        answers = _yes_no()
    elif kind in ("amount", "number"):
        answers = _numbers(kind)
    elif kind == "date":
        answers = _dates()
    else:
        raise ValueError(f"no closed corpus {kind!r}")
    if flow is None:
        return answers
    corrections = correction_sentences(flow) if kind == "yesno" else []
    return answers * 2 + repair_sentences(flow) + corrections  # answers: still the likeliest


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
