"""From what the caller said or keyed to a decision: rules first, then the model, then the
thresholds. Pure: the state's intents, the words, the keys and the model's guesses in; a
Decision out, with everything needed to repeat and audit it.

Order: a key bound to an intent the state listens for; then keywords and patterns (phrases
an admin wrote: deterministic, they win when they match); then the intent model, whose top
guess is acted on above ``act_above``, confirmed above ``confirm_above`` (or the top two offered
when they are close), and below that the caller is asked again. Speech the recognizer heard
less surely than ``asr_confirm_below`` (the mean posterior of its words) is confirmed rather
than acted on, however sure the rules or the model are of the words: they may be the wrong
words. Only intents the state listens for can ever be decided: speech cannot reach an action
its state does not allow.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import regex
import structlog

from ivr_server.dialog.spec.model import Intent, Settings

log = structlog.get_logger(__name__)

Kind = Literal["act", "confirm", "disambiguate", "no_match"]
Source = Literal["dtmf", "keyword", "pattern", "model", "none"]
CLOSE = 0.15  # top two model guesses this close: ask which one, not "right?"
OUT_OF_SCOPE = "oos"


@dataclass(frozen=True)
class Guess:
    intent: str
    confidence: float  # calibrated probability


@dataclass(frozen=True)
class Decision:
    kind: Kind
    intent: str | None
    source: Source
    confidence: float | None = None
    alternatives: tuple[str, ...] = ()  # disambiguate: the intents offered
    reason: str = ""


def normalized(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9'\uac00-\ud7a3]+", text.lower()))  # Hangul syllables too


def decide(
    intents: Sequence[Intent],
    settings: Settings,
    said: str = "",
    keyed: str = "",
    guesses: Sequence[Guess] = (),
    heard_confidence: float | None = None,
) -> Decision:
    decision = _decide(intents, settings, said, keyed, guesses)
    if (
        decision.kind == "act"
        and decision.source != "dtmf"
        and heard_confidence is not None
        and heard_confidence < settings.asr_confirm_below
    ):
        why = f"heard with confidence {heard_confidence:.2f} < asr_confirm_below {settings.asr_confirm_below}"
        return Decision("confirm", decision.intent, decision.source, decision.confidence, reason=why)
    return decision


def _decide(
    intents: Sequence[Intent], settings: Settings, said: str, keyed: str, guesses: Sequence[Guess]
) -> Decision:
    if keyed:
        for intent in intents:
            if intent.dtmf == keyed:
                return Decision("act", intent.name, "dtmf", 1.0, reason=f"key {keyed}")
        return Decision("no_match", None, "dtmf", reason=f"key {keyed} means nothing here")
    words = normalized(said)
    if not words:
        return Decision("no_match", None, "none", reason="nothing heard")
    rules: list[tuple[Source, list[str]]] = [
        ("keyword", _keyword_hits(intents, words)),
        ("pattern", _pattern_hits(intents, words)),
    ]
    for source, matches in rules:
        if len(matches) == 1:
            return Decision("act", matches[0], source, 1.0, reason=f"{source} matched")
        if len(matches) > 1:
            reason = f"{source}s of {len(matches)} intents matched"
            return Decision("disambiguate", None, source, None, tuple(matches[:2]), reason)
    return _by_model(intents, settings, guesses)


def _keyword_hits(intents: Sequence[Intent], words: str) -> list[str]:
    padded = f" {words} "
    return [i.name for i in intents if any(f" {normalized(k)} " in padded for k in i.keywords)]


PATTERN_TIMEOUT_S = 0.02  # a designer's pattern on a caller's words: bounded, the loop carries audio
MAX_PATTERN_TEXT = 1000  # characters of an utterance a pattern is tried on


def _pattern_hits(intents: Sequence[Intent], words: str) -> list[str]:
    return [i.name for i in intents if any(pattern_hit(p, words) for p in i.patterns)]


def pattern_hit(pattern: str, words: str) -> bool:
    """Whether the flow's pattern matches; a pattern that backtracks past PATTERN_TIMEOUT_S on
    these words counts as no match (and is logged once per pattern) instead of stalling the
    event loop. The ``regex`` module is the one with a match timeout."""
    try:
        return _compiled(pattern).search(words[:MAX_PATTERN_TEXT], timeout=PATTERN_TIMEOUT_S) is not None
    except TimeoutError:
        if pattern not in _timed_out:
            _timed_out.add(pattern)
            log.warning("flow.pattern_timeout", pattern=pattern[:120], timeout_s=PATTERN_TIMEOUT_S)
        return False


@functools.lru_cache(maxsize=1024)
def _compiled(pattern: str) -> Any:
    return regex.compile(pattern)


_timed_out: set[str] = set()


def _by_model(intents: Sequence[Intent], settings: Settings, guesses: Sequence[Guess]) -> Decision:
    allowed = {i.name for i in intents}
    ranked = sorted(guesses, key=lambda g: g.confidence, reverse=True)
    if ranked and ranked[0].intent == OUT_OF_SCOPE and ranked[0].confidence >= settings.confirm_above:
        return Decision("no_match", None, "model", ranked[0].confidence, reason="out of scope")
    here = [g for g in ranked if g.intent in allowed]
    if not here:
        return Decision("no_match", None, "model", reason="no intent of this state was guessed")
    top = here[0]
    if top.confidence >= settings.act_above:
        return Decision(
            "act", top.intent, "model", top.confidence, reason=f">= act_above {settings.act_above}"
        )
    if top.confidence >= settings.confirm_above:
        second = here[1] if len(here) > 1 else None
        if second is not None and top.confidence - second.confidence < CLOSE:
            return Decision(
                "disambiguate", None, "model", top.confidence, (top.intent, second.intent), "top two close"
            )
        return Decision(
            "confirm",
            top.intent,
            "model",
            top.confidence,
            reason=f">= confirm_above {settings.confirm_above}",
        )
    return Decision(
        "no_match", None, "model", top.confidence, reason=f"< confirm_above {settings.confirm_above}"
    )


Step = Literal["reprompt", "rephrase", "offer_dtmf", "escalate"]


@dataclass
class Misses:
    """No-input and no-match counts of one visit to a state, and what to do about the next one:
    ask again, rephrase with examples, offer the keypad, then escalate (the state's no_input or
    no_match transition; with none, an agent)."""

    no_input: int = 0
    no_match: int = 0

    def missed(self, kind: Literal["no_input", "no_match"], settings: Settings) -> Step:
        if kind == "no_input":
            self.no_input += 1
            count, limit = self.no_input, settings.max_no_input
        else:
            self.no_match += 1
            count, limit = self.no_match, settings.max_no_match
        if count > limit:
            return "escalate"
        steps: tuple[Step, ...] = ("reprompt", "rephrase", "offer_dtmf")
        return steps[min(count, len(steps)) - 1]
