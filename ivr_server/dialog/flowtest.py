"""Flow tests: scripted callers run through a flow, with what each turn must find.

A test file (YAML) names its flow and lists tests; each test is the caller's turns in order
(``say: words``, ``keys: "4421"``, or ``silence: true``; ``confidence: 0.3`` for words the
recognizer was unsure of; ``grammar: "four four two one"`` for what a digit question's grammar
heard where the words won over it), each with optional expectations
about the moment it is heard (``state``) and the decision made on it (``decision``: kind,
intent, source, any of them), and expectations about the end: ``slots``, ``repairs`` made (in
order: repeat, correction, digression, ...), what a warm transfer's agent was told (``whisper``)
and how each agent leg ended (``agent_attempts``; the test scripts them with ``agent: [busy,
accept]``),
``tools`` called (in order, with outcomes), ``outcome`` (transfer, hangup), ``transfer``
variables and phrases the caller ``heard``. ``backend: demo`` runs the demo bank in-process
and points every service at it. Used by ``ivr-server flows test`` and by pytest.

Returning callers: a test with ``caller: "+15550100"`` is that caller (the tests of a file share
one memory of saved tasks), ``{hangup: true}`` as a turn hangs up there, ``returning: {state,
intent, slots, minutes_ago}`` is a task the caller left before the test; ``expect: {returning:
resumed}`` (offered, declined) and ``saved: {state, intent, slots}`` (or ``saved: null``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ivr_server.dialog.engine import Engine
from ivr_server.dialog.nlu.flow_model import model_for_flow
from ivr_server.dialog.returning import MemoryTasks, SavedTask
from ivr_server.dialog.session import CallerInput, Session
from ivr_server.dialog.spec.loader import load_flow
from ivr_server.dialog.spec.model import Flow, Settings
from ivr_server.errors import FlowError
from ivr_server.privacy.caller_id import caller_hash
from ivr_server.tools.client import Service, ToolClient


class ScriptPort:
    """The caller's side, from a script; records what the caller heard and where each turn fell."""

    def __init__(self, turns: list[dict[str, Any]]) -> None:
        self.turns = list(turns)
        self.heard: list[str] = []
        self.transferred: tuple[dict[str, str], dict[str, str]] | None = None
        self.hung_up = False
        self.engine: Engine | None = None
        self.at: list[str] = []  # the state each turn was heard in
        self.failures: list[str] = []
        self._pending: tuple[int, dict[str, Any], int] | None = None  # turn, expected, decisions then
        self.agents: list[str] = []  # how each warm transfer's agent leg ends: accept, busy, ...
        self.whispers: list[str] = []  # what each agent was told
        self.caller_hung_up = False  # a {hangup: true} turn was reached
        self.languages: list[str] = []  # each voice the call was switched to, in order
        self.switched_to: str | None = None

    async def say(self, text: str, barge_in: bool, expect: str | None = None) -> None:
        self.heard.append(text)

    async def hear(
        self, settings: Settings, secure: bool, max_keys: int | None, grammar: str | None
    ) -> CallerInput:
        state = self.engine.session.state if self.engine is not None else ""
        self.check_decision()
        if not self.turns:
            self.failures.append(
                f"the flow asked for turn {len(self.at) + 1} in state '{state}', the script had no more"
            )
            return CallerInput()  # silence: the flow's no-input handling ends the call
        turn = self.turns.pop(0)
        self.at.append(state)
        expected = (turn.get("expect") or {}).get("state")
        if expected is not None and expected != state:
            self.failures.append(f"turn {len(self.at)}: expected state '{expected}', was '{state}'")
        decision = (turn.get("expect") or {}).get("decision")
        if decision is not None and self.engine is not None:
            self._pending = (len(self.at), dict(decision), len(self.engine.session.decisions))
        if turn.get("hangup"):
            self.caller_hung_up = True
            raise asyncio.CancelledError  # what a hang-up is to the engine: its call task cancelled
        sure = turn.get("confidence")  # how surely the recognizer heard it (unsure: confirmed)
        confidence = float(sure) if isinstance(sure, int | float) and not isinstance(sure, bool) else None
        return CallerInput(str(turn.get("say", "")), str(turn.get("keys", "")), confidence=confidence,
                           grammar_said=str(turn.get("grammar", "")))  # fmt: skip

    def check_decision(self) -> None:
        """The first decision made after the pending turn must match what it expected."""
        if self._pending is None or self.engine is None:
            return
        turn, want, before = self._pending
        self._pending = None
        made = self.engine.session.decisions[before:]
        if not made:
            self.failures.append(f"turn {turn}: expected a decision {want}, none was made")
            return
        d = made[0].decision
        got = {"kind": d.kind, "intent": d.intent, "source": d.source}
        wrong = {k: v for k, v in want.items() if got.get(k) != v}
        if wrong:
            self.failures.append(f"turn {turn}: expected decision {want}, got {got} ({d.reason})")

    async def transfer(self, target: Mapping[str, str], variables: Mapping[str, str]) -> None:
        self.transferred = (dict(target), dict(variables))

    async def warm_transfer(
        self, target: Mapping[str, str], variables: Mapping[str, str], whisper: str
    ) -> str:
        """The agent legs the test scripts (``agent: [busy, accept]``); none left: no agent."""
        self.whispers.append(whisper)
        outcome = self.agents.pop(0) if self.agents else "unavailable"
        if outcome == "accept":
            self.transferred = (dict(target), dict(variables))
            return "bridged"
        return outcome

    async def hangup(self) -> None:
        self.hung_up = True

    def use_language(self, language: str) -> bool:
        self.languages.append(language)
        return True

    def switch_flow(self, name: str) -> bool:
        """The flow the call goes on in (``expect: {flow: banking-ko}``); any name is taken
        here: the server checks it against the flows it serves."""
        self.switched_to = name
        return True


