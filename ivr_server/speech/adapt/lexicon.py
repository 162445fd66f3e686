"""Pronunciations for every word a flow's models use: the dictionary, an admin's own, espeak-ng.

A word the recognizer's dictionary has keeps its entries. A word it lacks ("revolut", "gbp")
gets one from, in order: the admin's pronunciations (the flow's ``recognition.pronunciations``,
ARPAbet phones such as ``R EH V AH L UW T``), then espeak-ng's grapheme-to-phoneme rules (its
IPA output mapped to ARPAbet here). A word none of them can pronounce is a ``ResourceError``
naming it. Every phone is checked against the acoustic model's phone set.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ivr_server.errors import ResourceError

PHONES = frozenset(
    [
        "AA",
        "AE",
        "AH",
        "AO",
        "AW",
        "AY",
        "B",
        "CH",
        "D",
        "DH",
        "EH",
        "ER",
        "EY",
        "F",
        "G",
        "HH",
        "IH",
        "IY",
        "JH",
        "K",
        "L",
        "M",
        "N",
        "NG",
        "OW",
        "OY",
        "P",
        "R",
        "S",
        "SH",
        "T",
        "TH",
        "UH",
        "UW",
        "V",
        "W",
        "Y",
        "Z",
        "ZH",
    ]
)
G2P_BATCH = 200  # words per espeak-ng run
G2P_TIMEOUT_S = 60.0
MAX_WORD_CHARS = 40
_WORD = re.compile(r"^[a-z][a-z']*$")
_TIE = "\u200d"  # espeak-ng --ipa=3 ties the symbols of one phoneme with a zero-width joiner

# espeak-ng's en-us IPA -> ARPAbet; tied symbols are looked up whole, then one by one.
IPA: dict[str, tuple[str, ...]] = {
    "i": ("IY",), "iː": ("IY",), "ɪ": ("IH",), "ᵻ": ("IH",), "e": ("EH",), "eɪ": ("EY",),
    "ɛ": ("EH",), "æ": ("AE",), "a": ("AE",), "ɐ": ("AH",), "ɑ": ("AA",), "ɑː": ("AA",),
    "ɒ": ("AA",), "ɔ": ("AO",), "ɔː": ("AO",), "o": ("OW",), "oʊ": ("OW",), "əʊ": ("OW",),
    "ʊ": ("UH",), "u": ("UW",), "uː": ("UW",), "ʌ": ("AH",), "ə": ("AH",), "ɚ": ("ER",),
    "ɜ": ("ER",), "ɜː": ("ER",), "aɪ": ("AY",), "aʊ": ("AW",), "ɔɪ": ("OY",),
    "əl": ("AH", "L"), "ɑːɹ": ("AA", "R"), "ɔːɹ": ("AO", "R"), "ɪɹ": ("IH", "R"),
    "ɛɹ": ("EH", "R"), "ʊɹ": ("UH", "R"), "oːɹ": ("AO", "R"), "iə": ("IY", "AH"),
    "p": ("P",), "b": ("B",), "t": ("T",), "d": ("D",), "k": ("K",), "ɡ": ("G",), "g": ("G",),
    "f": ("F",), "v": ("V",), "θ": ("TH",), "ð": ("DH",), "s": ("S",), "z": ("Z",),
    "ʃ": ("SH",), "ʒ": ("ZH",), "h": ("HH",), "m": ("M",), "n": ("N",), "ŋ": ("NG",),
    "l": ("L",), "ɹ": ("R",), "r": ("R",), "w": ("W",), "j": ("Y",), "tʃ": ("CH",),
    "dʒ": ("JH",), "ɾ": ("T",), "ʔ": ("T",), "x": ("K",), "ç": ("HH",), "n̩": ("AH", "N"),
    "l̩": ("AH", "L"), "ɬ": ("L",), "ʍ": ("W",),
}  # fmt: skip
_IGNORED = set("ˈˌ.-_ ") | {"\u0329"}  # stress, syllable marks; the syllabic mark is in the keys


@dataclass
class Lexicon:
    """The recognizer's pronouncing dictionary, read once per process."""

    entries: dict[str, list[str]] = field(default_factory=dict)  # word -> phone strings

    @classmethod
    def read(cls, path: Path) -> Lexicon:
        entries: dict[str, list[str]] = {}
        try:
            with path.open(encoding="utf-8") as fh:
                for line in fh:
                    word, _, phones = line.strip().partition(" ")
                    if phones:
                        entries.setdefault(word.split("(")[0], []).append(" ".join(phones.split()))
        except OSError as err:
            raise ResourceError(f"cannot read the pronouncing dictionary {path}: {err}") from err
        return cls(entries)

    def __contains__(self, word: str) -> bool:
        return word in self.entries


