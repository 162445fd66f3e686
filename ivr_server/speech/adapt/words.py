"""Written text as the words a caller says: what the language models are estimated from.

"I was charged $25 twice" -> "i was charged twenty five dollars twice". Numbers are spelled out
(long ones digit by digit, as people read account numbers), currency and percent signs become
words, hyphenated words split ("top-up" -> "top up"), other punctuation goes. Apostrophes inside
words stay: the dictionary has "can't" and "i've"; accents go ("café" -> "cafe") and other
scripts are dropped (the recognizer's dictionary is English). Pure, linear in the text's length.
"""

from __future__ import annotations

import re
import unicodedata

ONES = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
    "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen",
)  # fmt: skip
TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
ORDINALS = {
    "one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
    "nine": "ninth", "twelve": "twelfth",
}  # fmt: skip
SPELLED_MAX = 999_999_999  # larger numbers, and any with a leading zero, are read digit by digit
_SIGNS = {"$": "dollars", "€": "euros", "£": "pounds", "%": "percent", "&": "and", "+": "plus", "@": "at"}
_PREFIX_CURRENCY = re.compile(r"([$€£])\s?([0-9][0-9,]*(?:\.[0-9]+)?)")
_TOKEN = re.compile(r"[0-9]+(?:st|nd|rd|th)?|[a-z]+(?:'[a-z]+)*|[$€£%&+@]")
_THOUSANDS = re.compile(r"(?<=[0-9]),(?=[0-9]{3}\b)")


def number_words(n: int) -> str:
    """0 <= n <= SPELLED_MAX in words: 125 -> "one hundred twenty five"."""
    if n < 20:
        return ONES[n]
    if n < 100:
        return TENS[n // 10] + ("" if n % 10 == 0 else " " + ONES[n % 10])
    for size, name in ((1_000_000, "million"), (1000, "thousand"), (100, "hundred")):
        if n >= size:
            rest = n % size
            return f"{number_words(n // size)} {name}" + ("" if rest == 0 else " " + number_words(rest))
    raise AssertionError("unreachable")


def ordinal(words: str) -> str:
    """ "twenty one" -> "twenty first"."""
    head, _, last = words.rpartition(" ")
    if last in ORDINALS:
        last = ORDINALS[last]
    elif last.endswith("y"):
        last = last[:-1] + "ieth"
    else:
        last += "th"
    return f"{head} {last}".strip()


def _digits(token: str) -> str:
    number, suffix = token.rstrip("stndrh"), token[len(token.rstrip("stndrh")) :]
    if (len(number) > 1 and number.startswith("0")) or len(number) > len(str(SPELLED_MAX)):
        return " ".join(ONES[int(d)] for d in number)  # an account or card number
    value = int(number)
    if value > SPELLED_MAX:
        return " ".join(ONES[int(d)] for d in number)
    words = number_words(value)
    return ordinal(words) if suffix else words


def spoken_words(text: str) -> list[str]:
    """The words of ``text`` as spoken, lower case."""
    text = _THOUSANDS.sub("", _ascii(text.lower().replace("’", "'")))
    # "$25" is said "twenty five dollars": the sign moves behind its number.
    text = _PREFIX_CURRENCY.sub(lambda m: f"{m.group(2)} {m.group(1)}", text)
    out: list[str] = []
    for token in _TOKEN.findall(text):
        if token in _SIGNS:
            out.append(_SIGNS[token])
        elif token[0] in "0123456789":
            out.extend(_digits(token).split())
        else:
            out.append(token)
    return out


def _ascii(text: str) -> str:
    """Accents off ("café" -> "cafe"), other letters the English dictionary cannot have gone;
    the currency signs are kept for the rule above."""
    kept = "".join(ch for ch in unicodedata.normalize("NFKD", text) if not unicodedata.combining(ch))
    return "".join(ch if ch.isascii() or ch in "€£" else " " for ch in kept)


def spoken(text: str) -> str:
    return " ".join(spoken_words(text))
