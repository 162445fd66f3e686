"""The simulated caller: it listens to what the line says and answers as a caller with its goal
would (the wording the goal gives it, digits said or keyed, yes or no to a read-back), or presses
the keys a keypad menu asks for. Run in-process through a flow (``plan``), it yields the call's
script: the caller's turns and what the line says before each, which the real call then plays.

With a ``Hearing``, the flow in-process gets the caller's words as the server's recognizer will
hear them on the line, not as said: after a mishearing the line says what the real call will
say (a read-back of an unsure request, "Sorry, I didn't get that", the menu of choices), and the
caller answers that, as a caller who listens would. The caller never sees what was heard, only
what the line says."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from benchmarks.ab.goals import Goal, Interjection, Task, spoken_digits
from benchmarks.common import REPO
from ivr_server.dialog.call_port import listening_for
from ivr_server.dialog.engine import Engine
from ivr_server.dialog.flowtest import ScriptPort
from ivr_server.dialog.nlu.flow_model import model_for_flow
from ivr_server.dialog.session import CallerInput
from ivr_server.dialog.spec.loader import load_flow
from ivr_server.dialog.spec.model import Flow, Settings
from ivr_server.media.g711 import ulaw_decode, ulaw_encode
from ivr_server.speech.adapt.compile import FlowResources
from ivr_server.speech.asr.base import AsrEngine, feed_all
from ivr_server.tools.client import Service, ToolClient
from tests.support.audio import piper

Turn = dict[str, str]  # {"say": text} or {"keys": digits}, as a flow test file says
MAX_TURNS = 14  # a caller still not done by then gives up
TREE_KEYS = {"balance": "1", "transactions": "2", "block": "3", "agent": "0"}
# Words in a read-back ("You want lost card, right?") that name each task.
TASK_WORDS = {"block": ("card",), "balance": ("balance",), "transactions": ("transaction",),
              "agent": ("agent", "person")}  # fmt: skip
DONE_WHEN = {"block": "is blocked", "balance": "available balance is",
             "transactions": "most recent transactions", "agent": "queue"}  # fmt: skip


def prompt_kind(line: str) -> str:
    """What a line the caller hears asks for: ``last4``, ``account``, ``confirm:<digits>`` (a
    read-back of digits), ``confirm_cancel``, ``confirm:<words>`` (a read-back of what the caller
    wants), ``choose:<a>|<b>``, ``open`` (how can I help / anything else), ``menu`` and ``more``
    (the keypad menus), ``agents_busy``, or ``other`` (nothing to answer)."""
    low = line.lower()
    if m := re.search(r"(?:card ending|i have) ([\d ]+?)(?:,|\.) (?:right|is that right)", low):
        return "confirm:" + m.group(1).replace(" ", "")
    if m := re.search(r"do you want (.+?), or (.+?)\?", low):
        return f"choose:{m.group(1)}|{m.group(2)}"
    if "you want to cancel" in low:
        return "confirm_cancel"
    if "shall i finish it first" in low:
        return "confirm:finish"
    if m := re.search(r"you want (.+?), right\?", low):
        return "confirm:" + m.group(1)
    checks = (
        ("last four digits", "last4"),
        ("account number", "account"),
        ("agents are busy", "agents_busy"),
        ("for your balance, press 1", "menu"),
        ("return to the main menu", "more"),
        ("anything else", "open"),
        ("how can i help", "open"),
    )
    return next((kind for words, kind in checks if words in low), "other")


def _names(kind: str, task: Task) -> bool:
    return any(w in kind for w in TASK_WORDS[task.kind])


@dataclass
class Caller:
    """A caller with ``goal`` on the line ``flow`` ("banking": speaks; "phone-tree": keys only)."""

    goal: Goal
    flow: str
    pending: list[Task] = field(init=False)
    unsaid: list[Interjection] = field(init=False)
    asked: dict[Task, int] = field(default_factory=dict)  # how often each task was asked for
    last_question: str = "open"
    turns: int = 0

    def __post_init__(self) -> None:
        added = {i.adds for i in self.goal.interjections}
        self.pending = [t for t in self.goal.tasks if t not in added]
        self.unsaid = list(self.goal.interjections) if self.flow == "banking" else []

    def reply(self, heard: list[str]) -> Turn | None:
        """The caller's next turn after hearing ``heard`` (the lines since its last turn); None:
        it has nothing more to say (done, or giving up)."""
        text = " ".join(heard).lower()
        for task in list(self.pending):
            if DONE_WHEN[task.kind] in text:
                self.pending.remove(task)
        if "i've cancelled that" in text and self.goal.cancels:
            self.pending = [t for t in self.pending if t.kind != "block"]
        kinds = [k for k in map(prompt_kind, heard) if k != "other"]
        kind = kinds[-1] if kinds else self.last_question  # "take your time": the same question
        self.last_question = kind
        if self.turns >= MAX_TURNS:
            return None
        self.turns += 1
        for i, aside in enumerate(self.unsaid):
            if aside.at == kind:
                del self.unsaid[i]
                if aside.adds is not None:
                    self.pending.insert(0, aside.adds)
                return {"say": aside.say}
        return self._tree(kind) if self.flow == "phone-tree" else self._banking(kind)

    def _value(self, kinds: tuple[str, ...]) -> str:
        task = next((t for t in (*self.pending, *self.goal.tasks) if t.kind in kinds), None)
        return task.value if task is not None else ""

    def _tree(self, kind: str) -> Turn | None:
        if kind == "menu" and self.pending:
            return {"keys": TREE_KEYS[self.pending[0].kind]}
        if kind == "last4":
            return {"keys": self._value(("block",))}
        if kind == "account":
            return {"keys": self._value(("balance", "transactions"))}
        if kind.startswith("confirm:"):
            return {"keys": "1" if kind[8:] == self._value(("block",)) else "2"}
        if kind == "more":
            return {"keys": "1" if self.pending else "9"}
        return None

    def _banking(self, kind: str) -> Turn | None:
        goal = self.goal
        if kind in ("open", "agents_busy"):
            if not self.pending:
                return {"say": goal.bye}
            task = self.pending[0]
            if kind == "agents_busy" and task.kind == "agent":
                return {"say": goal.agent_again}
            n = self.asked[task] = self.asked.get(task, 0) + 1
            i = goal.tasks.index(task)
            if n > 2:  # understood twice not: the keys the help offered
                return {"keys": TREE_KEYS[task.kind] if task.kind != "block" else "3"}
            return {"say": (goal.asks if n == 1 else goal.again)[i]}
        if kind == "last4":
            return self._digits(self._value(("block",)), goal.say_last4)
        if kind == "account":
            return self._digits(self._value(("balance", "transactions")), goal.say_account)
        wanted = self.pending[0] if self.pending else None
        if kind.startswith("choose:"):
            a, b = kind[7:].split("|")
            return {
                "keys": "2" if wanted is not None and _names(b, wanted) and not _names(a, wanted) else "1"
            }
        if kind.startswith("confirm"):
            said = kind.partition(":")[2]
            if said.isdigit():
                right = self._value(("block",))
                return {"say": goal.yes} if said == right else {"say": f"No I said {spoken_digits(right)}."}
            if kind == "confirm_cancel" or said == "finish":
                return {"say": goal.yes}
            if wanted is None or _names(said, wanted):
                return {"say": goal.yes}
            ask = goal.asks[goal.tasks.index(wanted)]  # "no, my balance": what it wants instead
            return {"say": f"No {ask[0].lower()}{ask[1:]}"}
        return None

    @staticmethod
    def _digits(value: str, say: bool) -> Turn:
        return {"say": spoken_digits(value, pauses=True)} if say else {"keys": value}


@dataclass
class Hearing:
    """What the server's recognizer makes of a caller's sentence: Piper's 8 kHz speech (the audio
    the real call sends), through G.711 µ-law, recognized by ``engine`` (the server's, loaded
    from its settings) with the flow's compiled ``resources`` for the question asked, as the
    server chooses them (call_port.listening_for)."""

    engine: AsrEngine
    resources: FlowResources
    heard: list[tuple[str, str]] = field(default_factory=list)  # (said, heard), in order

    def hear(self, said: str, grammar: str | None) -> CallerInput:
        phrases, model = listening_for(self.resources, grammar)
        recognizer = self.engine.recognizer(8000, phrases, model)
        feed_all(recognizer, ulaw_decode(ulaw_encode(piper(said, 8000))), 8000)
        result = recognizer.finish()
        self.heard.append((said, result.text))
        return CallerInput(
            said=result.text,
            alternatives=tuple(a.text for a in result.alternatives[1:]),
            confidence=result.confidence,
            grammar_said=result.grammar.text if result.grammar is not None else "",
        )


class CallerPort(ScriptPort):
    """The flow test's port, with the caller deciding each turn from what it heard since the last;
    ``heard_before``: those lines, per turn, then what came after the last."""

    def __init__(self, caller: Caller, hearing: Hearing | None = None) -> None:
        super().__init__([])
        self.caller = caller
        self.hearing = hearing
        self.made: list[Turn] = []
        self.heard_before: list[list[str]] = []
        self.rings: list[tuple[int, int]] = []  # (the turn after it, ms): agent legs rung
        self._since = 0

    async def hear(
        self, settings: Settings, secure: bool, max_keys: int | None, grammar: str | None
    ) -> CallerInput:
        heard = self.heard[self._since :]
        self._since = len(self.heard)
        turn = self.caller.reply(heard)
        if turn is not None:
            self.heard_before.append(heard)
            self.turns.append(turn)
            self.made.append(turn)
        given = await super().hear(settings, secure, max_keys, grammar)
        if self.hearing is None or turn is None or "say" not in turn:
            return given
        return self.hearing.hear(turn["say"], grammar)

    async def warm_transfer(
        self, target: Mapping[str, str], variables: Mapping[str, str], whisper: str
    ) -> str:
        """As the flow test's (no agent answers), noting the ring before the caller's next turn."""
        self.rings.append((len(self.made), int(target.get("ring_s", "20")) * 1000))
        return await super().warm_transfer(target, variables, whisper)


@dataclass(frozen=True)
class Plan:
    """A goal's call, as the caller makes it through the flow in-process: the turns, what is heard
    before each (``heard[i]``; ``heard[-1]``: after the last), how long an agent was rung for before
    turn i (``rung_ms``: in the sandbox nobody answers, the caller hears hold music that long), and how
    the in-process call ended."""

    flow: str
    goal: Goal
    turns: list[Turn]
    heard: list[list[str]]
    rung_ms: dict[int, int]
    outcome: str | None
    tools: list[tuple[str, str]]
    repairs: list[str]
    problems: list[str]
    recognized: list[tuple[str, str]] = field(default_factory=list)  # (said, as planned to be heard)


_FLOWS: dict[str, Flow] = {}


def flow_named(name: str) -> Flow:
    if name not in _FLOWS:
        _FLOWS[name] = load_flow(REPO / "flows" / f"{name}.yaml")
    return _FLOWS[name]


async def plan(
    flow_name: str, goal: Goal, services: Mapping[str, Service], hearing: Hearing | None = None
) -> Plan:
    """The caller's call through the flow in-process (agents never answer, as in the sandbox);
    with ``hearing``, the flow gets the caller's words as the recognizer hears them."""
    flow = flow_named(flow_name)
    port = CallerPort(Caller(goal, flow_name), hearing)
    first = len(hearing.heard) if hearing is not None else 0
    tools = ToolClient(services)
    try:
        engine = Engine(flow, port, tools, model_for_flow(flow), today=dt.date.today())
        port.engine = engine
        session = await engine.run()
    finally:
        await tools.aclose()
    heard = [*port.heard_before, port.heard[port._since :]]
    repairs = [r for _, r, _ in session.repairs]
    tools_called = list(session.tool_calls)
    return Plan(flow_name, goal, port.made, heard, dict(port.rings), session.outcome, tools_called, repairs,
                port.failures, hearing.heard[first:] if hearing is not None else [])  # fmt: skip


def as_dict(p: Plan) -> dict[str, Any]:
    return {"turns": p.turns, "outcome": p.outcome, "tools": p.tools, "repairs": p.repairs,
            "problems": p.problems, "planned_heard": [h for _, h in p.recognized]}  # fmt: skip
