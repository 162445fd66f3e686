"""What the engine knows about how the call is going, beyond the caller's words: recorded with
every decision, and usable in a flow's conditions (``when: {ctx.frustrated: true,
ctx.no_matches: ">= 2"}``) so a designer can route on it ("frustrated and two no-matches: offer
an agent now").

The inputs: how surely the last words were heard, misses so far (no-match, no-input), barge-ins,
the caller's speaking level, words of frustration, repairs asked for, and time in the call. The
flow's slots (customer data from tools among them) are conditions already.
"""

from __future__ import annotations

import operator
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

# Said by annoyed callers, whatever they want (matched as whole words, case-insensitive).
FRUSTRATION: dict[str, tuple[str, ...]] = {
    "en": (
        "ridiculous", "useless", "stupid", "annoying", "frustrating", "terrible", "awful", "pointless",
        "waste of time", "for god's sake", "what the hell", "damn", "damn it", "are you kidding",
        "you're not listening", "not listening", "i already told you", "i already said",
        "i just said", "for the last time", "this is a joke", "sick of this", "fed up",
    ),
    "ko": ("짜증", "답답", "왜 이래", "몇 번을", "장난", "엉망"),
}  # fmt: skip
LOUD_DBFS = -12.0  # a caller whose words average above this is raising their voice (or too close)

NUMBERS = ("confidence", "no_matches", "no_inputs", "barge_ins", "energy_dbfs", "seconds", "repairs", "turns")
FLAGS = ("frustrated", "loud")
KEYS = NUMBERS + FLAGS
_WORD = re.compile(r"[\w']+")
_COMPARE = re.compile(r"^\s*(>=|<=|==|!=|>|<)\s*(-?\d+(?:\.\d+)?)\s*$")
_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge, "<=": operator.le, "==": operator.eq,
    "!=": operator.ne, ">": operator.gt, "<": operator.lt,
}  # fmt: skip


@dataclass
class CallContext:
    repair_log: Sequence[object] = ()  # the session's repairs: counted, not copied
    clock: Callable[[], float] = time.monotonic
    confidence: float | None = None  # of the last words heard
    no_matches: int = 0
    no_inputs: int = 0
    barge_ins: int = 0
    energy_dbfs: float | None = None  # the last caller turn's level
    frustrated: bool = False  # words of frustration heard in this call
    turns: int = 0  # caller turns
    frustration_words: list[str] = field(default_factory=list)
    started: float = field(init=False)

    def __post_init__(self) -> None:
        self.started = self.clock()

    @property
    def seconds(self) -> float:
        return round(self.clock() - self.started, 1)

    @property
    def repairs(self) -> int:
        return len(self.repair_log)

    @property
    def loud(self) -> bool:
        return self.energy_dbfs is not None and self.energy_dbfs > LOUD_DBFS

    def heard(
        self, said: str, language: str, confidence: float | None, barge_in: bool, energy_dbfs: float | None
    ) -> None:
        """A caller turn: its confidence, whether it cut a prompt short, its level, its words."""
        self.turns += 1
        self.confidence = confidence
        self.barge_ins += barge_in
        if energy_dbfs is not None:
            self.energy_dbfs = round(energy_dbfs, 1)
        found = frustration_in(said, language)
        if found:
            self.frustrated = True
            self.frustration_words.extend(found)

    def value(self, key: str) -> float | bool | None:
        return getattr(self, key)  # type: ignore[no-any-return]

    def as_dict(self) -> dict[str, float | bool | int | None]:
        """What a decision's audit row keeps (the words of frustration themselves are not kept)."""
        return {key: self.value(key) for key in KEYS}


def frustration_in(said: str, language: str) -> list[str]:
    text = " " + " ".join(_WORD.findall(said.lower())) + " "
    return [p for p in FRUSTRATION.get(language, ()) if f" {p} " in text]


def condition_problem(key: str, value: object) -> str | None:
    """Why ``ctx.<key>: value`` is not a condition (None when it is one)."""
    if key not in KEYS:
        return f"unknown context 'ctx.{key}'; the context: " + ", ".join(f"ctx.{k}" for k in KEYS)
    if key in FLAGS:
        return None if isinstance(value, bool) else f"ctx.{key} is true or false, not {value!r}"
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return f'ctx.{key} takes a number or a comparison such as ">= 2", not {value!r}'
    if isinstance(value, str) and not _COMPARE.match(value):
        return f'ctx.{key}: "{value}" is not a comparison (>=, <=, ==, !=, >, < and a number)'
    return None


def holds(context: CallContext, key: str, wanted: str | bool) -> bool:
    """Whether a checked condition holds now (an unknown value, e.g. no words heard yet, never does)."""
    got = context.value(key)
    if isinstance(wanted, bool):
        return bool(got) == wanted
    if got is None or isinstance(got, bool):
        return False
    match = _COMPARE.match(wanted)
    if match is None:
        return float(got) == float(wanted)
    return _OPS[match.group(1)](float(got), float(match.group(2)))
