"""Finders for the kinds of personal data that are not digit runs: e-mail addresses (written
or spoken), IBANs, UK sort codes and dates of birth. Each returns (start, end) spans.

Every finder is linear in the text: regular expressions here use possessive quantifiers and a
look-behind that only lets a match start where a run starts, so text without the data (100,000
letters and no "@") is read once, not once per position; spoken forms are matched over tokens
with bounded look-around.
"""

from __future__ import annotations

import datetime as dt
import re

from ivr_server.spoken_numbers import UNITS

Span = tuple[int, int]

# A match starts only at the start of a run of address characters (the look-behind), and a run
# is taken whole (``++``): a failed attempt costs its own run, once.
_EMAIL = re.compile(r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]++@[A-Za-z0-9-]++(?:\.[A-Za-z0-9-]++)+")
_WORD = re.compile(r"[A-Za-z0-9]+")
_AT = re.compile(r"(?<![A-Za-z0-9])at(?![A-Za-z0-9])", re.IGNORECASE)
WINDOW = 160  # characters either side of a spoken "at" that can belong to the address
SPOKEN_DOT = frozenset({"dot", "period", "point"})
SPOKEN_JOINERS = SPOKEN_DOT | {"underscore", "dash", "hyphen"}
TLDS = frozenset({
    "com", "net", "org", "edu", "gov", "mil", "int", "io", "co", "uk", "us", "ca", "de", "fr", "es", "it",
    "nl", "ie", "eu", "au", "nz", "in", "info", "biz", "me", "ai", "app", "dev",
})  # fmt: skip
MAX_DOMAIN_LABELS = 8  # "mail dot example dot co dot uk": labels looked ahead over
MAX_LOCAL_PARTS = 6  # "john dot a dot smith": words of a spoken local part looked back over

# A pattern that opens with a character class (not ``\b``) lets the engine skip ahead to
# candidates in C; the look-behind after the first character stands in for the ``\b``.
_IBAN = re.compile(r"[A-Z](?<!\w\w)[A-Z][0-9]{2}(?: ?[A-Z0-9]){11,30}")
IBAN_MIN, IBAN_MAX = 15, 34
_SORT_CODE = re.compile(
    r"\d(?<!\w\d)\d-\d{2}-\d{2}\b|[Ss](?<!\w\w)(?i:ort ?code):? ?(?P<digits>\d{2}[ -]?\d{2}[ -]?\d{2})\b"
)

_MONTH = (
    r"(?:january|february|march|april|may|june|july|august|september|october|november|december"
    r"|jan|feb|mar|apr|jun|jul|aug|sept?|oct|nov|dec)\.?"
)
_ORDINAL = (
    r"(?:(?:twenty |thirty )?(?:first|second|third|fourth|fifth|sixth|seventh|eighth|ninth)|tenth|eleventh"
    r"|twelfth|thirteenth|fourteenth|fifteenth|sixteenth|seventeenth|eighteenth|nineteenth|twentieth"
    r"|thirtieth|\d{1,2}(?:st|nd|rd|th)?)"
)
_MONTH_WORD = re.compile(rf"{_MONTH}(?![a-z])", re.IGNORECASE)
MONTH_PREFIXES = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_NUMERIC_DATE = re.compile(r"\d(?<!\w\d)(?:(\d?)[/.-](\d{1,2})[/.-](\d{4})|(\d{3})-(\d{1,2})-(\d{1,2}))\b")
_WRITTEN_DATE = re.compile(
    rf"\b\d{{1,2}}(?:st|nd|rd|th)? (?:of )?{_MONTH},? (\d{{4}})\b"
    rf"|\b{_MONTH} \d{{1,2}}(?:st|nd|rd|th)?,? (\d{{4}})\b",
    re.IGNORECASE,
)
# "march twelfth nineteen eighty five", "june third two thousand and four": a month, a day of
# one or two words, a spoken year.
_SPOKEN_DATE = re.compile(
    rf"\b{_MONTH} (?:the )?{_ORDINAL},? (?:nineteen [a-z]+(?: [a-z]+)?|two thousand(?: and)? ([a-z]+))\b",
    re.IGNORECASE,
)
ADULT_YEARS = 10  # a full date at least this many years ago is read as a date of birth


def emails(text: str) -> list[Span]:
    return [m.span() for m in _EMAIL.finditer(text)]


