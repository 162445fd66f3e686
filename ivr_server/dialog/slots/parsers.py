"""One parser per slot type. Each takes what the caller said (ASR words) or keyed (DTMF) and
returns the value, or a reason it is not one (said back to the caller, logged, counted)."""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from ivr_server.dialog.slots.words import MAX_NUMBER, digit_runs, number_value, tokens
from ivr_server.dialog.spec.model import Slot

YES = {"yes", "yeah", "yep", "yup", "correct", "right", "sure", "affirmative", "ok", "okay", "absolutely"}
NO = {"no", "nope", "nah", "wrong", "incorrect", "negative", "not"}
# Korean answers: apart, since YES and NO are also the English recognizer's corpus (adapt/corpus.py).
KOREAN_YES = {"네", "예", "응", "맞아요", "맞아", "맞습니다", "그래요", "좋아요"}
KOREAN_NO = {"아니요", "아니", "아니에요", "아닙니다", "틀려요", "아뇨"}
NEITHER = "neither yes nor no"
NEGATORS = {"not", "isn", "wasn", "aren", "ain"}  # ("isn't" is two tokens) before a yes word: a no
MONTHS = {m: i for i, m in enumerate(
    ("january", "february", "march", "april", "may", "june", "july", "august", "september",
     "october", "november", "december"), 1)}  # fmt: skip
ORDINALS = {
    "first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6, "seventh": 7,
    "eighth": 8, "ninth": 9, "tenth": 10, "eleventh": 11, "twelfth": 12, "thirteenth": 13,
    "fourteenth": 14, "fifteenth": 15, "sixteenth": 16, "seventeenth": 17, "eighteenth": 18,
    "nineteenth": 19, "twentieth": 20, "thirtieth": 30,
}  # fmt: skip
CARD_LENGTHS = range(13, 20)


@dataclass(frozen=True)
class Parsed:
    value: str | None  # canonical text: "4421", "12.50", "2026-03-05", "yes"
    reason: str | None = None  # why there is no value

    @property
    def ok(self) -> bool:
        return self.value is not None


def parse(slot: Slot, said: str = "", keyed: str = "", today: dt.date | None = None) -> Parsed:
    """The slot's value from speech (``said``) or keys (``keyed``, DTMF without the final #)."""
    if slot.type in ("digits", "card_number"):
        return _digits(slot, said, keyed)
    if slot.type == "yes_no":
        return _yes_no(said, keyed)
    if slot.type in ("number", "amount"):
        return _number(slot.type, said, keyed)
    if slot.type == "date":
        return _date(said, keyed, today or dt.date.today())
    text = " ".join(said.split())
    return Parsed(text) if text else Parsed(None, "nothing was said")


def luhn_ok(number: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(number)):
        d = int(ch) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def _digits(slot: Slot, said: str, keyed: str) -> Parsed:
    if keyed:
        candidates = [keyed] if keyed.isdigit() else []
    else:
        candidates = digit_runs(said)
        if len(candidates) > 1:  # "four four ... two one": a pause split the run
            candidates = ["".join(candidates)]
    if not candidates:
        return Parsed(None, "no digits heard")
    value = candidates[0]
    if slot.type == "card_number":
        if len(value) not in CARD_LENGTHS:
            return Parsed(None, f"a card number has 13 to 19 digits, heard {len(value)}")
        if not luhn_ok(value):
            return Parsed(None, "the card number's check digit is wrong")
        return Parsed(value)
    if slot.length is not None and len(value) != slot.length:
        return Parsed(None, f"need {slot.length} digits, heard {len(value)}")
    return Parsed(value)


def parse_heard(
    slot: Slot, said: str, alternatives: Sequence[str] = (), keyed: str = "", today: dt.date | None = None
) -> Parsed:
    """The best hypothesis's value; when it has none, the value the recognizer's other
    hypotheses agree on (every one of them that parses gives the same), so one misheard word
    ("yes not right") does not lose an answer the others heard. Disagreeing alternatives
    decide nothing: the best hypothesis's reason stands. A yes is taken from them only when
    the best hypothesis holds a yes or no word too: a yes lets an action go ahead, and words
    with neither ("get that" for "forget it") must not become one (a no only asks again)."""
    best = parse(slot, said, keyed, today)
    if best.value is not None or keyed or not alternatives:
        return best
    values = {p.value for alt in alternatives if (p := parse(slot, alt, "", today)).value is not None}
    if slot.type == "yes_no" and best.reason == NEITHER and values == {"yes"}:
        return best
    return Parsed(values.pop()) if len(values) == 1 else best


