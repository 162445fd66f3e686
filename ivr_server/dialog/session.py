"""What one call's dialog is made of, apart from the engine that runs it: the caller's turn,
the caller's side (Port), the intent model it consults, and the session it builds up."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from ivr_server.dialog.decide import Decision, Guess
from ivr_server.dialog.spec.model import Flow, Settings


@dataclass(frozen=True)
class CallerInput:
    said: str = ""
    keyed: str = ""
    alternatives: tuple[str, ...] = ()  # the recognizer's other hypotheses, best first
    confidence: float | None = None  # how surely the recognizer heard ``said`` (None: unknown)
    barge_in: bool = False  # the caller spoke over the prompt
    energy_dbfs: float | None = None  # the caller's level while speaking (None: unknown)
    grammar_said: str = ""  # a closed question's grammar heard this where other words won

    @property
    def silent(self) -> bool:
        return not self.said.strip() and not self.keyed


class Port(Protocol):
    """What the engine needs from the caller's side."""

    async def say(self, text: str, barge_in: bool, expect: str | None = None) -> None:
        """Speak; ``expect`` is what the caller is asked for (the grammar ``hear`` will get), for
        a caller who answers over the prompt."""
        ...

    async def hear(
        self, settings: Settings, secure: bool, max_keys: int | None, grammar: str | None
    ) -> CallerInput:
        """The caller's next turn; ``secure``: not to be kept (no audio, no digits in logs);
        ``max_keys``: keys that complete an answer (a menu key: 1; None: until # or a pause);
        ``grammar``: the kind of answer asked for ("digits", "yesno", "amount", "number", "date";
        None for an open question), which chooses what the recognizer listens for."""
        ...

    async def transfer(self, target: Mapping[str, str], variables: Mapping[str, str]) -> None: ...

    async def warm_transfer(
        self, target: Mapping[str, str], variables: Mapping[str, str], whisper: str
    ) -> str:
        """Ring the agent (``target["endpoint"]``), whisper to them, and bridge the caller once
        they accept: "bridged"; else why not ("busy", "no_answer", "declined", "failed",
        "unavailable"), with the caller still in the flow."""
        ...

    async def hangup(self) -> None: ...

    def use_language(self, language: str) -> bool:
        """Speak and hear in ``language`` from now on (its voice and recognizer); False when
        the server has none for it."""
        ...

    def switch_flow(self, name: str) -> bool:
        """After this flow ends, the call goes on in flow ``name``; False if there is none."""
        ...


class IntentModel(Protocol):
    version: str

    def guesses(self, text: str) -> Sequence[Guess]: ...


@dataclass(frozen=True)
class DecisionRecord:
    state: str
    said: str
    keyed: str
    decision: Decision
    flow_version: str
    model_version: str | None
    resources_version: str | None = None  # the recognition resources the words were heard with


@dataclass
class Session:
    flow: Flow
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:16])
    state: str = ""
    slots: dict[str, str] = field(default_factory=dict)
    intent: str | None = None  # the last intent acted on
    visited: list[str] = field(default_factory=list)
    decisions: list[DecisionRecord] = field(default_factory=list)
    tool_calls: list[tuple[str, str]] = field(default_factory=list)  # (tool, outcome)
    transcript: list[tuple[str, str]] = field(default_factory=list)  # (who, text), secure masked
    outcome: (
        Literal["transfer", "hangup", "ended", "loop", "switched", "language_unavailable", "abandoned"] | None
    ) = None  # abandoned: the caller hung up
    transfer_variables: dict[str, str] = field(default_factory=dict)
    repairs: list[tuple[str, str, str]] = field(default_factory=list)  # (state, repair, reason)
    agent_attempts: list[str] = field(default_factory=list)  # warm transfers: how each ended
    returning: str | None = None  # a returning caller's saved task: offered, then resumed or declined

    def summary(self) -> str:
        filled = ", ".join(f"{k}={v}" for k, v in self.public_slots().items())
        return f"{self.flow.name}: {self.intent or 'no intent'}" + (f" ({filled})" if filled else "")

    def public_slots(self) -> dict[str, str]:
        return {k: v for k, v in self.slots.items() if not self.flow.slots[k].secure}


class Ended(Exception):
    """A transfer or hang-up: the flow is over."""


class Goto(Exception):
    """A repair that leaves the state the caller was in (start over, go back, an agent, a
    digression): the engine goes on from ``state``."""

    def __init__(self, state: str) -> None:
        super().__init__(state)
        self.state = state
