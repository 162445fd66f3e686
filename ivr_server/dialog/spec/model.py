"""A flow as the engine runs it: frozen, checked, and free of YAML (see parse.py for the file)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ivr_server.dialog.spec.template import Template

SLOT_TYPES = ("digits", "number", "amount", "date", "yes_no", "text", "card_number")
EVENTS = (
    "no_input", "no_match", "done", "error", "refused", "always", "said_yes", "said_no", "transfer_failed",
)  # fmt: skip
HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


@dataclass(frozen=True)
class Settings:
    """Per-state settings; the flow's ``settings`` are the defaults every state starts from."""

    barge_in: bool = True
    end_silence_ms: int | None = None  # None: the server's IVR_VAD_END_SILENCE_MS
    # A digit string is read off a card with pauses between digits or groups: its turn ends after
    # this much silence (or end_silence_ms if longer), not at the first pause.
    digits_end_silence_ms: int = 800
    no_input_ms: int = 6000
    max_no_input: int = 2  # then the state's no_input transition, or the flow's escalation
    max_no_match: int = 2
    act_above: float = 0.80  # model confidence to act without asking
    confirm_above: float = 0.50  # between the two: "You want to ..., right?"; below: reprompt
    asr_confirm_below: float = 0.50  # words heard less surely than this: confirm, never act (0: off)


@dataclass(frozen=True)
class Prompt:
    name: str
    text: dict[str, Template]  # language -> template


@dataclass(frozen=True)
class Intent:
    name: str
    examples: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()  # a phrase heard in the words decides deterministically
    patterns: tuple[str, ...] = ()  # regular expressions over the words, also deterministic
    dtmf: str | None = None
    confirm: str | None = None  # prompt for "You want to ..., right?"


@dataclass(frozen=True)
class Slot:
    name: str
    type: str
    prompt: str | None = None
    length: int | None = None  # digits: exactly this many
    sensitive: bool = False  # confirmed before use
    secure: bool = False  # never echoed, logged or stored in clear


@dataclass(frozen=True)
class Tool:
    name: str
    method: str
    service: str  # base URL, header secrets and circuit breaker come from config, per service
    path: Template
    body: dict[str, Template] = field(default_factory=dict)
    timeout_s: float = 3.0
    retries: int = 0
    idempotent: bool = False
    critical: bool = False  # runs to its end (audited) even if the caller hangs up meanwhile
    filler_after_ms: int = 1000
    filler: str | None = None  # prompt played when the call takes longer than filler_after_ms
    result: dict[str, str] = field(default_factory=dict)  # slot -> dotted path in the JSON answer


@dataclass(frozen=True)
class Action:
    kind: str  # say | call | set | transfer | hangup | flow
    prompt: str | None = None
    languages: tuple[str, ...] = ()  # say: once in each of these languages, each in its voice
    flow: str | None = None  # flow: the call goes on in this flow (a language's own, say)
    tool: str | None = None
    values: dict[str, str] = field(default_factory=dict)
    transfer: dict[str, str] = field(default_factory=dict)  # context/extension/queue, or warm + endpoint

    @property
    def warm(self) -> bool:
        """A warm transfer: the caller comes back to the flow when no agent takes the call."""
        return self.kind == "transfer" and self.transfer.get("warm") == "true"


@dataclass(frozen=True)
class Transition:
    intent: str | None = None
    event: str | None = None
    dtmf: str | None = None
    when: dict[str, str | bool] = field(default_factory=dict)  # slot -> value, or True: filled
    actions: tuple[Action, ...] = ()
    goto: str | None = None


@dataclass(frozen=True)
class State:
    name: str
    say: tuple[str, ...] = ()
    listen: tuple[str, ...] = ()  # intents accepted here
    collect: tuple[str, ...] = ()  # slots to fill (only those still missing are asked)
    actions: tuple[Action, ...] = ()  # on entry, after say
    on: tuple[Transition, ...] = ()
    settings: Settings = Settings()
    end: bool = False

    @property
    def terminal(self) -> bool:
        """The call ends here (a warm transfer may come back, so it does not end the state)."""
        return self.end or any(a.kind in ("transfer", "hangup", "flow") and not a.warm for a in self.actions)


@dataclass(frozen=True)
class NluSpec:
    """What the intent model learns besides the intents' examples."""

    data: tuple[str, ...] = ()  # CSV files (text,category), relative to the flow file
    out_of_scope: tuple[str, ...] = ()  # phrases this line does not handle (category oos)
    generic_out_of_scope: bool = True  # also the bundled list (weather, jokes, small talk)
    heard_per_intent: int = 0  # also learn from this many examples per intent as recognized


@dataclass(frozen=True)
class RecognitionSpec:
    """How the flow's recognition resources are compiled (speech/adapt/)."""

    pronunciations: dict[str, str] = field(default_factory=dict)  # word -> ARPAbet phones


REPAIRS = ("repeat", "help", "correction", "cancel", "start_over", "back", "digression", "hold", "agent")


@dataclass(frozen=True)
class RepairSpec:
    """The engine's built-in repairs (dialog/repair.py): on in every flow unless listed in ``off``.
    Their wording is the flow's prompts named ``repair_*`` where it has them."""

    off: frozenset[str] = frozenset()
    hold_s: int = 30  # "wait a second": how long the no-input timer waits instead
    max_restarts: int = 3  # "start over" more often than this: the caller goes to the handoff state
    max_corrections: int = 3  # per slot; more: the handoff state
    phrases: dict[str, tuple[str, ...]] = field(default_factory=dict)  # more ways to ask, per repair

    def on(self, repair: str) -> bool:
        return repair not in self.off


@dataclass(frozen=True)
class ReturningSpec:
    """Returning callers (dialog/returning.py): a caller who hung up in the middle of a task is
    offered to finish it when they call again. Off unless the flow has a ``returning:`` block;
    worded by the prompts ``returning_offer_<intent>`` or ``returning_offer`` where it has them."""

    enabled: bool = False
    window_min: int = 60  # a call this long after the hang-up, at most, is offered the task
    keep_hours: int = 24  # the saved task is deleted after this, offered or not


@dataclass(frozen=True)
class Flow:
    name: str
    start: str
    languages: tuple[str, ...]
    settings: Settings
    prompts: dict[str, Prompt]
    intents: dict[str, Intent]
    slots: dict[str, Slot]
    tools: dict[str, Tool]
    states: dict[str, State]
    file: str = "<flow>"
    handoff: str | None = None  # where a caller goes when misses escalate (an agent)
    nlu: NluSpec = NluSpec()
    version: str = ""  # sha256 of the file's text, first 12 hex digits: recorded with every decision
    recognition: RecognitionSpec = RecognitionSpec()
    repair: RepairSpec = RepairSpec()
    returning: ReturningSpec = ReturningSpec()
