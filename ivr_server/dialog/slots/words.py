"""Spoken numbers as text: "four four two one", "double four", "one hundred and twenty three"."""

from __future__ import annotations

import math
import re

from ivr_server.spoken_numbers import DIGIT_WORDS, REPEATS, SCALES, TENS, UNITS

_TOKEN = re.compile(r"[a-z]+|[\uac00-\ud7a3]+|\d+(?:\.\d+)?")  # Latin, Hangul syllables, numbers
# Korean digits as said one by one (Sino-Korean: 사 사 이 일 = 4421; 공 and 영 are both zero).
KOREAN_DIGITS = {"영": "0", "공": "0", "일": "1", "이": "2", "삼": "3", "사": "4", "오": "5",
                 "육": "6", "륙": "6", "칠": "7", "팔": "8", "구": "9"}  # fmt: skip


_HOMOPHONES = ("to", "too", "for", "o")


def _plain(tok: str) -> bool:
    return tok.isdigit() or (tok in DIGIT_WORDS and tok not in _HOMOPHONES)


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.lower().replace(",", ""))


def digit_runs(text: str) -> list[str]:
    """Runs of digits as said one by one or written: "ending four four 2 1, thanks" -> ["4421"].
    Filler words end a run; "double"/"triple" repeat the next digit."""
    runs: list[str] = []
    current, repeat = "", 1
    toks = tokens(text)
    for i, tok in enumerate(toks):
        after = toks[i + 1] if i + 1 < len(toks) else ""
        if tok.isdigit():
            current += tok * repeat
            repeat = 1
        elif tok in KOREAN_DIGITS:
            current += KOREAN_DIGITS[tok]
        elif tok in REPEATS:
            repeat = REPEATS[tok]
        elif tok in DIGIT_WORDS and not (
            tok in _HOMOPHONES and not current and repeat == 1 and not _plain(after)
        ):
            # "to"/"for"/"o" are words too: digits only inside a run, or starting one that a
            # plain digit follows ("ending in for four to one": how ASR hears "four four two one")
            current += DIGIT_WORDS[tok] * repeat
            repeat = 1
        else:
            if current:
                runs.append(current)
            current, repeat = "", 1
    if current:
        runs.append(current)
    return runs


MAX_NUMBER = 10**15  # past this a said or keyed number is no amount a caller means


def number_value(text: str) -> float | None:
    """A number said as words or written: "one hundred and twenty three" -> 123, "12.50" -> 12.5,
    "twelve point five" -> 12.5. None when the text holds no number; infinity when it holds one
    of MAX_NUMBER or more ("one million million million ...", five thousand nines)."""
    total, group, seen, decimals, in_decimals = 0, 0, False, "", False
    for tok in tokens(text):
        if total > MAX_NUMBER or group > MAX_NUMBER or len(tok) > 40:
            return math.inf  # checked before any int() or float(): those overflow or refuse
        if re.fullmatch(r"\d+(\.\d+)?", tok):
            if in_decimals:
                decimals += tok.replace(".", "")
            else:
                group += float(tok) if "." in tok else int(tok)  # type: ignore[assignment]
            seen = True
        elif in_decimals and tok in DIGIT_WORDS:
            decimals += DIGIT_WORDS[tok]
        elif tok in UNITS:
            group += UNITS[tok]
            seen = True
        elif tok in TENS:
            group += TENS[tok]
            seen = True
        elif tok == "hundred":
            group = (group or 1) * 100
            seen = True
        elif tok in SCALES:
            total += (group or 1) * SCALES[tok]
            group, seen = 0, True
        elif tok == "point" and seen:
            in_decimals = True
        elif tok in ("and", "a"):
            continue
        elif seen:
            break  # the number has ended ("fifty dollars")
    if not seen:
        return None
    if total + group > MAX_NUMBER:
        return math.inf
    value = float(total + group)
    return value + float(f"0.{decimals[:15]}") if decimals else value
