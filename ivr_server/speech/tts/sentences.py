"""Text into sentence-sized pieces, so synthesis can stream: the first piece is spoken while the
rest is still being synthesized.

A piece ends at ``.``, ``!``, ``?`` or ``…`` followed by a space, and at every line break (IVR
menus are written one option per line). A full stop after a title or a Latin abbreviation
("Dr.", "e.g.") or an initial ("J. Smith") does not end a sentence; one inside a number
("$12.50") never looks like a boundary. A piece longer than ``max_chars`` is cut at its last
clause boundary (comma, semicolon, colon, dash), else at a space. The first piece is also cut
at a clause boundary near ``first_max_chars``, because the time to first audio grows with its
length; a short lead-in before a colon ("You said:", "Your balance:") becomes a piece of its own
even below MIN_CHARS, because a colon is a pause anyway and such lead-ins repeat across calls, so
their audio comes from the prompt cache while the rest is synthesized. Pieces with no letter or
digit ("...", "!!") are dropped: there is nothing to say.
"""

from __future__ import annotations

import re

# Full stops after these never end a sentence (titles before a name, "e.g. the ...").
_NEVER_FINAL = frozenset(
    {"mr", "mrs", "ms", "dr", "prof", "st", "mt", "sgt", "capt", "gen", "rev", "vs", "e.g", "i.e", "cf"}
)
# These end one only when a capitalised word follows ("9 a.m. Then" but "9 a.m. on Monday").
_MAYBE_FINAL = frozenset(
    {"a.m", "p.m", "etc", "inc", "ltd", "co", "corp", "jr", "sr", "no", "approx", "dept", "u.s", "apt", "ave"}
)
_TERMINAL = re.compile(r"[.!?…]+[\"'”’)\]]*(?=\s|$)")
_CLAUSE = re.compile(r"[,;:](?=\s)|\s[—–-]\s")
_WORD_BEFORE = re.compile(r"(\S+)$")
_SPACES = re.compile(r"[ \t\f\v\u00a0]+")
_LEAD_IN = re.compile(r"^([^:.!?]{2,24}:)\s+(\S.*)$")

FIRST_MAX_CHARS = 50
MAX_CHARS = 200
MIN_CHARS = 12  # never cut a clause shorter than this ("Yes," alone sounds clipped)


def split_sentences(
    text: str, *, first_max_chars: int = FIRST_MAX_CHARS, max_chars: int = MAX_CHARS
) -> list[str]:
    """The speakable pieces of ``text``, in order; empty when there is nothing to say."""
    if first_max_chars < MIN_CHARS or max_chars < first_max_chars:
        raise ValueError(
            f"need {MIN_CHARS} <= first_max_chars <= max_chars, got {first_max_chars}, {max_chars}"
        )
    pieces: list[str] = []
    for line in text.splitlines():
        for sentence in _sentences(_SPACES.sub(" ", line).strip()):
            soft = first_max_chars if not pieces else max_chars
            body = sentence
            lead_in = _LEAD_IN.match(sentence) if not pieces else None
            if lead_in and len(lead_in.group(2)) >= MIN_CHARS and _speakable(lead_in.group(1)):
                pieces.append(lead_in.group(1))
                body = lead_in.group(2)
            pieces.extend(p for p in _cut(body, soft, max_chars) if _speakable(p))
    return pieces


def _sentences(line: str) -> list[str]:
    out: list[str] = []
    start = 0
    for match in _TERMINAL.finditer(line):
        if match.group().startswith(".") and not _ends_sentence(line, match):
            continue
        out.append(line[start : match.end()].strip())
        start = match.end()
    out.append(line[start:].strip())
    return [s for s in out if s]


def _ends_sentence(line: str, match: re.Match[str]) -> bool:
    """Whether a full stop at ``match`` ends the sentence, judged by the words around it."""
    if match.group() != ".":
        return True  # "...", "?!", '."' end one
    before = _WORD_BEFORE.search(line, 0, match.start())
    if before is None:
        return True
    word = before.group(1).lstrip("(\"'“‘").lower()
    after = line[match.end() :].lstrip()
    capital_next = after[:1].isupper()
    if word in _NEVER_FINAL:
        return False
    if word in _MAYBE_FINAL:
        return capital_next and not (word == "no" and after[:1].isdigit())
    if len(word) == 1 and word.isalpha() and before.group(1).isupper():
        return not capital_next  # "J. Smith": an initial; "plan B. then" is rare enough
    return True


def _cut(sentence: str, soft: int, hard: int) -> list[str]:
    """``sentence`` in pieces: at a clause boundary past ``soft``, at a space past ``hard``."""
    pieces: list[str] = []
    rest = sentence
    while len(rest) > soft:
        at = _clause_end(rest, soft, hard)
        if at is None and len(rest) > hard:
            space = rest.rfind(" ", MIN_CHARS, hard + 1)
            at = space if space > 0 else hard  # one endless "word": cut it anyway
        if at is None:
            break
        pieces.append(rest[:at].strip())
        rest = rest[at:].strip()
        soft = hard
    if rest:
        pieces.append(rest)
    return pieces


def _clause_end(text: str, soft: int, hard: int) -> int | None:
    """Where to cut ``text`` at a clause boundary: the last one within ``soft`` characters, else
    the first within ``hard``; both sides at least MIN_CHARS long."""
    ends = [m.end() for m in _CLAUSE.finditer(text)]
    ends = [e for e in ends if MIN_CHARS <= e <= hard and len(text) - e >= MIN_CHARS]
    within = [e for e in ends if e <= soft]
    return within[-1] if within else (ends[0] if ends else None)


def _speakable(piece: str) -> bool:
    return any(c.isalnum() for c in piece)
