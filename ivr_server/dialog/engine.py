"""Runs a declarative flow for one caller, against a Port (a call, the simulator, a flow test).

Each state: its prompts; the slots it collects (only those still missing, from speech or keys,
sensitive ones confirmed); its actions (tool calls, say, set, transfer, hang-up); then, if it
listens, the caller's turn decided by rules and the model (decide.py), else its ``done``
transition. Misses count per state and escalate: ask again, rephrase with examples, offer the
keypad, then the state's no_input/no_match transition once, then the flow's handoff state.
Every decision is recorded with the flow's version and the model's, so it can be repeated.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import structlog

from ivr_server.dialog.context import CallContext, holds
from ivr_server.dialog.decide import Decision, Guess, Misses, decide
from ivr_server.dialog.repair import YES_NO, Repairs
from ivr_server.dialog.repair_words import example_list, humanized, key_list
from ivr_server.dialog.returning import Returning, TaskMemory
from ivr_server.dialog.session import CallerInput, DecisionRecord, Ended, Goto, IntentModel, Port, Session
from ivr_server.dialog.slots.parsers import Parsed, entities, grammar_guess, parse_heard
from ivr_server.dialog.spec.model import Action, Flow, Intent, Slot, State, Tool, Transition
from ivr_server.errors import LanguageUnavailable, ToolError, ToolRefused
from ivr_server.observability.tracing import span
from ivr_server.privacy.redact import SECURE_VALUES
from ivr_server.speech.adapt.grammars import answer_kind
from ivr_server.tools.client import ToolClient

log = structlog.get_logger(__name__)
SECURE = "[secure]"
MAX_STEPS = 200  # states entered per call: a flow that loops forever hands off instead
MAX_WARM_TRIES = 2  # warm transfers per call; then a blind one where the target names a place


class Engine(Repairs, Returning):
    def __init__(
        self,
        flow: Flow,
        port: Port,
        tools: ToolClient | None = None,
        model: IntentModel | None = None,
        today: dt.date | None = None,
        on_decision: Callable[[DecisionRecord], None] | None = None,
        audit: Callable[[str, dict[str, Any]], None] | None = None,
        resources_version: str | None = None,
        caller: str | None = None,
        tasks: TaskMemory | None = None,
    ) -> None:
        """``caller``: the caller's number as a keyed hash; with ``tasks``, a flow with
        ``returning:`` offers a returning caller the task they left (dialog/returning.py)."""
        self.flow, self.port, self.tools, self.model = flow, port, tools, model
        self.language = flow.languages[0]  # kept for the call: prompts, voice, recognizer, repairs
        self.resources_version = resources_version
        self.on_decision = on_decision  # recorded as it is made, not when the call ends
        self.audit = audit or (lambda _kind, _payload: None)  # decisions, tool calls, transfers
        self.today = today
        self.session = Session(flow)
        self._misses: dict[str, Misses] = {}
        self._escalated: set[tuple[str, str]] = set()
        self._offered: dict[str, str] = {}  # slot values heard before they were asked for
        self._init_repairs()
        self._refusals: Counter[str] = Counter()  # per state: answers the back end refused
        self._init_returning(caller, tasks)
        self.context = CallContext(self.session.repairs)

    async def run(self) -> Session:
        s = self.session
        nxt: str | None = self.flow.start
        try:
            if not self.port.use_language(self.language):  # the server has no voice for it
                log.error("flow.language_unavailable", flow=self.flow.name, language=self.language)
                s.outcome = "language_unavailable"
                raise LanguageUnavailable(f"flow {self.flow.name} speaks {self.language}: no voice for it "
                                          "(IVR_VOICES)")  # fmt: skip
            nxt = await self._welcome_back()
            while nxt is not None:
                if len(s.visited) >= MAX_STEPS:
                    s.outcome = "loop"
                    log.warning("flow.too_many_steps", flow=self.flow.name, states=len(s.visited))
                    nxt = self._handoff_state(s.state)
                    if nxt is None:
                        break
                nxt = await self._next_state(nxt)
                s.state = nxt
                s.visited.append(nxt)
                try:
                    nxt = await self._enter(self.flow.states[nxt])
                except Goto as repaired:
                    nxt = repaired.state
            s.outcome = s.outcome or "ended"
        except Ended:
            pass
        except asyncio.CancelledError:  # the caller hung up (or the call was cut off)
            s.outcome = "abandoned"
            raise
        finally:
            self._remember()  # a task left unfinished, for the caller's next call
            SECURE_VALUES.forget(s.id)
        return s

    # --- a state --------------------------------------------------------------------------------
    async def _enter(self, state: State) -> str | None:
        asked = next((self.flow.slots[n] for n in state.collect if n not in self.session.slots), None)
        for prompt in state.say:
            await self._say(prompt, state, expect=_grammar_for(asked) if asked else None)
        missed = await self._collect(state)
        if missed is not None:
            return await self._escalate(state, missed)
        done = await self._actions(state.actions, state)
        if done == "refused":
            return await self._refused(state)
        if done == "error":
            return await self._fire(state, event="error")
        if done == "transfer_failed":
            return await self._transfer_failed(state)
        if state.terminal:
            return None
        if state.listen:
            return await self._listen(state)
        return await self._fire(state, event="done")

    async def _fire(
        self, state: State, *, event: str | None = None, intent: str | None = None, dtmf: str | None = None
    ) -> str | None:
        exact = [t for t in state.on if (t.event, t.intent, t.dtmf) == (event, intent, dtmf)]
        always = [t for t in state.on if t.event == "always"]
        for t in (t for t in exact + always if self._when(t)):
            return await self._take(state, t, event)
        log.warning("flow.no_transition", flow=self.flow.name, state=state.name, on=event, intent=intent)
        return self._handoff_state(state.name)

    def _when(self, t: Transition) -> bool:
        return all(
            holds(self.context, k[4:], v)
            if k.startswith("ctx.")
            else (k in self.session.slots) == v
            if isinstance(v, bool)
            else self.session.slots.get(k) == v
            for k, v in t.when.items()
        )

    def _routed(self, state: State, event: str) -> Transition | None:
        """A transition for ``event`` that asks about the call's context and holds now: taken at
        this miss, before the state's usual escalation ("frustrated, two no-matches: an agent")."""
        for t in state.on:
            if t.event == event and any(k.startswith("ctx.") for k in t.when) and self._when(t):
                log.info("flow.routed_by_context", flow=self.flow.name, state=state.name, on=event,
                         when=dict(t.when), context=self.context.as_dict())  # fmt: skip
                return t
        return None

    async def _take(self, state: State, t: Transition, event: str | None) -> str | None:
        done = await self._actions(t.actions, state)
        if done == "transfer_failed" and event != "transfer_failed":
            return await self._transfer_failed(state)
        if done != "ok":
            return self._handoff_state(state.name)
        return t.goto

    def _handoff_state(self, current: str) -> str | None:
        handoff = self.flow.handoff
        return handoff if handoff is not None and handoff != current else None

    # --- actions --------------------------------------------------------------------------------
    async def _actions(
        self, actions: Sequence[Action], state: State
    ) -> Literal["ok", "error", "refused", "transfer_failed"]:
        for action in actions:
            if action.kind == "say" and action.prompt and action.languages:
                await self._say_in(action.prompt, action.languages, state)
            elif action.kind == "say" and action.prompt:
                await self._say(action.prompt, state)
            elif action.kind == "flow" and action.flow:
                if not self.port.switch_flow(action.flow):
                    log.error("flow.switch_unknown", flow=self.flow.name, to=action.flow)
                    return "error"
                self.audit("flow_switch", {"state": state.name, "to": action.flow,
                                           "flow_version": self.flow.version})  # fmt: skip
                self.session.outcome = "switched"
                raise Ended
            elif action.kind == "set":
                self.session.slots.update(action.values)
            elif action.kind == "call" and action.tool:
                if (called := await self._call(action.tool, state)) != "ok":
                    return called
            elif (
                action.kind == "transfer"
                and action.warm
                and len(self.session.agent_attempts) < MAX_WARM_TRIES
            ):
                if not await self._warm_transfer(action.transfer, state):
                    return "transfer_failed"
            elif action.kind == "transfer":
                if action.warm and not ("queue" in action.transfer or "context" in action.transfer):
                    return "transfer_failed"  # tried enough, and no dialplan place to go to instead
                await self._transfer(action.transfer)
            elif action.kind == "hangup":
                self.session.outcome = "hangup"
                await self.port.hangup()
                raise Ended
        return "ok"

    async def _call(self, name: str, state: State) -> Literal["ok", "error", "refused"]:
        tool = self.flow.tools[name]
        with span("tool", tool=name, service=tool.service, state=state.name):  # traceparent goes with it
            return await self._call_tool(name, tool, state)

    async def _refused(self, state: State) -> str | None:
        """The back end refused what the caller gave ("no such account"): with an ``event:
        refused`` transition the state's answers are forgotten and asked for again, up to the
        state's ``max_no_match`` times, then it is a miss (no_match, escalated); a state without
        one takes it as an error."""
        if not any(t.event == "refused" for t in state.on):
            return await self._fire(state, event="error")
        self._refusals[state.name] += 1
        if self._refusals[state.name] > state.settings.max_no_match:
            return await self._escalate(state, "no_match")
        for name in state.collect:
            self.session.slots.pop(name, None)
        return await self._fire(state, event="refused")

    async def _call_tool(self, name: str, tool: Tool, state: State) -> Literal["ok", "error", "refused"]:
        if self.tools is None:
            self.session.tool_calls.append((name, "no_tool_client"))
            return "error"

        async def filler() -> None:
            if tool.filler:
                await self._say(tool.filler, state)

        started = time.monotonic()
        audited = {
            "tool": name,
            "service": tool.service,
            "method": tool.method,
            "state": state.name,
            "flow_version": self.flow.version,
        }
        call = asyncio.ensure_future(self.tools.call(tool, dict(self.session.slots), on_slow=filler))
        try:
            result = await (asyncio.shield(call) if tool.critical else call)
        except asyncio.CancelledError:  # the caller hung up (or the call was cut) mid-request
            await self._after_hangup(call, tool, audited, started)
            raise
        except ToolError as err:
            self.session.tool_calls.append((name, err.code))
            self.audit(
                "tool_call",
                {**audited, "outcome": err.code, "error": str(err)[:300], "latency_ms": _ms_since(started)},
            )
            return "refused" if isinstance(err, ToolRefused) else "error"
        self.session.slots.update(result.slots)
        self.session.tool_calls.append((name, "ok"))
        self.audit(
            "tool_call",
            {
                **audited,
                "outcome": "ok",
                "status": result.status,
                "attempts": result.attempts,
                "slow": result.slow,
                "latency_ms": _ms_since(started),
                "slots_set": sorted(result.slots),
            },
        )
        return "ok"

    async def _after_hangup(
        self, call: asyncio.Future[Any], tool: Tool, audited: dict[str, Any], started: float
    ) -> None:
        """A critical tool (a payment, a card block) runs to its end after a hang-up, within its
        own timeouts and retries; any other is cancelled. The audit trail says which, and how
        the critical one ended."""
        if not tool.critical:
            call.cancel()
            self.audit(
                "tool_call", {**audited, "outcome": "cancelled_by_hangup", "latency_ms": _ms_since(started)}
            )
            return
        outcome: dict[str, Any]
        try:
            async with asyncio.timeout(tool.timeout_s * (2 + tool.retries) + 5):
                result = await call
        except ToolError as err:
            outcome = {"outcome": err.code, "error": str(err)[:300]}
        except (TimeoutError, asyncio.CancelledError):  # stuck, or the server is hurrying to stop
            call.cancel()
            outcome = {"outcome": "abandoned_after_hangup"}
        else:
            outcome = {"outcome": "ok", "status": result.status, "attempts": result.attempts,
                       "slots_set": sorted(result.slots)}  # fmt: skip
        self.audit(
            "tool_call", {**audited, **outcome, "after_hangup": True, "latency_ms": _ms_since(started)}
        )
        log.info("flow.critical_tool_finished", tool=tool.name, outcome=outcome["outcome"])

    def _transfer_variables(self) -> dict[str, str]:
        s = self.session
        variables = {"IVR_SESSION_ID": s.id, "IVR_FLOW": f"{self.flow.name}@{self.flow.version}"}
        variables["IVR_INTENT"] = s.intent or ""
        variables["IVR_SUMMARY"] = s.summary()
        variables.update({f"IVR_SLOT_{k.upper()}": v for k, v in s.public_slots().items()})
        return variables

    def _audit_transfer(self, target: Mapping[str, str], variables: Mapping[str, str], **more: Any) -> None:
        self.audit(
            "transfer",
            {
                "flow": self.flow.name,
                "flow_version": self.flow.version,
                "session": self.session.id,
                "target": dict(target),
                "intent": self.session.intent,
                "variables": dict(variables),
                **more,
            },
        )

    async def _transfer(self, target: Mapping[str, str]) -> None:
        s = self.session
        variables = self._transfer_variables()
        s.transfer_variables, s.outcome = variables, "transfer"
        log.info("flow.transfer", flow=self.flow.name, session=s.id, target=dict(target), intent=s.intent)
        self._audit_transfer(target, variables)
        await self.port.transfer(target, variables)
        raise Ended

    async def _warm_transfer(self, target: Mapping[str, str], state: State) -> bool:
        """Ring an agent and tell them about the call; the caller is bridged to them when they
        accept (the flow is over), or stays here with everything known so far (False)."""
        s = self.session
        variables = self._transfer_variables()
        started = time.monotonic()
        outcome = await self.port.warm_transfer(target, variables, self._whisper())
        s.agent_attempts.append(outcome)
        self._audit_transfer(target, variables, warm=True, outcome=outcome, latency_ms=_ms_since(started))
        log.info("flow.warm_transfer", flow=self.flow.name, session=s.id, outcome=outcome, intent=s.intent)
        if outcome != "bridged":
            return False
        s.transfer_variables, s.outcome = variables, "transfer"
        raise Ended

    def _whisper(self) -> str:
        """What the agent hears before taking the call: the request, what the caller gave (never
        a secure slot, and no secure value in any form) and what was tried."""
        s = self.session
        wants = f"The caller wants {humanized(s.intent)}." if s.intent else "No request understood yet."
        parts = [f"{self.flow.name.replace('-', ' ')} call.", wants]
        given = [f"{humanized(k)} {' '.join(v) if v.isdigit() else v}" for k, v in s.public_slots().items()]
        if given:
            parts.append("They gave: " + ", ".join(given) + ".")
        tried = [
            f"{humanized(tool)} {'done' if result == 'ok' else 'failed'}" for tool, result in s.tool_calls
        ]
        if tried:
            parts.append("Tried: " + ", ".join(tried) + ".")
        if s.repairs:
            parts.append(f"{len(s.repairs)} repairs in the call.")
        text = " ".join(parts)
        for value in SECURE_VALUES.values():  # a tool's answer may carry one into a public slot
            text = text.replace(" ".join(value), "[secure]").replace(value, "[secure]")
        return text

    async def _transfer_failed(self, state: State) -> str | None:
        """No agent took the call: the state's ``transfer_failed`` transition, or the engine's
        own words and the caller's last open question."""
        if any(t.event == "transfer_failed" for t in state.on):
            return await self._fire(state, event="transfer_failed")
        await self._say_text(self._wording("agents_busy"), state)
        return self._menu_state()

    # --- speaking and hearing -------------------------------------------------------------------
    async def _say(
        self, prompt: str, state: State, extra: Mapping[str, str] | None = None, expect: str | None = None
    ) -> None:
        """A prompt of the flow, with slot values (and ``extra`` ones not yet kept) in it."""
        values = {**self.session.slots, **extra} if extra else self.session.slots
        text = self.flow.prompts[prompt].text[self.language].render(values)
        await self._say_text(text, state, expect)

    async def _say_in(self, prompt: str, languages: Sequence[str], state: State) -> None:
        """A prompt once in each of ``languages``, each in its own voice ("For English, press
        1. 한국어는 2번을 누르세요."); the call's language stays."""
        for language in languages:
            if self.port.use_language(language):
                text = self.flow.prompts[prompt].text[language].render(self.session.slots)
                await self._say_text(text, state)
        self.port.use_language(self.language)

    async def _say_text(self, text: str, state: State, expect: str | None = None) -> None:
        self.session.transcript.append(("system", text))
        self._said_since_hear.append(text)
        await self.port.say(text, state.settings.barge_in, expect)

    async def _hear(
        self, state: State, secure: bool = False, max_keys: int | None = 1, grammar: str | None = None
    ) -> CallerInput:
        with span("turn", state=state.name, flow=self.flow.name, asks=grammar or "open"):
            heard = await self.port.hear(state.settings, secure, max_keys, grammar)
        if not heard.silent:
            self.context.heard(heard.said, self.language, heard.confidence, heard.barge_in, heard.energy_dbfs)
        shown = (
            SECURE
            if secure and not heard.silent
            else (heard.said or (f"keys {heard.keyed}" if heard.keyed else ""))
        )
        self.session.transcript.append(("caller", shown))
        return heard

    def _missed(self, state: State, kind: Literal["no_input", "no_match"]) -> str:
        if kind == "no_match":
            self.context.no_matches += 1
        else:
            self.context.no_inputs += 1
        return self._misses.setdefault(state.name, Misses()).missed(kind, state.settings)

    async def _retry(self, state: State, step: str, intents: Sequence[Intent]) -> None:
        """Ask again after a miss: plainly, then with examples, then offering the keypad."""
        if step == "reprompt":
            await self._say_text(self._wording("reprompt"), state)
        elif step == "rephrase" and any(i.examples for i in intents):
            await self._say_text(self._wording("help_listen", examples=example_list(intents)), state)
        else:
            keys = key_list(intents, self.language, self._task)
            await self._say_text(
                self._wording("help_keys", keys=keys) if keys else self._wording("try_again"), state
            )
        for prompt in state.say:
            await self._say(prompt, state)

    async def _escalate(self, state: State, kind: str) -> str | None:
        """The state's transition for this miss, once; after that, the handoff state."""
        if (state.name, kind) not in self._escalated and any(t.event == kind for t in state.on):
            self._escalated.add((state.name, kind))
            return await self._fire(state, event=kind)
        return self._handoff_state(state.name)

    # --- slots ----------------------------------------------------------------------------------
    async def _collect(self, state: State) -> str | None:
        for name in state.collect:
            slot = self.flow.slots[name]
            offered = self._offered.pop(name, None)  # given before it was asked for
            if offered is not None:
                kept = offered if not slot.sensitive else await self._confirmed(state, name, offered)
                if kept is not None:
                    self.session.slots[name] = kept
                    self._answered(name)
            if name not in self.session.slots:
                self._asked_for(state, name)
            while name not in self.session.slots:
                await self._say(slot.prompt or "", state, expect=_grammar_for(slot))
                heard = await self._turn(state, slot.secure, _keys_for(slot), _grammar_for(slot), slot=slot)
                if heard.silent:
                    if self._missed(state, "no_input") == "escalate":
                        return "no_input"
                    continue
                got = parse_heard(slot, heard.said, heard.alternatives, heard.keyed, self.today)
                if slot.secure:  # from now on every log line, record and webhook masks it
                    for secret in (got.value, heard.keyed):
                        if secret:
                            SECURE_VALUES.add(self.session.id, secret)
                if got.value is None:
                    if await self._other_task(state, heard, slot.secure):  # leaves the state if it can
                        continue
                    if await self._asked_in_other_words(state, heard, slot):
                        continue
                    got = self._grammar_heard(state, slot, heard, got)
                if got.value is None:
                    await self._say_text(
                        self._wording("not_valid", reason=got.reason or ""), state, _grammar_for(slot)
                    )
                    if self._missed(state, "no_match") == "escalate":
                        return "no_match"
                    continue
                value = got.value if not slot.sensitive else await self._confirmed(state, name, got.value)
                if value is None:
                    continue
                self.session.slots[name] = value
                self._answered(name)
        return None

    def _grammar_heard(self, state: State, slot: Slot, heard: CallerInput, got: Parsed) -> Parsed:
        """The question's grammar's own answer, when the words that won over it (aside.py) are
        neither the answer, another task nor a repair ("that ends size six nine" means nothing
        here, the grammar's "seven five six nine" does). Only for a slot read back before use
        (the grammar makes digits of anything, and the caller must get to say no to a guess),
        and words about as many as the digits asked for: more are a sentence, not the answer
        ("didn't catch that can you repeat it")."""
        value = grammar_guess(slot, heard.said, heard.grammar_said, self.today)
        if value is None:
            return got
        log.info("flow.grammar_heard", flow=self.flow.name, state=state.name, slot=slot.name)
        return Parsed(value)

    async def _confirmed(self, state: State, name: str, value: str) -> str | None:
        """The value the caller confirms: ``value`` on a yes, the new one in a correction ("no,
        I said 5678"), None on a no."""
        prompt = f"confirm_{name}"
        if prompt in self.flow.prompts:
            await self._say(prompt, state, {name: value}, expect="yesno")
        else:
            await self._say_text(self._wording("confirm_value", value=" ".join(value)), state, "yesno")
        answer = await self._turn(state, grammar="yesno", confirming=name)
        corrected = await self._corrected_value(state, self.flow.slots[name], value, answer)
        if corrected is not None:
            return corrected
        if parse_heard(YES_NO, answer.said, answer.alternatives, answer.keyed).value == "yes":
            return value
        await self._rejected(state, name)  # asked again, within the flow's bound
        return None

    # --- the caller's turn ----------------------------------------------------------------------
    async def _listen(self, state: State) -> str | None:
        intents = [self.flow.intents[n] for n in state.listen]
        keys = [i.dtmf for i in intents if i.dtmf] + [t.dtmf for t in state.on if t.dtmf]
        self._asked_for(state, None)
        while True:
            heard = await self._turn(state, max_keys=max((len(k) for k in keys), default=1))
            if heard.silent:
                step = self._missed(state, "no_input")
                if (routed := self._routed(state, "no_input")) is not None:
                    return await self._take(state, routed, "no_input")
                if step == "escalate":
                    return await self._escalate(state, "no_input")
                await self._retry(state, step, intents)
                continue
            if heard.keyed and any(t.dtmf == heard.keyed for t in state.on):
                return await self._fire(state, dtmf=heard.keyed)
            decision = await self._decide(state, intents, heard)
            if decision.kind != "act" and (answered := self._yes_or_no(state, heard)) is not None:
                log.info("flow.answered", flow=self.flow.name, state=state.name, answer=answered,
                         instead_of=decision.kind, intent=decision.intent)  # fmt: skip
                return await self._fire(state, event=answered)  # "no" to "anything else?"
            if decision.kind == "confirm" and decision.intent is not None:
                decision = await self._confirm(state, intents, decision)
            elif decision.kind == "disambiguate":
                decision = await self._disambiguate(state, intents, decision)
            if decision.kind == "act" and decision.intent is not None:
                self.session.intent = decision.intent
                self._task_slots.clear()  # a new task
                missing = [self.flow.slots[n] for n in self.flow.slots if n not in self.session.slots]
                self._offered.update(entities(missing, heard.said))  # "... ending 4421"
                return await self._fire(state, intent=decision.intent)
            step = self._missed(state, "no_match")
            if (routed := self._routed(state, "no_match")) is not None:
                return await self._take(state, routed, "no_match")
            if step == "escalate":
                return await self._escalate(state, "no_match")
            await self._retry(state, step, intents)

    def _yes_or_no(self, state: State, heard: CallerInput) -> str | None:
        """``said_yes``/``said_no`` when the state has that transition and the caller answered
        yes or no; asked only when no intent was sure, so "no, my balance" still means balance."""
        events = {t.event for t in state.on} & {"said_yes", "said_no"}
        if not events or not heard.said:
            return None
        value = parse_heard(YES_NO, heard.said, heard.alternatives, "").value
        event = f"said_{value}" if value else None
        return event if event in events else None

    async def _decide(self, state: State, intents: Sequence[Intent], heard: CallerInput) -> Decision:
        with span("intent", state=state.name, flow=self.flow.name, flow_version=self.flow.version) as current:
            decision = await self._decided(state, intents, heard)
            if current is not None:
                current.set_attributes({"ivr.intent": decision.intent or "", "ivr.action": decision.kind})
            return decision

    async def _decided(self, state: State, intents: Sequence[Intent], heard: CallerInput) -> Decision:
        guesses: Sequence[Guess] = ()
        started = time.monotonic()
        if self.model is not None and heard.said:
            try:
                guesses = self.model.guesses(heard.said)
            except Exception as err:  # a broken model must not end the call: rules and keys still work
                log.error("nlu.failed", flow=self.flow.name, model_version=self.model.version,
                          error=f"{type(err).__name__}: {err}")  # fmt: skip
        decision = decide(intents, state.settings, heard.said, heard.keyed, guesses, heard.confidence)
        record = DecisionRecord(
            state.name, heard.said, heard.keyed, decision, self.flow.version,
            self.model.version if self.model is not None else None, self.resources_version,
        )  # fmt: skip
        self.audit(
            "decision",
            {
                "flow": self.flow.name,
                "flow_version": self.flow.version,
                "model_version": record.model_version,
                "asr_resources_version": record.resources_version,
                "state": state.name,
                "inputs": {
                    "said": heard.said,
                    "keyed": heard.keyed,
                    "heard_confidence": heard.confidence,
                    "context": self.context.as_dict(),
                    "guesses": [[g.intent, round(g.confidence, 4)] for g in guesses[:3]],
                },
                "intent": decision.intent,
                "confidence": decision.confidence,
                "source": decision.source,
                "action": decision.kind,
                "outcome": decision.reason,
                "latency_ms": _ms_since(started),
            },
        )
        self.session.decisions.append(record)
        if self.on_decision is not None:
            self.on_decision(record)
        log.info("flow.decision", flow=self.flow.name, flow_version=self.flow.version, state=state.name,
                 kind=decision.kind, intent=decision.intent, source=decision.source,
                 confidence=decision.confidence, reason=decision.reason)  # fmt: skip
        return decision

    async def _confirm(self, state: State, intents: Sequence[Intent], decision: Decision) -> Decision:
        intent = self.flow.intents[decision.intent or ""]
        if intent.confirm:
            await self._say(intent.confirm, state, expect="yesno")
        else:
            await self._say_text(
                self._wording("confirm_intent", task=self._task(intent.name)), state, "yesno"
            )
        answer = await self._turn(state, grammar="yesno")
        if parse_heard(YES_NO, answer.said, answer.alternatives, answer.keyed).value == "yes":
            return Decision("act", intent.name, decision.source, decision.confidence, reason="confirmed")
        corrected = await self._corrected_intent(state, intents, intent.name, answer)  # "no, my balance"
        if corrected is not None:
            return corrected
        return Decision("no_match", None, decision.source, decision.confidence, reason="not confirmed")

    async def _disambiguate(self, state: State, intents: Sequence[Intent], decision: Decision) -> Decision:
        a, b = decision.alternatives[:2]
        await self._say_text(self._wording("which", a=self._task(a), b=self._task(b)), state)
        answer = await self._turn(state)
        if answer.keyed in ("1", "2"):
            return Decision("act", (a, b)[int(answer.keyed) - 1], "dtmf", 1.0, reason="chosen by key")
        two = [i for i in intents if i.name in (a, b)]
        return await self._decide(state, two, answer)


def _keys_for(slot: Slot) -> int | None:
    """Keys that complete a slot's answer without waiting for # (None: # or a pause ends it)."""
    if slot.type == "digits" and slot.length is not None:
        return slot.length
    return 1 if slot.type == "yes_no" else None


def _grammar_for(slot: Slot) -> str | None:
    """The kind of answer a slot's question asks for: digits are heard against a grammar of
    their length (and the bundled digit model), yes/no, amounts, numbers and dates with the
    flow's model for that kind of question; text with the open one."""
    return answer_kind(slot)


def _ms_since(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 2)
