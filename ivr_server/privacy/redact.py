"""Find and mask personal data in text: card numbers (written or spoken digit by digit),
national ids, phone numbers, e-mail addresses (written or spoken), IBANs, UK sort codes, dates
of birth, and the values of secure slots.

Over-redaction is the safe side: a ten-digit account number said aloud is masked as a phone
number, 16 to 19 digits as a card even when the check digit fails (a misheard card is still
one). Masks name the kind (``[card]``) so a transcript still reads. Every step is linear in
the text (patterns.py says how), so redaction can run on the event loop; admins run the same
step over a file with ``ivr-server redact``.
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ivr_server.privacy import patterns
from ivr_server.spoken_numbers import DIGIT_WORDS, REPEATS

KINDS = ("card", "national_id", "phone", "email", "iban", "sort_code", "date_of_birth", "secure")
MAX_TEXT = 100_000  # longer text is redacted in pieces of at most this, cut at white space

# Each opens with a character class and a look-behind for the word boundary (patterns.py: the
# engine then skips to candidates in C).
_SSN = re.compile(r"\d(?<!\w\d)\d\d(?:[- ]\d{2}[- ]\d{4}|\d{6})\b")
_NINO = re.compile(
    r"[A-CEGHJ-PR-TW-Z](?<!\w\w)[A-CEGHJ-NPR-TW-Z] ?\d{2} ?\d{2} ?\d{2} ?[A-D]\b", re.IGNORECASE
)
# Words and numbers; a UUID is one opaque token. Runs of digit tokens (written digits, digit words,
# double/triple) joined only by separators are read as one number; a token mixing letters and
# digits ("a1b2") ends a run.
_TOKEN = re.compile(r"[0-9A-Fa-f]{8}(?:-[0-9A-Fa-f]{4}){3}-[0-9A-Fa-f]{12}|[A-Za-z0-9]+")
_SEPARATOR = re.compile(r"[\s,()+._-]*")
# Values under these keys are identifiers the system made (an Asterisk channel id looks like a
# phone number: 1732456789.12), never personal data.
ID_KEYS = frozenset({"id", "at", "timestamp", "event", "level", "logger", "channel", "session",
                     "server_id", "IVR_SESSION_ID", "IVR_FLOW", "flow_version", "model_version"})  # fmt: skip
_HOMOPHONES = ("to", "too", "for", "o")


def luhn_valid(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


@dataclass
class Redacted:
    text: str
    found: Counter[str] = field(default_factory=Counter)


class SecureValues:
    """Values of secure slots of the calls in progress, so every output can mask them."""

    MIN_LENGTH = 3  # shorter values would mask ordinary words and numbers

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_owner: dict[str, set[str]] = {}

    def add(self, owner: str, value: str) -> None:
        value = value.strip()
        if len(value) >= self.MIN_LENGTH:
            with self._lock:
                self._by_owner.setdefault(owner, set()).add(value)

    def forget(self, owner: str) -> None:
        with self._lock:
            self._by_owner.pop(owner, None)

    def values(self) -> list[str]:
        with self._lock:
            every = set().union(*self._by_owner.values()) if self._by_owner else set()
        return sorted(every, key=len, reverse=True)  # longest first: no partial masks


SECURE_VALUES = SecureValues()  # the process's calls share one; tests may pass their own


class Redactor:
    def __init__(self, secure: SecureValues | None = None) -> None:
        self.secure = SECURE_VALUES if secure is None else secure

    def text(self, text: str) -> Redacted:
        if len(text) <= MAX_TEXT:
            return self._piece(text)
        out = Redacted("")
        parts = []
        for piece in _pieces(text):
            done = self._piece(piece)
            parts.append(done.text)
            out.found.update(done.found)
        out.text = "".join(parts)
        return out

    def _piece(self, text: str) -> Redacted:
        out = Redacted(text)
        for value in self.secure.values():
            if value in out.text:
                out.found["secure"] += out.text.count(value)
                out.text = out.text.replace(value, "[secure]")
        for find, kind in (
            (patterns.emails, "email"),
            (patterns.spoken_emails, "email"),
            (patterns.ibans, "iban"),
            (patterns.sort_codes, "sort_code"),
            (patterns.dates_of_birth, "date_of_birth"),
        ):
            out.text = _mask(out, find(out.text), kind)
        out.text = _sub(_SSN, "national_id", out)
        out.text = _sub(_NINO, "national_id", out)
        out.text = _digit_runs(out)
        return out

    def value(self, value: Any, found: Counter[str] | None = None) -> Any:
        """Strings anywhere inside dicts and lists, redacted (but identifiers: ``is_id_key``);
        ``found`` collects the kinds masked."""
        if isinstance(value, str):
            r = self.text(value)
            if found is not None:
                found.update(r.found)
            return r.text
        if isinstance(value, Mapping):
            return {k: v if is_id_key(k) else self.value(v, found) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.value(v, found) for v in value]
        return value


CUT_WINDOW = 4000  # how far back from a piece's limit a safe place to cut is looked for


def _pieces(text: str) -> Iterable[str]:
    """The text in pieces of at most MAX_TEXT, every character kept, each cut after a word that
    cannot be part of a number (a run of digits, written or spoken, never straddles a cut)."""
    start = 0
    while start < len(text):
        end = min(start + MAX_TEXT, len(text))
        if end < len(text):
            words = list(_TOKEN.finditer(text, max(start, end - CUT_WINDOW), end))
            safe = [m.end() for m in words[:-1] if not _numeric(m.group().lower())]
            end = safe[-1] if safe else end
        yield text[start:end]
        start = end


def _numeric(tok: str) -> bool:
    return tok in DIGIT_WORDS or tok in REPEATS or any(ch.isdigit() for ch in tok)


def is_id_key(key: object) -> bool:
    return isinstance(key, str) and (key in ID_KEYS or key.endswith(("_id", "_ids")))


def _sub(pattern: re.Pattern[str], kind: str, out: Redacted) -> str:
    def mask(_m: re.Match[str]) -> str:
        out.found[kind] += 1
        return f"[{kind}]"

    return pattern.sub(mask, out.text)


def _mask(out: Redacted, spans: list[tuple[int, int]], kind: str) -> str:
    """The text with each span (any order; overlaps merged into the first) replaced by the mask."""
    text, pieces, last = out.text, [], 0
    for start, end in sorted(spans):
        if start < last:
            continue
        out.found[kind] += 1
        pieces += [text[last:start], f"[{kind}]"]
        last = end
    return "".join(pieces) + text[last:] if pieces else text


def _digit_runs(out: Redacted) -> str:
    """Mask card numbers inside runs of digits (written, spoken, or mixed), and whole runs long
    enough to be a phone number. A card may sit inside a longer run ("... one five, oh, and"):
    every stretch of the run's tokens with 13-19 digits is tried, longest first. A run of 16-19
    digits with no valid card in it is still a card (misheard or mistyped), nine digits a
    social security number."""
    text, pieces, last = out.text, [], 0
    for run in _runs(text):
        digits = "".join(d for _, _, d in run)
        spans = [(run[0][0], run[-1][1], "card")] if 16 <= len(digits) <= 19 else _cards(run)
        if not spans:
            if len(digits) == 9:
                spans = [(run[0][0], run[-1][1], "national_id")]
            elif 10 <= len(digits) <= 15:
                spans = [(run[0][0], run[-1][1], "phone")]
        for start, end, kind in spans:
            out.found[kind] += 1
            pieces += [text[last:start], f"[{kind}]"]
            last = end
    return "".join(pieces) + text[last:] if pieces else text


MAX_RUN_TOKENS = 64  # longer runs are cut: the search over stretches stays small


def _cards(run: list[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
    found, i = [], 0
    run = run[:MAX_RUN_TOKENS]
    while i < len(run):
        hit = None
        total = 0
        ends = []
        for j in range(i, len(run)):
            total += len(run[j][2])
            if total > 19:
                break
            if total >= 13:
                ends.append(j)
        for j in reversed(ends):
            if luhn_valid("".join(d for _, _, d in run[i : j + 1])):
                hit = j
                break
        if hit is None:
            i += 1
            continue
        found.append((run[i][0], run[hit][1], "card"))
        i = hit + 1
    return found


def _runs(text: str) -> Iterable[list[tuple[int, int, str]]]:
    """Each run of digit tokens joined only by separators, as (start, end, digits) per token.
    The hot loop of redaction (a log line of digits is a token per digit): the common cases
    (written digits, a single space between) take the short paths."""
    run: list[tuple[int, int, str]] = []
    end, repeat, repeat_start = -1, 1, -1
    for m in _TOKEN.finditer(text):
        start, tok = m.start(), m.group()
        quick = start == end or (start == end + 1 and text[end] == " ")
        if end >= 0 and not quick and _SEPARATOR.fullmatch(text, end, start) is None:
            if run:
                yield run
            run, repeat, repeat_start = [], 1, -1
        if tok.isdigit():
            value: str | None = tok
        else:
            tok = tok.lower()
            if tok in REPEATS:
                repeat, repeat_start, end = REPEATS[tok], start, m.end()
                continue
            value = _digit_value(tok, bool(run), text, m.end())
        if value is None:
            if run:
                yield run
            run, end, repeat, repeat_start = [], -1, 1, -1
            continue
        run.append((repeat_start if repeat_start >= 0 else start, m.end(), value * repeat))
        end, repeat, repeat_start = m.end(), 1, -1
    if run:
        yield run


def _plain(tok: str) -> bool:
    return tok.isdigit() or (tok in DIGIT_WORDS and tok not in _HOMOPHONES)


def _digit_value(tok: str, current: bool, text: str, after: int) -> str | None:
    if tok.isdigit():
        return tok
    if tok not in DIGIT_WORDS:
        return None
    if tok in _HOMOPHONES and not current:  # "for"/"to" start a run only before a plain digit
        nxt = _TOKEN.search(text, after)
        if nxt is None or not _plain(nxt.group().lower()):
            return None
    return DIGIT_WORDS[tok]
