"""Repairs in the engine beyond the shipped flow tests: a digression inside a digression waits,
a repair a flow turned off is an ordinary answer, a hold lengthens the no-input timer, a secure
answer never reaches the audit trail, and every repair is an audit event with its reason."""

from __future__ import annotations

from typing import Any

from ivr_server.dialog.engine import Engine
from ivr_server.dialog.flowtest import ScriptPort, run_test
from ivr_server.dialog.session import CallerInput
from ivr_server.dialog.spec.loader import check_text
from ivr_server.dialog.spec.model import Flow, Settings
from ivr_server.tools.client import ToolClient
from tests.integration.test_flow_engine import BANKING, FLOWS, TODAY, bank_with_fault

SHOP = """
flow: shop
start: menu
handoff: agent
prompts:
  menu: "What can I do for you?"
  ask_order: "What is your order number?"
  ask_day: "Which day should we deliver?"
  ask_item: "Which item number?"
  tracked: "Order {order:digits} arrives tomorrow."
  moved: "Delivery moved to {day}."
  returned: "Return of item {item:digits} booked."
  bye: "Bye."
  to_agent: "Putting you through."
intents:
  track: {examples: [where is my order], keywords: [track, tracking]}
  delivery: {examples: [change my delivery day], keywords: [delivery]}
  returns: {examples: [return an item], keywords: [return]}
  bye: {keywords: [goodbye]}
slots:
  order: {type: digits, length: 6, prompt: ask_order}
  day: {type: date, prompt: ask_day}
  item: {type: digits, length: 3, prompt: ask_item}
states:
  menu:
    say: menu
    listen: [track, delivery, returns, bye]
    on:
      - {intent: track, goto: track}
      - {intent: delivery, goto: delivery}
      - {intent: returns, goto: returns}
      - {intent: bye, goto: bye}
      - {event: no_match, goto: agent}
      - {event: no_input, goto: agent}
  track:
    collect: [order]
    do: [{say: tracked}]
    on: [{event: done, goto: menu}, {event: no_match, goto: agent}, {event: no_input, goto: agent}]
  delivery:
    collect: [day]
    do: [{say: moved}]
    on: [{event: done, goto: menu}, {event: no_match, goto: agent}, {event: no_input, goto: agent}]
  returns:
    collect: [item]
    do: [{say: returned}]
    on: [{event: done, goto: menu}, {event: no_match, goto: agent}, {event: no_input, goto: agent}]
  agent:
    say: to_agent
    do: [{transfer: {context: agents, extension: "100"}}]
  bye:
    say: bye
    do: [hangup]
"""


def flow_of(text: str) -> Flow:
    flow, problems = check_text(text, "shop.yaml")
    assert flow is not None, [str(p) for p in problems]
    return flow


async def test_a_digression_inside_a_digression_waits_for_the_first_to_end() -> None:
    test = {
        "name": "nested",
        "turns": [
            {"say": "I want to track my order"},
            {"say": "change my delivery day first", "expect": {"state": "track"}},
            {"say": "and I want to return something", "expect": {"state": "delivery"}},
            {"say": "the third of May", "expect": {"state": "delivery"}},
            {"say": "one two three four five six", "expect": {"state": "track"}},
            {"say": "goodbye", "expect": {"state": "menu"}},
        ],
        "expect": {
            "repairs": ["digression", "digression"],
            "slots": {"order": "123456", "day": "2026-05-03"},
            "heard": [
                "Let's finish your delivery request first",
                "Now, back to your track request",
                "Order 1 2 3 4 5 6 arrives tomorrow",
            ],  # fmt: skip
            "states": ["menu", "track", "delivery", "track", "menu", "bye"],
            "outcome": "hangup",
        },
    }
    result = await run_test(flow_of(SHOP), test, {}, TODAY)
    assert result.passed, result.failures
    assert result.session is not None
    assert [r for _, _, r in result.session.repairs] == ["track -> delivery", "returns waits: 1 open"]


async def test_a_request_heard_unsurely_at_a_slot_question_is_confirmed_before_the_detour() -> None:
    """A request other than the answer, heard with low confidence (a digit question's second
    decoder often is), is not dropped as a miss: the caller is asked, and a yes takes the detour;
    a no asks the slot's question again."""
    turns = [
        {"say": "I want to track my order"},
        {"say": "change my delivery day", "confidence": 0.3, "expect": {"state": "track"}},
        {"say": "yes", "expect": {"state": "track"}},
        {"say": "the third of May", "expect": {"state": "delivery"}},
        {"say": "one two three four five six", "expect": {"state": "track"}},
        {"say": "goodbye", "expect": {"state": "menu"}},
    ]
    test = {
        "name": "unsure digression",
        "turns": turns,
        "expect": {
            "repairs": ["digression"],
            "heard": ["You want delivery, right?", "Now, back to your track request"],
            "states": ["menu", "track", "delivery", "track", "menu", "bye"],
            "outcome": "hangup",
        },
    }
    result = await run_test(flow_of(SHOP), test, {}, TODAY)
    assert result.passed, result.failures
    declined = [
        *turns[:2],
        {"say": "no", "expect": {"state": "track"}},
        {"say": "one two three four five six"},
    ]
    test = {
        "name": "declined",
        "turns": [*declined, {"say": "goodbye"}],
        "expect": {"repairs": [], "heard": ["You want delivery, right?"], "outcome": "hangup"},
    }
    result = await run_test(flow_of(SHOP), test, {}, TODAY)
    assert result.passed, result.failures