@dataclass
class TestResult:
    name: str
    failures: list[str] = field(default_factory=list)
    session: Session | None = None

    @property
    def passed(self) -> bool:
        return not self.failures


def read_tests(path: Path) -> tuple[dict[str, Any], Flow]:
    """The test file and its flow (FlowError naming what is wrong with either)."""
    try:
        spec = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise FlowError(f"{path}: cannot read the flow test file: {err}") from err
    if not isinstance(spec, dict) or not isinstance(spec.get("tests"), list) or "flow" not in spec:
        raise FlowError(f"{path}: a flow test file needs 'flow: FILE' and a list of 'tests'")
    return spec, load_flow((path.parent / str(spec["flow"])).resolve())


async def run_file(path: Path, services: Mapping[str, Service] | None = None) -> list[TestResult]:
    spec, flow = await asyncio.to_thread(read_tests, path)
    today = dt.date.fromisoformat(str(spec.get("today", "2026-11-24")))
    runner = None
    if spec.get("backend") == "demo":
        from ivr_server.tools.demo_bank import serve

        runner, port = await serve("127.0.0.1", 0)
        services = {
            name: Service(f"http://127.0.0.1:{port}") for name in {t.service for t in flow.tools.values()}
        }
    tasks = MemoryTasks()  # a caller who hangs up in one test may return in the next
    try:
        return [await run_test(flow, test, services or {}, today, tasks) for test in spec["tests"]]
    finally:
        if runner is not None:
            await runner.cleanup()