def spoken_emails(text: str) -> list[Span]:
    """ "john dot smith at example dot com": a word (or words joined by dot, underscore, dash),
    "at", then words joined by dots ending in a top-level domain. Only a window around each
    "at" is read."""
    spans: list[Span] = []
    for at in _AT.finditer(text):
        if spans and at.start() < spans[-1][1]:
            continue
        lo = max(0, at.start() - WINDOW)
        words = [
            (m.start() + lo, m.end() + lo, m.group().lower())
            for m in _WORD.finditer(text[lo : at.end() + WINDOW])
        ]
        i = next(k for k, w in enumerate(words) if w[0] == at.start())
        end = _domain_end(text, words, i + 1) if i > 0 else None
        if end is None:
            continue
        start = i - 1
        for _ in range(MAX_LOCAL_PARTS):
            if (
                start >= 2
                and words[start - 1][2] in SPOKEN_JOINERS
                and _spaced(text, words, start - 2, start)
            ):
                start -= 2
            else:
                break
        if (
            words[start][2] not in SPOKEN_JOINERS
            and _spaced(text, words, start, i)
            and (not spans or words[start][0] >= spans[-1][1])
        ):
            spans.append((words[start][0], end))
    return spans


def _month_words(text: str) -> list[re.Match[str]]:
    """Month names starting a word, in order: found with str.find (C speed), then checked."""
    lower, found = text.lower(), []
    for prefix in MONTH_PREFIXES:
        at = lower.find(prefix)
        while at >= 0:
            if (at == 0 or not lower[at - 1].isalnum()) and (m := _MONTH_WORD.match(text, at)):
                found.append(m)
            at = lower.find(prefix, at + 1)
    return sorted(found, key=lambda m: m.start())


def _spaced(text: str, words: list[tuple[int, int, str]], a: int, b: int) -> bool:
    """Tokens a..b follow each other with only spaces between."""
    return all(not text[words[k][1] : words[k + 1][0]].strip() for k in range(a, b))


def _domain_end(text: str, words: list[tuple[int, int, str]], i: int) -> int | None:
    """End of "example dot com" (or "example.com") from token i, when it ends in a TLD."""
    if i >= len(words) or not _spaced(text, words, i - 1, i) or words[i][2] in SPOKEN_JOINERS:
        return None
    k, end = i, None
    for _ in range(MAX_DOMAIN_LABELS):
        if k + 1 < len(words) and text[words[k][1] : words[k + 1][0]] == ".":
            k += 1
        elif k + 2 < len(words) and words[k + 1][2] in SPOKEN_DOT and _spaced(text, words, k, k + 2):
            k += 2
        else:
            break
        if words[k][2] in SPOKEN_JOINERS:
            break
        if words[k][2] in TLDS:
            end = words[k][1]
    return end


def ibans(text: str) -> list[Span]:
    """IBANs, grouped or not, that pass the ISO 13616 check (mod 97 == 1); the longest valid
    prefix of what looks like one, so a capitalized word after it is not swallowed."""
    spans = []
    for m in _IBAN.finditer(text):
        positions = [m.start() + j for j, ch in enumerate(m.group()) if ch != " "]
        compact = m.group().replace(" ", "")
        for length in range(min(len(compact), IBAN_MAX), IBAN_MIN - 1, -1):
            if iban_valid(compact[:length]):
                spans.append((m.start(), positions[length - 1] + 1))
                break
    return spans


def iban_valid(iban: str) -> bool:
    moved = iban[4:] + iban[:4]
    try:
        return int("".join(str(int(ch, 36)) for ch in moved)) % 97 == 1
    except ValueError:
        return False


def sort_codes(text: str) -> list[Span]:
    """12-34-56, or six digits after the words "sort code" (the words stay)."""
    return [m.span("digits") if m.group("digits") else m.span() for m in _SORT_CODE.finditer(text)]


def dates_of_birth(text: str, today: dt.date | None = None) -> list[Span]:
    """Full dates (day, month and year) at least ADULT_YEARS ago: a payment date is recent, a
    birth date is not. Written, numeric (either order of day and month) or spoken."""
    last_year = (today or dt.date.today()).year - ADULT_YEARS
    spans = []
    for m in _NUMERIC_DATE.finditer(text):  # the first digit is outside the groups
        first = m.group()[0]
        year = int(m.group(3) or first + m.group(4))
        a, b = (
            (int(first + m.group(1)), int(m.group(2))) if m.group(3) else (int(m.group(5)), int(m.group(6)))
        )
        if 1900 <= year <= last_year and 1 <= a <= 31 and 1 <= b <= 31 and min(a, b) <= 12:
            spans.append(m.span())
    # Dates with a month name are looked for only around a month name (the patterns are costly
    # to try at every word).
    for month in _month_words(text):
        lo, hi = max(0, month.start() - 16), month.end() + 64
        written = _WRITTEN_DATE.search(text, lo, hi)
        if written is not None and written.start() <= month.start() < written.end():
            if 1900 <= int(written.group(1) or written.group(2)) <= last_year:
                spans.append(written.span())
            continue
        spoken = _SPOKEN_DATE.match(text, month.start(), hi)  # "nineteen ...", "two thousand and four"
        if spoken is not None and (
            spoken.group(1) is None or 2000 + UNITS.get(spoken.group(1).lower(), 99) <= last_year
        ):
            spans.append(spoken.span())
    return sorted(set(spans))
