"""How short each goal's call could be (benchmarks/ab/floor.py): the prompts a caller must hear
and its own turns, timed by Piper and SIPp's key timing, through the real flows in-process."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.ab.caller import Plan, plan
from benchmarks.ab.floor import (
    KEY_MS,
    Floor,
    floor_of,
    markdown,
    needed_sentences,
    report,
    sentences,
    spoken_ms,
    summary,
    turn_ms,
    unexplained_ms,
    write,
)
from benchmarks.ab.goals import Goal, Task, goals
from benchmarks.flow_comparison import SPEAK_TAIL_MS
from ivr_server.tools.client import Service

MENU = (
    "For your balance, press 1. For recent transactions, press 2. To report a lost or stolen card, "
    "press 3. To speak to an agent, press 0."
)
BLOCK = Goal("x", "block", (Task("block", "4421"),), ("I lost my card.",), ("My card was stolen.",))
AGENT = Goal("y", "agent", (Task("agent"),), ("Agent please.",), ("A person please.",))


def _plan(flow: str, goal: Goal, turns: list[dict[str, str]], heard: list[list[str]]) -> Plan:
    return Plan(flow, goal, turns, heard, {}, "hangup", [], [], [])


def test_a_line_splits_into_its_sentences() -> None:
    assert sentences("Welcome to Example Bank. In a few words, how can I help you today?") == [
        "Welcome to Example Bank.",
        "In a few words, how can I help you today?",
    ]
    assert sentences("  ") == []


@pytest.mark.parametrize(("keys", "needed"), [("1", 1), ("3", 3), ("0", 4), ("9", 4)])
def test_in_a_keypad_menu_a_barging_caller_hears_up_to_its_option(keys: str, needed: int) -> None:
    assert needed_sentences(MENU, {"keys": keys}) == needed


def test_a_question_is_heard_whole() -> None:
    line = "That's the card ending 4 4 2 1, right?"
    assert needed_sentences(line, {"say": "Yes."}) == 1
    assert needed_sentences("Welcome to Example Bank. How can I help?", {"say": "I lost my card."}) == 2


def test_a_turn_takes_its_sentence_or_its_keys() -> None:
    assert turn_ms({"keys": "4421"}) == 4 * KEY_MS
    assert turn_ms({"say": "Yes."}) == spoken_ms("Yes.") > 0


def test_the_waiting_caller_hears_everything_the_barging_one_stops_at_its_task_done() -> None:
    """Tree, block a card: menu, digits, read-back, result, "more" menu, goodbye. The waiting
    caller hears all of it; the barging one keys 3 after the third option, and hangs up on
    "... is blocked." (not hearing the new-card sentence, the more menu, nor keying 9)."""
    turns = [{"keys": "3"}, {"keys": "4421"}, {"keys": "1"}, {"keys": "9"}]
    blocked = "The card ending 4 4 2 1 is blocked. A new card will arrive in five to seven days."
    more = "To return to the main menu, press 1. To end the call, press 9."
    heard = [
        ["Welcome to Example Bank.", MENU],
        ["Please key in the last four digits of the card."],
        ["I have 4 4 2 1. Is that right?"],
        [blocked, more],
        ["Thank you for calling Example Bank. Goodbye."],
    ]
    f = floor_of(_plan("phone-tree", BLOCK, turns, heard))
    assert f.waits_ms == sum(spoken_ms(line) for group in heard for line in group) + sum(map(turn_ms, turns))
    menu_part = spoken_ms(" ".join(sentences(MENU)[:3]))
    assert f.barges_ms == (
        spoken_ms("Welcome to Example Bank.") + menu_part + KEY_MS
        + spoken_ms(heard[1][0]) + 4 * KEY_MS + spoken_ms(heard[2][0]) + KEY_MS
        + spoken_ms("The card ending 4 4 2 1 is blocked.")
    )  # fmt: skip
    assert f.kind == "block" and f.barges_ms < f.waits_ms


def test_an_agent_goal_ends_where_the_caller_is_handed_to_a_person() -> None:
    """Banking: the warm transfer's "I'll put you through to an agent now." ends it, for both
    callers (a desk that answers at once); what an unanswered ring led to is not counted."""
    handed = "I'll put you through to an agent now. They will have the details you gave me."
    heard = [
        ["Welcome to Example Bank. In a few words, how can I help you today?"],
        [handed, "All our agents are busy right now. What would you like?"],
        ["I'll put you in the queue for the next agent."],
    ]
    turns = [{"say": "Agent please."}, {"say": "Agent please."}]
    f = floor_of(_plan("banking", AGENT, turns, heard))
    upto = spoken_ms(heard[0][0]) + turn_ms(turns[0]) + spoken_ms("I'll put you through to an agent now.")
    assert f.waits_ms == f.barges_ms == upto


def test_medians_ratios_and_what_the_first_flow_would_have_to_lose() -> None:
    floors = [
        Floor("g1", "banking", "block", 20000, 10000),
        Floor("g2", "banking", "balance", 30000, 20000),
        Floor("g3", "banking", "balance", 10000, 10000),  # not in the tree: left out
        Floor("g1", "phone-tree", "block", 40000, 16000),
        Floor("g2", "phone-tree", "balance", 40000, 24000),
    ]
    s = summary(floors, ("banking", "phone-tree"))
    assert s["waits"] == {"banking": 25.0, "phone-tree": 40.0, "ratio": 0.625}
    assert s["barges"] == {"banking": 15.0, "phone-tree": 20.0, "ratio": 0.75}
    rep = report(floors, ("banking", "phone-tree"), 0.5, {"command": "c", "date": "d", "commit": "x",
                                                        "goals": 2, "seed": 1})  # fmt: skip
    assert rep["short_of_target_s"] == {"waits": 5.0, "barges": 5.0}
    assert rep["kinds"]["balance"]["waits"] == {"banking": 30.0, "phone-tree": 40.0, "ratio": 0.75}
    text = markdown(rep)
    assert "| waits | 25.0 | 40.0 | 62 % | 5.0 s |" in text and "| balance | 2 |" in text


def test_what_a_real_call_took_beyond_the_floor_and_the_script_s_waits_per_turn() -> None:
    """A call of 3 turns (2 spoken) that took the floor + 3 margins + 2 sentence tails + 3 x 150
    ms: 150 ms per turn. A call whose turns were not the plan's, or of an agent goal, is left out."""
    heard = [["Welcome. How can I help?"], ["Please key in your eight digit account number."],
             ["Your available balance is 10 dollars. Anything else?"], ["Goodbye."]]  # fmt: skip
    turns = [{"say": "What's my balance?"}, {"keys": "12345678"}, {"say": "No."}]
    balance = Goal("b", "balance", (Task("balance", "12345678"),), ("What's my balance?",), ("Balance.",))
    plans = [_plan("banking", balance, turns, heard), _plan("banking", AGENT, turns, heard)]
    floor = floor_of(plans[0]).waits_ms
    took = floor + 3 * 1200 + 2 * SPEAK_TAIL_MS + 3 * 150

    def row(goal: str, turns: list[dict[str, str]], ms: int) -> dict[str, object]:
        return {"goal": goal, "flow": "banking", "repair": "", "done": True, "duration_s": ms / 1000,
                "planned": {"turns": turns}}  # fmt: skip

    assert (
        unexplained_ms(plans, [row("b", turns, took), row("y", turns, took + 60000)], "banking", 1200) == 150
    )
    assert unexplained_ms(plans, [row("b", turns[:2], took)], "banking", 1200) is None
    assert unexplained_ms(plans, [row("b", turns, took)], "phone-tree", 1200) is None


async def test_every_goal_s_floor_through_the_real_flows(bank: str, tmp_path: Path) -> None:
    """Each goal planned through both real flows: the barging caller is never slower than the
    waiting one, and a goal without an agent task is timed by the waiting caller as everything
    the plan heard plus its turns."""
    services = {"bank": Service(bank)}
    floors = []
    for g in goals()[:10]:
        for flow in ("banking", "phone-tree"):
            p = await plan(flow, g, services)
            f = floor_of(p)
            floors.append(f)
            assert 0 < f.barges_ms <= f.waits_ms, (g.id, flow)
            if all(t.kind != "agent" for t in g.tasks):
                everything = sum(spoken_ms(line) for group in p.heard for line in group)
                assert f.waits_ms == everything + sum(map(turn_ms, p.turns)), (g.id, flow)
    rep = report(floors, ("banking", "phone-tree"), 0.5, {"command": "c", "date": "d", "commit": "x",
                                                        "goals": 10, "seed": 1})  # fmt: skip
    write(tmp_path, rep)
    assert (tmp_path / "ab-floor.md").read_text().startswith("# How short the calls could be")
