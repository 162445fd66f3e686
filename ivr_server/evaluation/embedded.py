"""Digit strings inside a request, measured the way a call hears its opening sentence.

"My card ending in four five eight five was stolen": the open question's recognizer must get
the digits word for word for the engine to fill the flow's digits slot from it (the engine's own
``entities``, as a call does after acting on the intent), and the request must still be
understood. Each sentence is spoken by synthetic voices through the simulated telephone line
(as the spoken benchmark's requests are: bench.speak) and recognized with the flow's open model.

Also the other side of any change made for them: ordinary requests, without digits, heard with
the same flow's open model (word errors, and whether the flow's intent model understands the
words heard as it understands the words said).
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ivr_server.dialog.decide import decide
from ivr_server.dialog.nlu.classifier import IntentClassifier
from ivr_server.dialog.slots.parsers import entities
from ivr_server.dialog.spec.model import Flow
from ivr_server.errors import AsrError
from ivr_server.evaluation.bench import speak
from ivr_server.evaluation.spoken import Recognized, recognize_all
from ivr_server.evaluation.voices import Renderer
from ivr_server.speech.adapt.words import ONES, spoken_words
from ivr_server.speech.asr.base import AsrEngine, LanguageModel
from ivr_server.speech.asr.evaluate import word_errors

_PLACE = re.compile(r"\{(\w+)\}")
MAX_MISTAKES = 30


@dataclass(frozen=True)
class DigitRequest:
    text: str  # what the caller says, the digits as words ("... four five eight five ...")
    intent: str  # what it means
    slot: str  # the digits slot it gives
    digits: str  # the slot's value: "4585"


def digit_requests(
    templates: Sequence[tuple[str, str]], lengths: dict[str, int], seed: int, oh_share: float = 0.3
) -> list[DigitRequest]:
    """Each ``(template, intent)`` with its ``{slot}`` filled by random digits of the slot's
    length, said one by one ("zero" said "oh" in ``oh_share`` of the strings, as people read
    account numbers). Reproducible for a seed."""
    rng = random.Random(seed)
    out = []
    for template, intent in templates:
        slots = _PLACE.findall(template)
        if len(slots) != 1 or slots[0] not in lengths:
            raise ValueError(f"a template needs exactly one slot of {sorted(lengths)}: {template!r}")
        slot = slots[0]
        digits = "".join(str(rng.randrange(10)) for _ in range(lengths[slot]))
        zero = "oh" if rng.random() < oh_share else "zero"
        said = " ".join(zero if d == "0" else ONES[int(d)] for d in digits)
        out.append(DigitRequest(template.replace(f"{{{slot}}}", said), intent, slot, digits))
    return out


def hear_requests(
    requests: Sequence[DigitRequest],
    engine: AsrEngine,
    model: LanguageModel | None,
    renderer: Renderer,
    voices: Sequence[str],
    seed: int,
    snr_db: float,
    per_request: int = 2,
) -> list[Recognized]:
    """Each request spoken by ``per_request`` voices (request i by voices i, i + len/2, ... in
    turn, so a synthesizer pair shares every sentence) and recognized with ``model``."""
    step = max(1, len(voices) // per_request)
    items, order = [], []
    for i, request in enumerate(requests):
        for k in range(per_request):
            items.append((request.text, str(i)))
            order.append(voices[(i + k * step) % len(voices)])
    recordings = [
        r
        for j, (item, voice) in enumerate(zip(items, order, strict=True))
        for r in speak(renderer, [item], [voice], seed * 1000 + j, snr_db)
    ]
    return recognize_all(recordings, engine, model)


def score_requests(
    requests: Sequence[DigitRequest],
    heard: Sequence[Recognized],
    flow: Flow,
    state_name: str,
    intent_model: IntentClassifier,
) -> dict[str, Any]:
    """Per recording: the digits the engine fills from the words heard (every digits slot of
    the flow offered, as a call offers the ones still missing), and the intent the state's rules
    act on or confirm. Shares over all recordings and per voice, and the misheard ones."""
    state = flow.states[state_name]
    intents = [flow.intents[n] for n in state.listen] or list(flow.intents.values())
    slots = [s for s in flow.slots.values() if s.type in ("digits", "card_number")]
    rows: list[dict[str, Any]] = []
    for item in heard:
        request = requests[int(item.recording.category)]
        said = item.result.text
        decision = decide(
            intents, state.settings, said, "", intent_model.guesses(said), item.result.confidence
        )
        got = entities(slots, said).get(request.slot)
        ref, hyp = spoken_words(request.text), spoken_words(said)
        rows.append({
            "voice": item.recording.voice, "said": request.text, "heard": said,
            "digits_ok": got == request.digits,
            "intent_ok": decision.kind in ("act", "confirm") and decision.intent == request.intent,
            "errors": word_errors(ref, hyp), "words": len(ref),
        })  # fmt: skip
    if not rows:
        raise AsrError("nothing to score")
    return {
        **_shares(rows),
        "voices": {
            v: _shares([r for r in rows if r["voice"] == v]) for v in sorted({r["voice"] for r in rows})
        },
        "mistakes": [
            {k: r[k] for k in ("voice", "said", "heard", "digits_ok", "intent_ok")}
            for r in rows
            if not (r["digits_ok"] and r["intent_ok"])
        ][:MAX_MISTAKES],
    }


def _shares(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    n = len(rows)
    return {
        "recordings": n,
        "digits": round(sum(r["digits_ok"] for r in rows) / n, 4),
        "intent": round(sum(r["intent_ok"] for r in rows) / n, 4),
        "both": round(sum(r["digits_ok"] and r["intent_ok"] for r in rows) / n, 4),
        "wer": round(sum(r["errors"] for r in rows) / max(sum(r["words"] for r in rows), 1), 4),
    }


def score_ordinary(heard: Sequence[Recognized], intent_model: IntentClassifier) -> dict[str, Any]:
    """Ordinary requests heard with a flow's open model: word errors, and the share whose words
    heard get the intent model's first guess that the words said get (its intents need not be
    the requests' own: a flow of five intents hearing banking77)."""
    if not heard:
        raise AsrError("nothing to score")
    errors = words = agree = 0
    for item in heard:
        ref, hyp = spoken_words(item.recording.text), spoken_words(item.result.text)
        errors += word_errors(ref, hyp)
        words += len(ref)
        typed, spoken = intent_model.guesses(item.recording.text), intent_model.guesses(item.result.text)
        agree += bool(typed and spoken and typed[0].intent == spoken[0].intent)
    return {
        "recordings": len(heard),
        "wer": round(errors / max(words, 1), 4),
        "agree": round(agree / len(heard), 4),
    }