async def run_test(
    flow: Flow,
    test: dict[str, Any],
    services: Mapping[str, Service],
    today: dt.date,
    tasks: MemoryTasks | None = None,
) -> TestResult:
    result = TestResult(str(test.get("name", "unnamed")))
    port = ScriptPort(list(test.get("turns") or []))
    port.agents = [str(a) for a in test.get("agent") or []]
    tools = ToolClient(services)
    tasks = tasks if tasks is not None else MemoryTasks()
    caller = caller_hash(str(test["caller"]), _CALLER_KEY) if "caller" in test else None
    if caller is not None and isinstance(test.get("returning"), dict):
        left = _left_before(flow, test["returning"])
        tasks.keep(caller, left, left.saved_at + dt.timedelta(hours=flow.returning.keep_hours))
    try:
        engine = Engine(flow, port, tools, model_for_flow(flow), today=today, caller=caller, tasks=tasks)
        port.engine = engine
        try:
            session = await engine.run()
        except asyncio.CancelledError:
            if not port.caller_hung_up:
                raise
            session = engine.session
    finally:
        await tools.aclose()
    result.session = session
    port.check_decision()
    result.failures += port.failures
    if port.turns:
        result.failures.append(f"the flow ended with {len(port.turns)} scripted turn(s) unused")
    want = test.get("expect") or {}
    for name, value in (want.get("slots") or {}).items():
        if session.slots.get(name) != str(value):
            result.failures.append(f"slot {name}: expected {value!r}, got {session.slots.get(name)!r}")
    if "tools" in want and [t for t, _ in session.tool_calls] != list(want["tools"]):
        result.failures.append(f"tools: expected {want['tools']}, called {session.tool_calls}")
    if "outcome" in want and session.outcome != want["outcome"]:
        result.failures.append(f"outcome: expected {want['outcome']}, got {session.outcome}")
    if "flow" in want and port.switched_to != want["flow"]:
        result.failures.append(f"flow: expected the call to go on in {want['flow']}, got {port.switched_to}")
    for name, value in (want.get("transfer") or {}).items():
        got = session.transfer_variables.get(name)
        if got is None or str(value) not in got:
            result.failures.append(f"transfer variable {name}: expected {value!r} in it, got {got!r}")
    spoken = " ".join(port.heard)
    # Always: a secure slot's value is never spoken, shown in the transcript or passed on.
    for name, value in session.slots.items():
        if flow.slots[name].secure:
            places = {"prompts": spoken, "transcript": str(session.transcript),
                      "transfer variables": str(session.transfer_variables),
                      "agent whisper": " ".join(port.whispers),
                      "saved tasks": str(list(tasks.tasks.values()))}  # fmt: skip
            result.failures += [f"secure slot {name} appears in the {where}" for where, text in places.items()
                                if value in text]  # fmt: skip
    for phrase in want.get("heard") or []:
        if str(phrase) not in spoken:
            result.failures.append(f"the caller never heard {phrase!r}")
    for phrase in want.get("whisper") or []:
        if str(phrase) not in " ".join(port.whispers):
            result.failures.append(f"no agent was told {phrase!r} (whispers: {port.whispers})")
    if "agent_attempts" in want and session.agent_attempts != list(want["agent_attempts"]):
        result.failures.append(f"agent legs: expected {want['agent_attempts']}, got {session.agent_attempts}")
    if "repairs" in want and [r for _, r, _ in session.repairs] != list(want["repairs"]):
        result.failures.append(f"repairs: expected {want['repairs']}, made {session.repairs}")
    if "states" in want and session.visited != list(want["states"]):
        result.failures.append(f"states: expected {want['states']}, went {session.visited}")
    if "returning" in want and session.returning != want["returning"]:
        result.failures.append(f"returning: expected {want['returning']}, got {session.returning}")
    if "saved" in want:
        saved = tasks.tasks.get((caller or "", flow.name))
        result.failures += _saved_problems(want["saved"], saved)
    return result


_CALLER_KEY = secrets.token_bytes(32)  # flow tests' callers are hashed like the server's, keyed


def _left_before(flow: Flow, fixture: dict[str, Any]) -> SavedTask:
    """A task the test's caller left in an earlier call (``returning: {state, intent, slots,
    minutes_ago}``)."""
    at = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=float(fixture.get("minutes_ago", 5)))
    slots = {str(k): str(v) for k, v in (fixture.get("slots") or {}).items()}
    return SavedTask(flow.name, flow.version, str(fixture["state"]), str(fixture["intent"]), slots, at)


def _saved_problems(want: Any, saved: SavedTask | None) -> list[str]:
    """How the task kept for the caller's next call differs from ``saved:`` (null: none kept)."""
    if not want:
        return [] if saved is None else [f"saved: expected none, kept {saved}"]
    if saved is None:
        return [f"saved: expected {want}, nothing was kept"]
    got = {"state": saved.state, "intent": saved.intent, "slots": saved.slots}
    return [f"saved {k}: expected {v!r}, got {got.get(k)!r}" for k, v in want.items() if got.get(k) != v]
