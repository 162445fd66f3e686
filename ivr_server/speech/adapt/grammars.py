"""What a slot's question is heard with, and the grammars for answers that can be listed
exactly: digit strings of a known length ("the last four digits of the card": exactly four digit
words; a card number: 13 to 19).

A flow's digits slot asks for ``digits{n}`` (or ``digits{m}-{n}``); the compiler writes the
JSGF grammar for each one the flow uses. Holding the recognizer to the length removes what most
often broke a spoken digit string, an inserted or dropped digit (VoiceXML's built-in
``digits?length=n`` does the same); the digit model then checks each aligned digit (digits.py).
"""

from __future__ import annotations

import re

from ivr_server.dialog.spec.model import Slot
from ivr_server.errors import ResourceError
from ivr_server.speech.asr.base import DIGIT_WORDS

MAX_DIGITS = 32
_KIND = re.compile(r"^digits(\d+)(?:-(\d+))?$")


def kind_of(slot: Slot) -> str | None:
    """The closed corpus a slot's question is heard with (digits have their own grammar)."""
    return {"yes_no": "yesno", "amount": "amount", "number": "number", "date": "date"}.get(slot.type)


def answer_kind(slot: Slot) -> str | None:
    """What a slot's question is heard with: digit strings a grammar of their length (``digits4``;
    a card number 13 to 19 digits; ``digits``, any number, when the flow gives no length), the
    other closed kinds their corpus, text the open model (None)."""
    if slot.type == "card_number":
        return digits_kind(13, 19)
    if slot.type == "digits":
        return digits_kind(slot.length) if slot.length is not None else "digits"
    return kind_of(slot)


def digits_kind(least: int, most: int | None = None) -> str:
    """The name of a digit-string grammar: ``digits4``, ``digits13-19``."""
    most = least if most is None else most
    return f"digits{least}" if most == least else f"digits{least}-{most}"


def digit_range(kind: str) -> tuple[int, int] | None:
    """(least, most) digits of a ``digits...`` kind; None for other kinds."""
    match = _KIND.match(kind)
    if match is None:
        return None
    least = int(match.group(1))
    return least, int(match.group(2) or least)


def digits_jsgf(kind: str) -> str:
    """The JSGF grammar of a ``digits...`` kind: ``least`` digit words, then optional ones."""
    bounds = digit_range(kind)
    if bounds is None:
        raise ResourceError(f"{kind!r} is not a digit-string grammar")
    least, most = bounds
    if not 1 <= least <= most <= MAX_DIGITS:  # the flow's compile fails, naming its file
        raise ResourceError(
            f"a digit string of {least} to {most} digits cannot be listened for (1 to {MAX_DIGITS})"
        )
    body = " ".join(["<digit>"] * least + ["[<digit>]"] * (most - least))
    words = " | ".join(DIGIT_WORDS)
    return f"#JSGF V1.0;\ngrammar {kind};\n<digit> = {words};\npublic <{kind}> = {body};\n"
