"""Repair, built into every flow: what a caller does when the dialog is not going their way.

Asked for in so many words (repair_words.py), in any state: *repeat* the last prompt (only its
question the second time), *help* (the state's choices in the flow's words), *hold* (the
no-input timer waits ``hold_s``), *cancel* the task, *start over*, go *back* one question (never
past a back-end call that already happened), and *agent* (the handoff state; a caller who is one
answer from the end of a task is offered to finish it first). Found from what the words mean:
a *correction* ("no, I said 5678" to a confirmation; "not my card, my account") replaces the value
or the task and goes on, and a *digression* (a balance question while a card is being blocked)
is served and the caller brought back. Each is an audit event (``repair``) with its reason, kept
in the session and counted by ``flows stats``; each has a bound, past which the caller goes to
the handoff state. A flow turns any of them off and words them (``repair:``, prompts
``repair_*``, ``help_<state>``, ``help_<slot>``).
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog

from ivr_server.dialog.repair_words import (
    asked_repair,
    correcting,
    example_list,
    humanized,
    key_list,
    loosely_asked_repair,
    slot_help,
    without_correction,
    wording,
)
from ivr_server.dialog.session import CallerInput, Goto, Session
from ivr_server.dialog.slots.parsers import parse, parse_heard
from ivr_server.dialog.spec.model import Flow, Intent, Slot, State

if TYPE_CHECKING:
    from ivr_server.dialog.decide import Decision

log = structlog.get_logger(__name__)
YES_NO = Slot("_yes_no", "yes_no")
MAX_REPEATS = 3  # in a row; then "what?" is an answer like any other (a miss)
MAX_HOLDS = 2  # per question
MAX_DIGRESSIONS = 1  # a digression inside a digression waits for the first to end


@dataclass(frozen=True)
class Ask:
    """A question the caller was asked: a state's open question (slot None) or a slot's."""

    state: str
    slot: str | None
    tools_done: int  # back-end calls made before it: going back never undoes one


@dataclass(frozen=True)
class Return:
    """Where a digression brings the caller back to."""

    state: str
    intent: str | None
    target: str  # the state the digression went to


class Repairs:
    """The engine's repair behaviour (mixed into Engine, which provides what is declared here)."""

    flow: Flow
    session: Session
    audit: Callable[[str, dict[str, Any]], None]

    def _init_repairs(self) -> None:
        self._said_since_hear: list[str] = []
        self._question: list[str] = []  # what was said before the last turn: "repeat" replays it
        self._repeats = 0
        self._loose = 0  # repairs heard in other words since the last answer (bounded)
        self._hold_s = 0  # a hold served outside a turn: the next turn waits this long
        self._asks: list[Ask] = []
        self._task_slots: list[str] = []  # answers given for the task in progress
        self._returns: list[Return] = []
        self._restarts = 0
        self._corrections: Counter[str] = Counter()
        self._agent_after = False  # finish the task, then the handoff state
        self._tasks = _task_targets(self.flow)

    if TYPE_CHECKING:

        async def _say(
            self, prompt: str, state: State, extra: Mapping[str, str] | None = None, expect: str | None = None
        ) -> None: ...

        async def _say_text(self, text: str, state: State, expect: str | None = None) -> None: ...

        async def _hear(
            self, state: State, secure: bool = False, max_keys: int | None = 1, grammar: str | None = None
        ) -> CallerInput: ...

        async def _decide(self, state: State, intents: Sequence[Intent], heard: CallerInput) -> Decision: ...

    language: str  # the call's language: the flow's first (Engine sets it)

    def _task(self, intent: str | None) -> str:
        """An intent as the caller hears it: the flow's prompt ``task_<intent>`` in the call's
        language where it has one (a flow not in English words its tasks), else its name."""
        prompt = self.flow.prompts.get(f"task_{intent}")
        if prompt is not None and self.language in prompt.text:
            return prompt.text[self.language].render({})
        return humanized(intent or "")

    # --- the turn, with the repairs asked for in words ------------------------------------------
    async def _turn(
        self,
        state: State,
        secure: bool = False,
        max_keys: int | None = 1,
        grammar: str | None = None,
        slot: Slot | None = None,
        confirming: str | None = None,
    ) -> CallerInput:
        """The caller's answer to what was just asked; repeats, help and holds are served here,
        and the question asked again. ``slot``: the slot asked for; ``confirming``: the slot whose
        heard value is being confirmed."""
        holds, hold_s = 0, self._hold_s
        self._hold_s = 0
        while True:
            heard = await self._listen_once(state, secure, max_keys, grammar, hold_s)
            hold_s = 0
            repair = self._asked(state, heard, slot)
            if repair is None:
                self._repeats = 0
                return heard
            if repair == "repeat":
                self._repeats += 1
                if self._repeats > MAX_REPEATS:
                    return heard
            if repair == "hold":
                holds += 1
                if holds > MAX_HOLDS:
                    return heard
            self._record(state, repair, f"asked: {_shown(heard, secure)}", heard, secure)
            if repair == "hold":
                await self._say_text(self._wording("hold"), state)
                hold_s = self.flow.repair.hold_s
                continue
            if repair == "help":
                await self._help(state, slot)
            elif repair != "repeat":
                await self._navigate(state, repair, confirming)  # returns only if the caller stays
            await self._ask_again(state, short=self._repeats > 1, expect=grammar)

    async def _listen_once(
        self, state: State, secure: bool, max_keys: int | None, grammar: str | None, hold_s: int
    ) -> CallerInput:
        if self._said_since_hear:
            self._question, self._said_since_hear = self._said_since_hear, []
        if not hold_s:
            return await self._hear(state, secure, max_keys, grammar)
        longer = dataclasses.replace(state.settings, no_input_ms=hold_s * 1000)
        waiting = dataclasses.replace(state, settings=longer)
        heard = await self._hear(waiting, secure, max_keys, grammar)
        if heard.silent:  # the hold ran out
            await self._say_text(self._wording("still_there"), state)
            await self._ask_again(state, short=True, expect=grammar)
            return await self._hear(state, secure, max_keys, grammar)
        return heard

    def _allowed(self, state: State, slot: Slot | None) -> list[str]:
        """The repairs a caller can ask for in ``state`` (``slot``: the one asked for)."""
        r = self.flow.repair
        allowed = [a for a in ("repeat", "help", "hold", "cancel", "start_over", "back", "agent") if r.on(a)]
        if state.listen and slot is None:
            allowed = [a for a in allowed if a != "cancel"]  # no task to cancel yet
            if any(self._goes_to_person(state, i) for i in state.listen):
                allowed = [a for a in allowed if a != "agent"]  # the flow's own agent intent decides
        if self.flow.handoff is None:
            allowed = [a for a in allowed if a != "agent"]
        return allowed

    def _asked(self, state: State, heard: CallerInput, slot: Slot | None) -> str | None:
        r = self.flow.repair
        allowed = self._allowed(state, slot)
        if heard.keyed:
            zero_answers = slot is not None and (
                slot.type in ("number", "amount") or (slot.type == "digits" and slot.length in (None, 1))
            )
            own = self._bound_key(state, heard.keyed)
            if heard.keyed == "0" and "agent" in allowed and not zero_answers and not own:
                return "agent"
            if heard.keyed == "*" and "repeat" in allowed and not own:
                return "repeat"
            return None
        return asked_repair(heard.said, self.language, r.phrases, allowed) if heard.said else None

    async def _asked_in_other_words(self, state: State, heard: CallerInput, slot: Slot) -> bool:
        """A repair asked for with a word misheard ("i want that cancel"), served: tried on a
        slot's answer only once neither its value nor another task was found in it, so a stray
        word costs at worst what a miss would. True when served (the slot is asked again)."""
        if heard.keyed or not heard.said or self._loose >= MAX_REPEATS:
            return False
        repair = loosely_asked_repair(
            heard.said, self.language, self.flow.repair.phrases, self._allowed(state, slot)
        )
        if repair is None:
            return False
        self._loose += 1
        self._record(state, repair, f"asked in other words: {_shown(heard, slot.secure)}", heard, slot.secure)
        if repair == "hold":
            await self._say_text(self._wording("hold"), state)
            self._hold_s = self.flow.repair.hold_s
        elif repair == "help":
            await self._help(state, slot)
        elif repair != "repeat":
            await self._navigate(state, repair, None)  # returns only if the caller stays
        return True

    def _bound_key(self, state: State, key: str) -> bool:
        """Whether the state gives the key a meaning of its own (a transition, a listened intent)."""
        listened = (self.flow.intents[n].dtmf for n in state.listen if n in self.flow.intents)
        return any(t.dtmf == key for t in state.on) or key in listened

    def _goes_to_person(self, state: State, intent: str) -> bool:
        """Whether the state sends ``intent`` to a person: the handoff state, or any transfer."""
        for t in state.on:
            if t.intent != intent:
                continue
            target = self.flow.states.get(t.goto or "")
            actions = (*t.actions, *(target.actions if target is not None else ()))
            if t.goto == self.flow.handoff or any(a.kind == "transfer" for a in actions):
                return True
        return False

    async def _ask_again(self, state: State, short: bool, expect: str | None) -> None:
        for text in self._question[-1:] if short else list(self._question):
            await self._say_text(text, state, expect)

    # --- help -----------------------------------------------------------------------------------
    async def _help(self, state: State, slot: Slot | None) -> None:
        own = f"help_{slot.name}" if slot is not None else f"help_{state.name}"
        if own in self.flow.prompts:
            await self._say(own, state)
        elif slot is not None:
            await self._say_text(slot_help(self.language, slot.type), state)
        else:
            intents = [self.flow.intents[n] for n in state.listen]
            if examples := example_list(intents):
                await self._say_text(self._wording("help_listen", examples=examples), state)
            if keys := key_list(intents, self.language, self._task):
                await self._say_text(self._wording("help_keys", keys=keys), state)
        await self._say_text(self._wording("help_more"), state)

    # --- leaving the question: cancel, start over, back, agent ----------------------------------
    async def _navigate(self, state: State, repair: str, confirming: str | None) -> None:
        if repair == "agent":
            await self._to_agent(state, confirming)
        elif repair == "cancel":
            gathered = bool(self._task_slots) or confirming is not None
            task = self._task(self.session.intent)
            if gathered and not await self._sure(state, "cancel_confirm", task=task):
                return
            self._drop_task()
            await self._say_text(self._wording("cancelled"), state)
            raise Goto(self._menu_state())
        elif repair == "start_over":
            gathered = bool(self._task_slots) or confirming is not None
            if gathered and not await self._sure(state, "start_over_confirm"):
                return
            self._restarts += 1
            if self._restarts > self.flow.repair.max_restarts:
                await self._too_many(state, f"started over {self._restarts} times")
            self._drop_task()
            self._returns.clear()
            self._asks.clear()
            await self._say_text(self._wording("started_over"), state)
            raise Goto(self.flow.start)
        elif repair == "back":
            await self._back(state)

    async def _back(self, state: State) -> None:
        if len(self._asks) < 2:
            await self._say_text(self._wording("at_start"), state)
            return
        previous = self._asks[-2]
        if previous.tools_done < len(self.session.tool_calls):
            await self._say_text(self._wording("cannot_go_back"), state)
            return
        del self._asks[-2:]
        if previous.slot is not None:
            self.session.slots.pop(previous.slot, None)
            self._task_slots = [s for s in self._task_slots if s != previous.slot]
        await self._say_text(self._wording("back"), state)
        raise Goto(previous.state)

    async def _to_agent(self, state: State, confirming: str | None) -> None:
        handoff = self.flow.handoff or ""
        one_answer_left = (
            confirming is not None
            and self.session.intent is not None
            and [n for n in state.collect if n not in self.session.slots] == [confirming]
        )
        task = self._task(self.session.intent)
        if one_answer_left and not self._agent_after and await self._sure(state, "agent_offer", task=task):
            self._agent_after = True  # the caller answers the question, then goes through
            self._record(state, "agent", "finishing the task first", None, False)
            return
        raise Goto(handoff)

    async def _too_many(self, state: State, why: str) -> None:
        self._record(state, "limit", why, None, False)
        await self._say_text(self._wording("too_many"), state)
        raise Goto(self.flow.handoff or self.flow.start)

    def _menu_state(self) -> str:
        """Where a cancelled task leaves the caller: the last open question they were asked."""
        listened = [a.state for a in self._asks if a.slot is None]
        return listened[-1] if listened else self.flow.start

    def _drop_task(self) -> None:
        for name in self._task_slots:
            self.session.slots.pop(name, None)
        self._task_slots.clear()
        self.session.intent = None

    async def _sure(self, state: State, wording: str, **values: str) -> bool:
        """A yes/no question of the repair's own; only a yes is a yes."""
        await self._say_text(self._wording(wording, **values), state, "yesno")
        answer = await self._hear(state, grammar="yesno")
        return parse_heard(YES_NO, answer.said, answer.alternatives, answer.keyed).value == "yes"

    # --- found from the meaning: corrections and digressions ------------------------------------
    async def _corrected_value(self, state: State, slot: Slot, value: str, answer: CallerInput) -> str | None:
        """The new value in a "no" to "That's 4421, right?" ("no, I said 5678"), or None."""
        if not self.flow.repair.on("correction") or not answer.said:
            return None
        said_yes = parse_heard(YES_NO, answer.said, answer.alternatives, "").value == "yes"
        got = parse(slot, without_correction(answer.said, self.language))
        if said_yes or got.value is None or got.value == value:
            return None
        await self._rejected(state, slot.name)
        shown = "[secure]" if slot.secure else f"{value} -> {got.value}"
        self._record(state, "correction", f"{slot.name}: {shown}", answer, slot.secure)
        await self._say_text(self._wording("corrected"), state)
        return got.value

    async def _rejected(self, state: State, slot: str) -> None:
        """A heard value the caller said no to (or corrected): past ``max_corrections`` of them
        for one slot, the caller goes to the handoff state instead of round again."""
        self._corrections[slot] += 1
        if self._corrections[slot] > self.flow.repair.max_corrections:
            await self._too_many(state, f"{slot} corrected {self._corrections[slot]} times")

    async def _corrected_intent(
        self, state: State, intents: Sequence[Intent], rejected: str, answer: CallerInput
    ) -> Decision | None:
        """The intent in a "no" to "You want to ..., right?" ("no, my balance"), when it is sure."""
        rest = without_correction(answer.said, self.language)
        if not self.flow.repair.on("correction") or not rest or not correcting(answer.said, self.language):
            return None
        others = [i for i in intents if i.name != rejected]
        decision = await self._decide(state, others, dataclasses.replace(answer, said=rest, alternatives=()))
        if decision.kind != "act" or decision.intent is None:
            return None
        self._record(state, "correction", f"intent {rejected} -> {decision.intent}", answer, False)
        return decision

    async def _other_task(self, state: State, heard: CallerInput, secure: bool) -> bool:
        """An answer to a slot's question that is a request of its own: "not my card, my account"
        changes the task; "what's my balance?" while blocking a card is a digression, served and
        returned from. False when it is neither (the answer is a miss like any other); True when
        the caller was told it has to wait (the question is asked again). Never tried on a
        secure slot's answer: its words may hold the secret, and a decision is audited."""
        r = self.flow.repair
        current = self.session.intent
        candidates = [self.flow.intents[n] for n, target in self._tasks.items() if n != current and target]
        if secure or not heard.said or not candidates or not (r.on("digression") or r.on("correction")):
            return False
        changing = correcting(heard.said, self.language) and r.on("correction")
        said = without_correction(heard.said, self.language) if changing else heard.said
        asked = dataclasses.replace(heard, said=said, alternatives=())
        decision = await self._decide(state, candidates, asked)
        if decision.intent is None or decision.kind not in ("act", "confirm"):
            return False
        # Unsure of the words heard (a second decoder's, at a digit question): ask, as an open
        # question does, rather than take the caller off a task they may be in the middle of.
        if decision.kind == "confirm" and not await self._sure(
            state, "confirm_intent", task=self._task(decision.intent)
        ):
            return False
        target = self._tasks[decision.intent] or ""
        if changing:
            self._record(state, "correction", f"task {current} -> {decision.intent}", heard, False)
            self._drop_task()
        elif r.on("digression"):
            if len(self._returns) >= MAX_DIGRESSIONS:
                why = f"{decision.intent} waits: {len(self._returns)} open"
                self._record(state, "digression", why, heard, False)
                await self._say_text(self._wording("digression_later", task=self._task(current)), state)
                return True
            self._record(state, "digression", f"{current} -> {decision.intent}", heard, False)
            self._returns.append(Return(state.name, current, target))
        else:
            return False
        self.session.intent = decision.intent
        raise Goto(target)

    async def _next_state(self, name: str) -> str:
        """Where the call goes instead of ``name``: back from a digression when its task is done
        (the call reaches an open question again), or to the agent once the offered task is."""
        state = self.flow.states.get(name)
        if state is None or not state.listen:
            return name
        if self._agent_after and self.flow.handoff is not None:
            self._agent_after = False
            return self.flow.handoff
        if self._returns and name != self._returns[-1].target:
            back = self._returns.pop()
            self.session.intent = back.intent
            await self._say_text(self._wording("digression_resume", task=self._task(back.intent)), state)
            return back.state
        return name

    # --- records and words ----------------------------------------------------------------------
    def _record(
        self, state: State, repair: str, reason: str, heard: CallerInput | None, secure: bool
    ) -> None:
        self.session.repairs.append((state.name, repair, reason))
        payload: dict[str, Any] = {
            "flow": self.flow.name,
            "flow_version": self.flow.version,
            "state": state.name,
            "repair": repair,
            "reason": reason,
        }
        if heard is not None and not secure:
            payload["inputs"] = {"said": heard.said, "keyed": heard.keyed}
        self.audit("repair", payload)
        log.info("flow.repair", flow=self.flow.name, state=state.name, repair=repair, reason=reason)

    def _wording(self, name: str, **values: str) -> str:
        prompt = self.flow.prompts.get(f"repair_{name}")
        if prompt is not None:
            return prompt.text[self.language].render({**self.session.slots, **values})
        return wording(self.language, name).format(**values)

    def _asked_for(self, state: State, slot: str | None) -> None:
        self._asks.append(Ask(state.name, slot, len(self.session.tool_calls)))

    def _answered(self, slot: str) -> None:
        self._loose = 0
        if slot not in self._task_slots:
            self._task_slots.append(slot)


def _task_targets(flow: Flow) -> dict[str, str | None]:
    """Each intent's task: the state an open question sends it to, when that state goes on with
    the call (collects, calls, says); None for intents that end it or reach the handoff."""
    targets: dict[str, str | None] = {}
    ordered = [flow.states[flow.start], *(s for s in flow.states.values() if s.name != flow.start)]
    for state in ordered:
        for t in state.on:
            if t.intent is None or t.intent in targets or t.when:
                continue
            target = flow.states.get(t.goto or "")
            ends = target is None or target.terminal or target.listen or t.goto == flow.handoff
            targets[t.intent] = None if ends else t.goto
    return targets


def _shown(heard: CallerInput, secure: bool) -> str:
    if heard.keyed:
        return f"key {heard.keyed}"
    return "[secure]" if secure else heard.said[:80]
