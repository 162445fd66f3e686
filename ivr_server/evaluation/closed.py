"""Closed questions answered with something else, measured the way a call hears them.

At "say the last four digits of your card" a caller may give the digits, ask for a repair
("sorry, say that again", "cancel"), or ask for another task first ("what's my balance?"); at
"That's the card ending 4421, right?" say yes or no, ask for a repair, or correct the digits
("no, it's 5678"). Each sentence is spoken by synthetic voices through the simulated telephone
line and recognized as a call hears that question (call_port.listening_for); what the engine
does with the words heard (``outcome``: its own repair, slot and decision functions, in its
order) is compared with what the caller meant.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ivr_server.dialog.call_port import listening_for
from ivr_server.dialog.decide import decide
from ivr_server.dialog.nlu.classifier import IntentClassifier
from ivr_server.dialog.repair import YES_NO
from ivr_server.dialog.repair_words import (
    ASKED,
    asked_repair,
    correcting,
    loosely_asked_repair,
    without_correction,
)
from ivr_server.dialog.slots.parsers import grammar_guess, parse, parse_heard
from ivr_server.dialog.spec.model import Flow
from ivr_server.errors import AsrError
from ivr_server.evaluation.bench import speak
from ivr_server.evaluation.spoken import Recognized, recognize_all
from ivr_server.evaluation.voices import Renderer
from ivr_server.speech.adapt.compile import FlowResources
from ivr_server.speech.adapt.grammars import answer_kind
from ivr_server.speech.adapt.words import ONES
from ivr_server.speech.asr.base import AsrEngine, AsrResult, LanguageModel

LANGUAGE = "en"
CATEGORIES = ("answer", "repair", "digression", "correction")
MAX_MISTAKES = 20  # per question and category
FAILED = "failed"  # the engine of a recognition that raised
_DIGITS = "{digits}"
_PAUSED = "{digits,}"  # read out one by one, a pause after each ("two, four, six, eight")
_DIGIT_WORDS = frozenset((*ONES[:10], "oh"))


@dataclass(frozen=True)
class Question:
    name: str  # "last4", "account", "confirm_last4"
    state: str  # the flow's state that asks it
    slot: str  # the slot asked for, or confirmed
    confirming: bool = False  # a yes/no confirmation of the slot's value


@dataclass(frozen=True)
class ClosedItem:
    text: str  # what the caller says, digits as words
    question: Question
    category: str  # one of CATEGORIES
    expected: str  # the outcome meant: "digits:4421", "yes", "repair:cancel", "task:balance", ...


def said_digits(rng: random.Random, length: int, oh_share: float = 0.3) -> tuple[str, str]:
    """Random digits and the words for them, one by one ("zero" said "oh" in ``oh_share``)."""
    digits = "".join(str(rng.randrange(10)) for _ in range(length))
    zero = "oh" if rng.random() < oh_share else "zero"
    return digits, " ".join(zero if d == "0" else ONES[int(d)] for d in digits)


def closed_items(
    rows: Sequence[tuple[str, str, str]], question: Question, length: int, rng: random.Random
) -> list[ClosedItem]:
    """Each ``(template, category, meant)``: a ``{digits}`` template gets random digits of
    ``length`` (``{digits,}``: read out with a pause after each) and means ``meant:<digits>``
    ("digits", "correction"); the others mean ``meant``."""
    out = []
    for template, category, meant in rows:
        if category not in CATEGORIES:
            raise ValueError(f"unknown category {category!r}: {template!r}")
        if _DIGITS in template or _PAUSED in template:
            digits, words = said_digits(rng, length)
            text = template.replace(_DIGITS, words).replace(_PAUSED, words.replace(" ", ", "))
            out.append(ClosedItem(text, question, category, f"{meant}:{digits}"))
        else:
            out.append(ClosedItem(template, question, category, meant))
    return out


def digits_alone(text: str) -> bool:
    """Whether ``text`` is digit words and nothing else: what a digit grammar is made for."""
    words = text.replace(",", " ").split()
    return bool(words) and all(w in _DIGIT_WORDS for w in words)


def outcome(
    question: Question,
    flow: Flow,
    heard: str,
    alternatives: Sequence[str] = (),
    confidence: float | None = None,
    intent_model: IntentClassifier | None = None,
    grammar_heard: str = "",
) -> str:
    """What the engine does with ``heard`` at ``question``, in its order: a repair asked for in
    words (repair.py _asked, all seven allowed); at a confirmation a correction, else yes or no
    (_confirmed); at a digit question the slot's value (_collect), else another of the flow's
    tasks the state's rules and model act on (_other_task), else a repair asked for with a word
    misheard (_asked_in_other_words), else the value in what the question's grammar heard when
    the words won over it, where that may stand (_grammar_heard). "none" when it does nothing."""
    slot = flow.slots[question.slot]
    if not heard.strip():
        return "none"
    repair = asked_repair(heard, LANGUAGE, flow.repair.phrases, ASKED)
    if repair is not None:
        return f"repair:{repair}"
    if question.confirming:
        said = parse_heard(YES_NO, heard, alternatives, "").value
        corrected = parse(slot, without_correction(heard, LANGUAGE)).value
        if said != "yes" and corrected is not None:
            return f"correction:{corrected}"
        return said or "none"
    value = parse_heard(slot, heard, alternatives, "").value
    if value is not None:
        return f"digits:{value}"
    task = other_task(question, flow, heard, confidence, intent_model)
    if task:
        return f"task:{task}"
    loose = loosely_asked_repair(heard, LANGUAGE, flow.repair.phrases, ASKED)
    if loose:
        return f"repair:{loose}"
    value = grammar_guess(slot, heard, grammar_heard)
    return f"digits:{value}" if value is not None else "none"


def other_task(
    question: Question,
    flow: Flow,
    heard: str,
    confidence: float | None,
    intent_model: IntentClassifier | None,
) -> str | None:
    """The intent the state's decision acts on, or confirms (the engine asks "You want ...,
    right?" and a caller who asked for it says yes), among the flow's intents other than the
    question's own task (a correcting lead-in taken off first, as the engine does). Wider than
    the engine's _other_task today, which skips secure slots and offers only tasks that go on in
    the flow (not agent, done): the benchmark asks whether the request is heard."""
    state = flow.states[question.state]
    own = {t.intent for s in flow.states.values() for t in s.on if t.goto == question.state}
    candidates = [i for name, i in flow.intents.items() if name not in own]
    said = without_correction(heard, LANGUAGE) if correcting(heard, LANGUAGE) else heard
    guesses = intent_model.guesses(said) if intent_model is not None and said else []
    decision = decide(candidates, state.settings, said, "", guesses, confidence)
    return decision.intent if decision.kind in ("act", "confirm") else None


def right(item: ClosedItem, got: str) -> bool:
    """Whether the engine did what the caller meant; asking for a person by name is served by
    the agent repair as well as by the agent intent."""
    return got == item.expected or (item.expected == "task:agent" and got == "repair:agent")


def listening(
    resources: FlowResources, flow: Flow, question: Question
) -> tuple[Sequence[str] | None, LanguageModel | None]:
    """The phrases and model a call's recognizer gets at ``question`` (call_port.CallPort.hear)."""
    kind = "yesno" if question.confirming else answer_kind(flow.slots[question.slot])
    return listening_for(resources, kind, LANGUAGE)


def hear_items(
    items: Sequence[ClosedItem],
    engine: AsrEngine,
    resources: FlowResources,
    flow: Flow,
    renderer: Renderer,
    voices: Sequence[str],
    seed: int,
    snr_db: float,
    per_item: int = 2,
) -> list[Recognized]:
    """Each item spoken by ``per_item`` voices (item i by voices i, i + len/2, ...: a pair of
    synthesizers shares every sentence) and recognized as its question is heard."""
    step = max(1, len(voices) // per_item)
    out: list[Recognized] = []
    j = 0
    for i, item in enumerate(items):
        phrases, model = listening(resources, flow, item.question)
        for k in range(per_item):
            voice = voices[(i + k * step) % len(voices)]
            recordings = speak(renderer, [(item.text, str(i))], [voice], seed * 1000 + j, snr_db)
            try:
                out += recognize_all(recordings, engine, model, phrases)
            except Exception as err:  # a call hears a failed recognition as nothing: so does this
                why = f"{FAILED}: {type(err).__name__}: {err}"[:200]
                out += [Recognized(r, AsrResult("", True, FAILED, why), 0.0) for r in recordings]
            j += 1
    return out


def score(
    items: Sequence[ClosedItem],
    heard: Sequence[Recognized],
    flow: Flow,
    intent_model: IntentClassifier | None,
) -> dict[str, Any]:
    """Per question and category: the share of recordings the engine served as meant, the share
    of sentences it serves on their own words (no recognizer: the ceiling), and the misheard.
    Overall: the answers' share and the others' (the change must not cost answers)."""
    on_text = [right(i, outcome(i.question, flow, i.text, (), None, intent_model)) for i in items]
    rows: list[dict[str, Any]] = []
    for rec in heard:
        index = int(rec.recording.category)
        item, result = items[index], rec.result
        alternatives = [a.text for a in result.alternatives[1:]]
        got = outcome(
            item.question, flow, result.text, alternatives, result.confidence, intent_model,
            result.grammar.text if result.grammar else "",
        )  # fmt: skip
        rows.append({
            "question": item.question.name, "category": item.category, "voice": rec.recording.voice,
            "said": item.text, "heard": result.model if result.engine == FAILED else result.text,
            "got": got, "ok": right(item, got), "text_ok": on_text[index], "failed": result.engine == FAILED,
            "alone": item.category == "answer" and digits_alone(item.text),
            "paused": item.category == "answer" and "," in item.text,
        })  # fmt: skip
    if not rows:
        raise AsrError("nothing to score")
    cells: dict[str, dict[str, Any]] = {}
    for question in dict.fromkeys(r["question"] for r in rows):
        cells[question] = {}
        for category in CATEGORIES:
            subset = [r for r in rows if r["question"] == question and r["category"] == category]
            if subset:
                cells[question][category] = _cell(subset)
    answers = [r for r in rows if r["category"] == "answer"]
    others = [r for r in rows if r["category"] != "answer"]
    return {
        "recordings": len(rows),
        "failed": sum(r["failed"] for r in rows),
        "answers": _share([r["ok"] for r in answers]),
        "others": _share([r["ok"] for r in others]),
        "questions": cells,
    }


def _cell(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    mistakes = [{k: r[k] for k in ("voice", "said", "heard", "got")} for r in rows if not r["ok"]]
    out: dict[str, Any] = {
        "recordings": len(rows),
        "failed": sum(r["failed"] for r in rows),  # recognitions that raised: heard as nothing
        "right": _share([r["ok"] for r in rows]),
        "text": _share([r["text_ok"] for r in rows]),
        "mistakes": mistakes[:MAX_MISTAKES],
    }
    if alone := [r["ok"] for r in rows if r["alone"]]:  # apart: the answers the grammar is made for
        out["alone"] = {"recordings": len(alone), "right": _share(alone)}
    if paused := [r["ok"] for r in rows if r.get("paused")]:  # read out digit by digit
        out["paused"] = {"recordings": len(paused), "right": _share(paused)}
    return out


def _share(flags: Sequence[bool]) -> float | None:
    return round(sum(flags) / len(flags), 4) if flags else None
