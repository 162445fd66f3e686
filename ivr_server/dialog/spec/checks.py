"""What a flow's parts say about each other: every name it uses is defined, every state is
reached, and every state the call can reach has a way out (an end, a transfer or a hang-up).
The places come from the Source the flow was built from."""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping

from ivr_server.dialog.repair_words import WORDING
from ivr_server.dialog.spec.model import EVENTS, SLOT_TYPES, Action, Flow, State
from ivr_server.dialog.spec.parse import suggest
from ivr_server.dialog.spec.source import Path_, Source
from ivr_server.dialog.spec.template import Template

LENGTH_TYPES = ("digits", "card_number")


def check(flow: Flow, src: Source) -> None:
    Checker(flow, src).run()


class Checker:
    def __init__(self, flow: Flow, src: Source) -> None:
        self.flow = flow
        self.src = src

    def run(self) -> None:
        f = self.flow
        self.known(f.start, f.states, "state", ("start",))
        if f.handoff is not None:
            self.known(f.handoff, f.states, "state", ("handoff",))
        for name, prompt in f.prompts.items():
            repair = name.removeprefix("repair_") if name.startswith("repair_") else None
            known = WORDING["en"]
            if repair is not None and repair not in known:
                self.src.problem(
                    ("prompts", name),
                    f"'{name}' words no repair{suggest(repair, known)}; repair prompts: "
                    + ", ".join(f"repair_{w}" for w in known),
                )
            offer = name == "returning_offer" or name.startswith("returning_offer_")
            if offer:
                self.returning_offer(name)
            for lang, template in prompt.text.items():
                self.spoken(template, ("prompts", name, lang), task=repair is not None or offer)
        if f.returning.enabled and f.languages != ("en",) and "returning_offer" not in f.prompts:
            english = "the built-in offer to a returning caller is English: add a 'returning_offer' prompt"
            self.src.problem(("returning",), f"{english} in the flow's languages (it may say {{task}})")
        for name, intent in f.intents.items():
            if intent.confirm:
                self.known(intent.confirm, f.prompts, "prompt", ("intents", name, "confirm"))
        for name, spec in f.slots.items():
            here: Path_ = ("slots", name)
            if spec.type not in SLOT_TYPES:
                self.src.problem(
                    (*here, "type"),
                    f"slot '{name}': unknown type '{spec.type}'{suggest(spec.type, SLOT_TYPES)}; "
                    f"expected one of: {', '.join(SLOT_TYPES)}",
                )
            if spec.length is not None and spec.type not in LENGTH_TYPES:
                self.src.problem((*here, "length"), f"length applies to {' and '.join(LENGTH_TYPES)} slots")
            if spec.prompt:
                self.known(spec.prompt, f.prompts, "prompt", (*here, "prompt"))
        for name, tool in f.tools.items():
            here = ("tools", name)
            for slot in tool.path.slots:
                self.known(slot, f.slots, "slot", (*here, "path"))
            for key, template in tool.body.items():
                for slot in template.slots:
                    self.known(slot, f.slots, "slot", (*here, "body", key))
            for slot in tool.result:
                self.known(slot, f.slots, "slot", (*here, "result", slot))
            if tool.filler:
                self.known(tool.filler, f.prompts, "prompt", (*here, "filler"))
        for name, state in f.states.items():
            here = ("states", name)
            for i, say_id in enumerate(state.say):
                where = (*here, "say", i) if len(state.say) > 1 else (*here, "say")
                self.known(say_id, f.prompts, "prompt", where)
            for i, heard in enumerate(state.listen):
                self.known(heard, f.intents, "intent", (*here, "listen", i))
            for i, wanted in enumerate(state.collect):
                at_slot = (*here, "collect", i)
                if self.known(wanted, f.slots, "slot", at_slot) and not f.slots[wanted].prompt:
                    self.src.problem(at_slot, f"slot '{wanted}' is collected here but has no prompt")
            self.actions(state.actions, (*here, "do"))
            self.keys(name, state)
            if not state.on and not state.terminal and not any(a.warm for a in state.actions):
                self.src.problem(
                    here,
                    f"state '{name}' has no way on: add 'on' transitions, 'end: true', "
                    "a transfer or a hangup",
                )
            for i, t in enumerate(state.on):
                at: Path_ = (*here, "on", i)
                if t.intent is not None:
                    self.known(t.intent, f.intents, "intent", (*at, "intent"))
                if t.event is not None and t.event not in EVENTS:
                    self.src.problem(
                        (*at, "event"),
                        f"unknown event '{t.event}'{suggest(t.event, EVENTS)}; "
                        f"expected one of: {', '.join(EVENTS)}",
                    )
                if t.goto is not None:
                    self.known(t.goto, f.states, "state", (*at, "goto"))
                for slot in t.when:
                    if not slot.startswith(
                        "ctx."
                    ):  # the call's context (dialog/context.py), checked when parsed
                        self.known(slot, f.slots, "slot", (*at, "when", slot))
                self.actions(t.actions, (*at, "do"))
        self.graph()

    def returning_offer(self, name: str) -> None:
        """``returning_offer`` words the offer to a returning caller, ``returning_offer_<intent>``
        the offer of one task; either needs the flow's ``returning:`` block."""
        if not self.flow.returning.enabled:
            self.src.problem(("prompts", name), f"'{name}' words the offer to a returning caller, but "
                             "the flow has no 'returning:' block (returning: {window_min: 60})")  # fmt: skip
        intent = name.removeprefix("returning_offer_") if name != "returning_offer" else None
        if intent is not None:
            self.known(intent, self.flow.intents, "intent", ("prompts", name))

    def keys(self, name: str, state: State) -> None:
        """A key means one thing per state: the intents it listens for and its dtmf transitions."""
        meaning: dict[str, str] = {}
        for heard in state.listen:
            key = self.flow.intents[heard].dtmf if heard in self.flow.intents else None
            if key is not None:
                if key in meaning:
                    self.src.problem(
                        ("states", name, "listen"), f"key {key} means both {meaning[key]} and {heard} here"
                    )
                meaning[key] = f"intent {heard}"
        for i, t in enumerate(state.on):
            if t.dtmf is not None:
                if t.dtmf in meaning:
                    self.src.problem(
                        ("states", name, "on", i, "dtmf"),
                        f"key {t.dtmf} already means {meaning[t.dtmf]} here",
                    )
                meaning[t.dtmf] = f"transition {i + 1}"

    def known(self, name: str, defined: Mapping[str, object], kind: str, path: Path_) -> bool:
        if name in defined:
            return True
        listed = ", ".join(sorted(defined)) or "none"
        self.src.problem(
            path, f"{kind} '{name}' is not defined{suggest(name, defined)}; the flow's {kind}s: {listed}"
        )
        return False

    def spoken(self, template: Template, path: Path_, task: bool = False) -> None:
        """``task``: a repair's or a returning offer's wording, which may also say ``{task}``
        (what the caller is doing)."""
        for slot in template.slots:
            if task and slot == "task":
                continue
            if self.known(slot, self.flow.slots, "slot", path) and self.flow.slots[slot].secure:
                self.src.problem(path, f"slot '{slot}' is secure: a prompt must never speak it")

    def actions(self, actions: tuple[Action, ...], path: Path_) -> None:
        for i, action in enumerate(actions):
            at = (*path, i)
            if action.kind == "say" and action.prompt is not None:
                self.known(action.prompt, self.flow.prompts, "prompt", at)
                for lang in action.languages:
                    if lang not in self.flow.languages:
                        self.src.problem((*at, "in"), f"language '{lang}' is not in the flow's languages "
                                         f"({', '.join(self.flow.languages)})")  # fmt: skip
            elif action.kind == "call" and action.tool is not None:
                self.known(action.tool, self.flow.tools, "tool", at)
            elif action.kind == "set":
                for slot in action.values:
                    self.known(slot, self.flow.slots, "slot", at)

    def graph(self) -> None:
        """Unreached states, and reached states from which the call can never end."""
        f = self.flow
        if f.start not in f.states:
            return
        edges = {n: {t.goto for t in s.on if t.goto in f.states} for n, s in f.states.items()}
        exits = {
            n
            for n, s in f.states.items()
            if s.terminal
            or any(a.warm for a in s.actions)
            or any(a.kind in ("transfer", "hangup", "flow") for t in s.on for a in t.actions)
        }
        reached = _closure({f.start}, edges)
        for name in f.states.keys() - reached:
            self.src.problem(
                ("states", name), f"state '{name}' is never reached from the start state '{f.start}'"
            )
        back: dict[str, set[str]] = {n: set() for n in f.states}
        for n, targets in edges.items():
            for t in targets:
                back[t].add(n)
        can_end = _closure(exits, back)
        for name in sorted(reached - can_end):
            if not f.states[name].on:
                continue  # "has no way on" said it already
            loop = sorted(_closure({name}, edges))
            self.src.problem(
                ("states", name),
                f"state '{name}' has no way out: from it the call only reaches {', '.join(loop)}, "
                "and none of them ends, transfers or hangs up",
            )


def _closure(seeds: set[str], edges: dict[str, set[str]]) -> set[str]:
    seen, todo = set(seeds), deque(seeds)
    while todo:
        for nxt in edges.get(todo.popleft(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen
