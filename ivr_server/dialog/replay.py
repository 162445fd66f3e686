"""Replaying stored decisions through another version of a flow: the regression check before a
promote. Each decision the audit trail holds (state, the redacted words and keys) is decided
again with the candidate's rules, thresholds and intent model; what would come out differently
is listed, call by call."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ivr_server.dialog.decide import Decision, Guess, decide
from ivr_server.dialog.session import IntentModel
from ivr_server.dialog.spec.model import Flow


@dataclass(frozen=True)
class StoredDecision:
    call_id: str
    state: str
    said: str
    keyed: str
    kind: str
    intent: str | None


@dataclass(frozen=True)
class Changed:
    decision: StoredDecision
    kind: str
    intent: str | None
    reason: str

    def as_dict(self) -> dict[str, Any]:
        d = self.decision
        return {"call_id": d.call_id, "state": d.state, "said": d.said, "keyed": d.keyed,
                "before": {"kind": d.kind, "intent": d.intent},
                "after": {"kind": self.kind, "intent": self.intent, "reason": self.reason}}  # fmt: skip


def redecide(flow: Flow, model: IntentModel | None, state_name: str, said: str, keyed: str) -> Decision:
    """What ``flow`` decides on these inputs in that state (as Engine._decide does)."""
    state = flow.states.get(state_name)
    if state is None or not state.listen:
        return Decision(
            "no_match", None, "none", reason=f"state {state_name!r} does not listen in this version"
        )
    intents = [flow.intents[name] for name in state.listen]
    guesses: Sequence[Guess] = model.guesses(said) if model is not None and said else ()
    return decide(intents, state.settings, said, keyed, guesses)


def replay(flow: Flow, model: IntentModel | None, decisions: Sequence[StoredDecision]) -> list[Changed]:
    changed = []
    for stored in decisions:
        now = redecide(flow, model, stored.state, stored.said, stored.keyed)
        if (now.kind, now.intent) != (stored.kind, stored.intent):
            changed.append(Changed(stored, now.kind, now.intent, now.reason))
    return changed