async def test_a_repair_the_flow_turned_off_is_an_ordinary_answer() -> None:
    text = (
        (FLOWS / "banking.yaml").read_text().replace("prompts:\n", "repair: {off: [repeat]}\nprompts:\n", 1)
    )
    test = {
        "name": "no repeat",
        "turns": [{"say": "what", "expect": {"decision": {"kind": "no_match"}}}, {"say": "goodbye"}],
        "expect": {"repairs": [], "heard": ["Sorry, I didn't get that."], "outcome": "hangup"},
    }
    result = await run_test(flow_of(text), test, {}, TODAY)
    assert result.passed, result.failures


class TimedPort(ScriptPort):
    """Records the no-input timer each turn was heard with, and each turn's ``secure`` flag."""

    def __init__(self, turns: list[dict[str, Any]]) -> None:
        super().__init__(turns)
        self.timers: list[tuple[int, bool]] = []

    async def hear(
        self, settings: Settings, secure: bool, max_keys: int | None, grammar: str | None
    ) -> CallerInput:
        self.timers.append((settings.no_input_ms, secure))
        return await super().hear(settings, secure, max_keys, grammar)


async def test_a_hold_waits_longer_once_and_a_secure_answer_never_reaches_the_audit_trail() -> None:
    port = TimedPort([
        {"say": "what's my balance"},
        {"say": "hang on a second let me look"},  # asked for the account number: secure
        {"keys": "12345678"},
        {"say": "no thanks"},
    ])  # fmt: skip
    audited: list[tuple[str, dict[str, Any]]] = []
    runner, services, _ = await bank_with_fault()
    tools = ToolClient(services)
    try:
        engine = Engine(
            BANKING, port, tools, today=TODAY, audit=lambda kind, payload: audited.append((kind, payload))
        )
        port.engine = engine
        session = await engine.run()
    finally:
        await tools.aclose()
        await runner.cleanup()  # type: ignore[attr-defined]
    assert session.outcome == "hangup" and session.tool_calls == [("get_balance", "ok")]
    assert port.timers == [(6000, False), (6000, True), (30000, True), (6000, False)]
    assert [(s, r) for s, r, _ in session.repairs] == [("balance", "hold")]
    (repair,) = [p for k, p in audited if k == "repair"]
    assert repair["repair"] == "hold" and repair["reason"] == "asked: [secure]" and "inputs" not in repair
    assert repair["flow_version"] == BANKING.version and repair["state"] == "balance"
    assert "12345678" not in str(audited)
    # Each decision keeps the call's context: turns so far, misses, barge-ins, level, frustration.
    first, last = [p["inputs"]["context"] for k, p in audited if k == "decision"]
    assert (first["turns"], first["no_matches"], first["frustrated"], first["repairs"]) == (1, 0, False, 0)
    assert (last["turns"], last["repairs"]) == (4, 1)  # the hold was a turn and a repair


async def test_a_hold_that_runs_out_asks_if_the_caller_is_still_there() -> None:
    test = {
        "name": "hold, then silence",
        "turns": [
            {"say": "I lost my card"},
            {"say": "wait a minute"},
            {"silence": True},
            {"say": "four four two one"},
            {"say": "yes"},
            {"say": "no thanks"},
        ],
        "expect": {
            "repairs": ["hold"],
            "heard": ["take your time", "Are you still there?", "Please say or key in the last four digits"],
            "tools": ["block_card"],
            "outcome": "hangup",
        },
    }
    runner, services, _ = await bank_with_fault()
    try:
        result = await run_test(BANKING, test, services, TODAY)
    finally:
        await runner.cleanup()  # type: ignore[attr-defined]
    assert result.passed, result.failures


async def test_a_state_without_a_way_on_for_what_happened_hands_off_instead_of_failing() -> None:
    text = SHOP.replace(
        "    do: [{say: tracked}]\n    on: [{event: done, goto: menu}, {event: no_match, goto: agent}, "
        "{event: no_input, goto: agent}]\n",
        "    do: [{say: tracked}]\n    on: [{event: no_match, goto: agent}]\n",
    )
    assert text != SHOP
    test = {
        "name": "no done",
        "turns": [{"say": "track my order"}, {"say": "one two three four five six"}],
        "expect": {"states": ["menu", "track", "agent"], "outcome": "transfer"},
    }
    result = await run_test(flow_of(text), test, {}, TODAY)
    assert result.passed, result.failures