def grammar_guess(slot: Slot, said: str, grammar_said: str, today: dt.date | None = None) -> str | None:
    """A digit question's grammar's answer standing in for words heard beside it that meant
    nothing there (engine._grammar_heard), or None: only for a slot read back before use, and
    words no more than one per digit asked for, give or take one (a digit string misheard as
    words, not a sentence)."""
    if not grammar_said or not slot.sensitive or slot.length is None or len(said.split()) > slot.length + 1:
        return None
    return parse(slot, grammar_said, "", today).value


def _yes_no(said: str, keyed: str) -> Parsed:
    if keyed:
        return {"1": Parsed("yes"), "2": Parsed("no")}.get(keyed, Parsed(None, "press 1 for yes or 2 for no"))
    yes = no = False
    words = tokens(said)
    for i, word in enumerate(words):
        negated = any(w in NEGATORS for w in words[max(0, i - 2) : i])
        if word in YES or word in KOREAN_YES:  # "that's not right", "not correct": a no
            no, yes = no or negated, yes or not negated
        elif word in NO or word in NEGATORS or word in KOREAN_NO:
            no = no or not any(w in YES for w in words[i + 1 : i + 3])  # "not right" counted once
    if yes == no:  # neither, or "yes ... no"
        return Parsed(None, NEITHER if not yes else "both yes and no")
    return Parsed("yes" if yes else "no")


def _number(kind: str, said: str, keyed: str) -> Parsed:
    if keyed:  # * is the decimal point on a keypad
        text = keyed.replace("*", ".")
        if not re.fullmatch(r"\d+(\.\d{1,2})?", text):
            return Parsed(None, "keys are not a number")
        value = float(text) if len(text) <= 20 else math.inf
    else:
        got = number_value(said)
        if got is None:
            return Parsed(None, "no number heard")
        value = got
        if kind == "amount":  # "twelve dollars and fifty cents"
            words = tokens(said)
            if "cents" in words or "cent" in words:
                after = said.lower().split("and", 1)
                if len(after) == 2 and (cents := number_value(after[1])) is not None and cents < 100:
                    dollars = number_value(after[0]) or 0.0
                    value = dollars + cents / 100
    if value >= MAX_NUMBER:
        return Parsed(None, "that number is too large")
    if kind == "amount":
        return Parsed(f"{value:.2f}")
    return Parsed(str(int(value)) if value == int(value) else str(value))


def _date(said: str, keyed: str, today: dt.date) -> Parsed:
    if keyed:  # DDMMYYYY or DDMM on a keypad
        if re.fullmatch(r"\d{4}(\d{4})?", keyed):
            year = int(keyed[4:]) if len(keyed) == 8 else today.year
            return _made(year, int(keyed[2:4]), int(keyed[:2]))
        return Parsed(None, "key the date as day, month and year: DDMMYYYY")
    words = tokens(said)
    relative = {"today": 0, "tomorrow": 1, "yesterday": -1}
    for w in words:
        if w in relative:
            return Parsed((today + dt.timedelta(days=relative[w])).isoformat())
    if m := re.search(r"(\d{4})-(\d{2})-(\d{2})", said):
        return _made(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    month = next((MONTHS[w] for w in words if w in MONTHS), None)
    if month is None:
        return Parsed(None, "no date heard")
    day = _day(words)
    if day is None:
        return Parsed(None, "no day of the month heard")
    year = next((int(w) for w in words if w.isdigit() and len(w) == 4), today.year)
    return _made(year, month, day)


def _day(words: list[str]) -> int | None:
    for i, w in enumerate(words):
        if w in ORDINALS:
            tens = {"twenty": 20, "thirty": 30}.get(words[i - 1], 0) if i else 0
            return tens + ORDINALS[w]
        if re.fullmatch(r"\d{1,2}(st|nd|rd|th)?", w):
            return int(re.sub(r"\D", "", w))
    nums = [w for w in words if w.isdigit() and len(w) <= 2]
    return int(nums[0]) if nums else None


def _made(year: int, month: int, day: int) -> Parsed:
    try:
        return Parsed(dt.date(year, month, day).isoformat())
    except ValueError:
        return Parsed(None, f"there is no day {day} in month {month} of {year}")


def entities(slots: list[Slot], said: str) -> dict[str, str]:
    """Slot values a caller gave before being asked ("I lost my card ending 4421"): digit runs
    of exactly a digits slot's length, or a Luhn-valid card number; only when unambiguous."""
    runs = digit_runs(said)
    found: dict[str, str] = {}
    for slot in slots:
        if slot.type == "digits" and slot.length is not None:
            fits = [r for r in runs if len(r) == slot.length]
        elif slot.type == "card_number":
            fits = [r for r in runs if len(r) in CARD_LENGTHS and luhn_ok(r)]
        else:
            continue
        if len(fits) == 1:
            found[slot.name] = fits[0]
    return found