def check_phones(word: str, phones: str, where: str) -> str:
    seq = phones.upper().split()
    bad = [p for p in seq if p not in PHONES]
    if not seq or bad:
        raise ResourceError(
            f"{where}: pronunciation of '{word}' has phones the acoustic model lacks: "
            f"{', '.join(bad) or '(none given)'} (use ARPAbet: {' '.join(sorted(PHONES))})"
        )
    return " ".join(seq)


def pronounce(
    words: Iterable[str], lexicon: Lexicon, own: Mapping[str, str] | None = None, where: str = "flow"
) -> dict[str, list[str]]:
    """Pronunciations for ``words``: ``own`` first (checked), the dictionary, then espeak-ng."""
    out: dict[str, list[str]] = {}
    for word, phones in (own or {}).items():
        out[word.lower()] = [check_phones(word, phones, f"{where}: recognition.pronunciations")]
    missing = []
    for word in sorted(set(words)):
        if word in out or word in ("<s>", "</s>"):
            continue
        if word in lexicon:
            out[word] = lexicon.entries[word]
        else:
            missing.append(word)
    for word in missing:
        if len(word) > MAX_WORD_CHARS or not _WORD.match(word):
            raise ResourceError(f"{where}: cannot pronounce '{word[:MAX_WORD_CHARS]}' (not a word)")
    for start in range(0, len(missing), G2P_BATCH):
        batch = missing[start : start + G2P_BATCH]
        for word, ipa in zip(batch, _espeak_ipa(batch), strict=True):
            out[word] = [check_phones(word, " ".join(ipa_to_arpabet(ipa, word, where)), where)]
    return out


def _espeak_ipa(words: list[str]) -> list[str]:
    """espeak-ng's IPA for each word, one line each (words are spoken as separate clauses)."""
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        raise ResourceError(
            f"the dictionary lacks {len(words)} word(s) ({', '.join(words[:5])}) and espeak-ng, which "
            "would pronounce them, is not installed: apt-get install espeak-ng"
        )
    try:
        result = subprocess.run(
            [espeak, "-q", "--ipa=3", "-v", "en-us", "--stdin"],
            input="\n".join(f"{w}." for w in words) + "\n",
            capture_output=True,
            text=True,
            timeout=G2P_TIMEOUT_S,
            check=True,
        )
    except (subprocess.SubprocessError, OSError) as err:
        raise ResourceError(f"espeak-ng could not pronounce {', '.join(words[:5])}: {err}") from err
    lines = [line.strip() for line in result.stdout.splitlines() if line.strip()]
    if len(lines) != len(words):  # a word espeak read as two clauses: one at a time
        return [_espeak_ipa([w])[0] if len(words) > 1 else " ".join(lines) for w in words]
    return lines


def ipa_to_arpabet(ipa: str, word: str = "", where: str = "flow") -> list[str]:
    phones: list[str] = []
    for group in _groups(ipa):
        if group in IPA:
            phones.extend(IPA[group])
            continue
        for symbol in _symbols(group):  # an unknown tie: its symbols one by one
            if symbol in IPA:
                phones.extend(IPA[symbol])
            elif symbol not in _IGNORED:
                raise ResourceError(
                    f"{where}: espeak-ng pronounces '{word}' with '{symbol}', which has no ARPAbet phone"
                )
    if not phones:
        raise ResourceError(f"{where}: espeak-ng gave no pronunciation for '{word}'")
    # "ɚɹ" (r-coloured vowel, then r): ARPAbet's ER already carries the r.
    return [p for i, p in enumerate(phones) if not (p == "R" and i and phones[i - 1] == "ER")]


def _groups(ipa: str) -> list[str]:
    """Split into phonemes: tied symbols stay together, a length or syllabic mark stays with
    the symbol before it, stress and syllable marks go."""
    out: list[str] = []
    tied = False
    for ch in ipa:
        if ch == _TIE:
            tied = bool(out)
        elif ch in _IGNORED and ch != "\u0329":
            tied = False
        elif out and (tied or ch in "ː\u0329"):
            out[-1] += ch
            tied = False
        else:
            out.append(ch)
    return out


def _symbols(group: str) -> list[str]:
    out: list[str] = []
    for ch in group:
        if out and ch in "ː\u0329":
            out[-1] += ch
        else:
            out.append(ch)
    return out
