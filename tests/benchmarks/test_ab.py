"""scripts/bench-ab's code (benchmarks.ab) apart from the real calls: the goals, the simulated
caller through both flows in-process, the back-end verdict, the sandbox lock, the report."""

from __future__ import annotations

import asyncio
import dataclasses
import fcntl
import json
import os
from pathlib import Path
from typing import Any

import httpx
import pytest

from benchmarks.ab.caller import Caller, plan, prompt_kind
from benchmarks.ab.goals import ACCOUNTS, REPAIR_KINDS, Goal, Task, goals, repairs, spoken_digits
from benchmarks.ab.report import build, flow_summary, markdown, paired_medians, plot, targets
from benchmarks.ab.runner import asterisk_started, hearing_for, run_calls, sandbox_turn, steps_of
from benchmarks.ab.verify import first_useful_s, verdict
from benchmarks.common import REPO
from benchmarks.flow_comparison import MARGIN_MS, audio_ms
from ivr_server.store.database import upgrade
from ivr_server.tools.client import Service
from ivr_server.tools.demo_bank import ACCOUNTS as BANK_ACCOUNTS
from tests.conftest import running_server, sandbox, server_settings
from tests.support.sipp import Pause


def test_forty_distinct_goals_from_a_fixed_seed() -> None:
    """At least 40 goals, the same every time, no two callers alike (what they want, how they say
    it); every kind of task appears, with card digits of 4 and accounts the demo bank has; some
    callers say digits, some key them."""
    made = goals()
    assert made == goals() and len(made) >= 40 and len({g.id for g in made}) == len(made)
    assert len({dataclasses.replace(g, id="", title="") for g in made}) == len(made)
    assert len({g.tasks for g in made}) >= 20  # agent goals differ in wording only: 1 of these
    tasks = [t for g in made for t in g.tasks]
    assert {t.kind for t in tasks} == {"block", "balance", "transactions", "agent"}
    assert all(len(t.value) == 4 and t.value.isdigit() for t in tasks if t.kind == "block")
    assert {t.value for t in tasks if t.kind in ("balance", "transactions")} == set(ACCOUNTS)
    assert set(ACCOUNTS) <= set(BANK_ACCOUNTS)
    assert {g.say_last4 for g in made} == {True, False} and sum(len(g.tasks) == 2 for g in made) >= 5
    assert goals(40, seed=1) != made


def test_repair_scenarios_cover_each_kind() -> None:
    """At least 20 scenarios, 5 of each repair; a correction first says other digits than the
    card's; a cancel expects no effect; a digression's balance is asked for only by the aside."""
    made = repairs()
    assert len(made) >= 20 and [g.repair for g in made].count("cancel") == 5
    assert {g.repair for g in made} == set(REPAIR_KINDS)
    for g in made:
        if g.repair == "correction":
            wrong = g.interjections[0].say.replace(",", "").split()
            assert spoken_digits(g.tasks[0].value) != " ".join(wrong).replace("oh", "zero")
        assert g.cancels == (g.repair == "cancel")
        if g.repair == "digression":
            assert g.interjections[0].adds == g.tasks[1] == Task("balance", g.tasks[1].value)


@pytest.mark.parametrize(
    ("line", "kind"),
    [
        ("Welcome to Example Bank. In a few words, how can I help you today?", "open"),
        ("Is there anything else I can help you with?", "open"),
        ("Please say or key in the last four digits of the card.", "last4"),
        ("That's the card ending 4 4 2 1, right?", "confirm:4421"),
        ("I have 0 7 7 3. Is that right?", "confirm:0773"),
        ("You want to report a lost or stolen card, right?", "confirm:to report a lost or stolen card"),
        ("You want to cancel your lost card request, right?", "confirm_cancel"),
        ("Please key in your eight digit account number.", "account"),
        ("Do you want balance, or transactions? Press 1 or 2, or say which.", "choose:balance|transactions"),
        ("All our agents are busy right now. I can keep helping you here.", "agents_busy"),
        ("For your balance, press 1. For recent transactions, press 2.", "menu"),
        ("To return to the main menu, press 1. To end the call, press 9.", "more"),
        ("The card ending 4 4 2 1 is blocked.", "other"),
    ],
)
def test_the_caller_knows_what_a_prompt_asks(line: str, kind: str) -> None:
    """What the simulated caller takes each prompt of the two flows (and the engine) to ask."""
    assert prompt_kind(line) == kind


def test_the_caller_says_no_to_a_wrong_read_back_and_keys_on_the_tree() -> None:
    """A read-back of other digits gets "no, I said ..."; the phone tree gets keys: 3 for a card,
    the digits, 2 to a wrong read-back, 9 at the end."""
    goal = goals()[0]
    assert goal.tasks[0].kind == "block"
    card = goal.tasks[0].value
    banking = Caller(goal, "banking")
    assert banking.reply(["That's the card ending 9 9 9 9, right?"]) == {
        "say": f"No I said {spoken_digits(card)}."
    }
    tree = Caller(goal, "phone-tree")
    assert tree.reply(["Welcome.", "For your balance, press 1. For recent transactions, press 2."]) == {
        "keys": "3"
    }
    assert tree.reply(["Please key in the last four digits of the card."]) == {"keys": card}
    assert tree.reply(["I have 9 9 9 9. Is that right?"]) == {"keys": "2"}
    assert tree.reply([f"The card ending {card} is blocked.", "To return to the main menu, press 1."]) == {
        "keys": "9"
    }


async def _bank_log(bank: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient() as http:
        return list((await http.get(f"{bank}/_calls")).json())


async def test_every_goal_reaches_its_effect_in_process_in_both_flows(bank: str) -> None:
    """Every goal's caller, through the real banking and phone-tree flows and the demo bank
    in-process, leaves exactly the goal's effect at the bank (a transfer stands for the queue),
    with no turn left over and none missing; each repair scenario's repair is the one the engine
    makes."""
    services = {"bank": Service(bank)}
    cases = [(f, g) for g in goals() for f in ("banking", "phone-tree")] + [("banking", g) for g in repairs()]
    for flow, goal in cases:
        before = len(await _bank_log(bank))
        p = await plan(flow, goal, services)
        made = (await _bank_log(bank))[before:]
        end = "transferred" if p.outcome == "transfer" else "completed"
        assert p.problems == [], (goal.id, flow, p.problems)
        assert verdict(goal, made, end, 0) == (True, ""), (goal.id, flow, p.turns)
        assert len(p.heard) == len(p.turns) + 1 and all(p.heard[: len(p.turns)])
        if goal.repair:
            assert goal.repair in p.repairs, (goal.id, p.repairs)
        if flow == "phone-tree":
            assert all("keys" in t for t in p.turns)


BLOCK = Goal("x", "block", (Task("block", "4421"),), ("I lost my card.",), ("My card was stolen.",))


def _call(path: str, at: float = 0.0, last4: str | None = None) -> dict[str, Any]:
    body = {"last4": last4} if last4 is not None else None
    return {"method": "POST" if last4 else "GET", "path": path, "body": body, "at": at}


@pytest.mark.parametrize(
    ("goal", "calls", "end", "sipp", "done", "why"),
    [
        (BLOCK, [_call("/cards/block", last4="4421")], "completed", 0, True, ""),
        (BLOCK, [_call("/cards/block", last4="4412")], "completed", 0, False,
         "blocked card '4412'; no block 4421"),
        (BLOCK, [_call("/cards/block", last4="4412"), _call("/cards/block", last4="4421")], "completed", 0,
         False, "blocked card '4412'"),
        (BLOCK, [_call("/cards/block", last4="4421")], "completed", 1, False, "SIPp exited 1"),
        (BLOCK, [], "transferred", 0, False, "no block 4421"),
        (Goal("c", "cancel", BLOCK.tasks, BLOCK.asks, BLOCK.again, cancels=True), [], "completed", 0, True, ""),
        (Goal("c", "cancel", BLOCK.tasks, BLOCK.asks, BLOCK.again, cancels=True),
         [_call("/cards/block", last4="4421")], "completed", 0, False, "blocked card '4421'"),
        (Goal("b", "bal", (Task("balance", "12345678"),), ("x",), ("y",)),
         [_call("/accounts/12345678/balance")], "completed", 0, True, ""),
        (Goal("b", "bal", (Task("balance", "12345678"),), ("x",), ("y",)),
         [_call("/accounts/12345678/transactions?limit=3")], "completed", 0, False, "no balance 12345678"),
        (Goal("b", "bal", (Task("balance", "12345678"),), ("x",), ("y",)),
         [_call("/accounts/87654321/balance"), _call("/accounts/12345678/balance")], "completed", 0, False,
         "asked about account 87654321"),
        (Goal("a", "agent", (Task("agent"),), ("x",), ("y",)), [], "transferred", 0, True, ""),
        (Goal("a", "agent", (Task("agent"),), ("x",), ("y",)), [], "completed", 0, False,
         "not transferred (ended completed)"),
    ],
)  # fmt: skip
def test_a_goal_is_done_only_with_exactly_its_effect_at_the_bank(
    goal: Goal, calls: list[dict[str, Any]], end: str, sipp: int, done: bool, why: str
) -> None:
    """The right card blocked and no other; the right account's endpoint and no other account;
    an agent goal transferred; a cancelled block none at all; SIPp must have finished."""
    assert verdict(goal, calls, end, sipp) == (done, why)


def test_time_to_first_useful_action_is_the_first_right_effect() -> None:
    """From answer: the first request that is part of the goal (not a wrong card), or for an
    agent goal the hand-off; none for a cancelled goal or a goal with no right effect."""
    two = Goal("t", "two", (Task("block", "4421"), Task("balance", "12345678")), ("a", "b"), ("c", "d"))
    calls = [_call("/cards/block", 105.0, "1111"), _call("/cards/block", 112.5, "4421"),
             _call("/accounts/12345678/balance", 130.0)]  # fmt: skip
    assert first_useful_s(two, calls, 100.0, None) == 12.5
    assert first_useful_s(BLOCK, calls[:1], 100.0, None) is None
    agent = Goal("a", "agent", (Task("agent"),), ("x",), ("y",))
    assert first_useful_s(agent, [], 100.0, 137.25) == 37.25
    assert (
        first_useful_s(Goal("c", "c", BLOCK.tasks, BLOCK.asks, BLOCK.again, cancels=True), calls, 1, None)
        is None
    )


async def test_planned_with_the_recognizer_the_caller_answers_what_the_line_says_after_a_mishearing(
    bank: str,
) -> None:
    """g33's "Can I hear my last few payments?" comes out of the telephone line's recognizer
    garbled (benchmarks/ab.md): planned with its words as said, the script went on to the account
    number and the real call failed. Planned as heard, the line asks again and the caller answers
    that, and still reaches its goal; every sentence it said was heard by the recognizer first."""
    goal = next(g for g in goals() if g.id == "g33")
    services = {"bank": Service(bank)}
    as_said = await plan("banking", goal, services)
    before = len(await _bank_log(bank))
    hearing = await asyncio.to_thread(hearing_for, "banking")
    as_heard = await plan("banking", goal, services, hearing)
    made = (await _bank_log(bank))[before:]
    assert [s for s, _ in as_heard.recognized] == [t["say"] for t in as_heard.turns if "say" in t]
    assert as_heard.recognized[0][1] != "can i hear my last few payments"  # misheard on the line
    assert len(as_heard.turns) > len(as_said.turns) and as_heard.problems == []
    end = "transferred" if as_heard.outcome == "transfer" else "completed"
    assert verdict(goal, made, end, 0) == (True, ""), (as_heard.turns, as_heard.recognized)


async def test_the_wait_before_a_turn_after_an_unanswered_agent_ring_includes_the_ring(
    bank: str, tmp_path: Path
) -> None:
    """An agent goal into banking: the warm transfer rings 15 s (the flow's ring_s) before the
    caller asks again, so that turn's pause is the prompts' length + MARGIN_MS + 15 s."""
    goal = next(g for g in goals() if g.tasks == (Task("agent"),))
    p = await plan("banking", goal, {"bank": Service(bank)})
    assert p.rung_ms == {1: 15000} and len(p.turns) == 2
    steps = steps_of(p, tmp_path)
    assert steps[2] == Pause(sum(audio_ms(t) for t in p.heard[1]) + MARGIN_MS + 15000)
    assert steps[0] == Pause(sum(audio_ms(t) for t in p.heard[0]) + MARGIN_MS)


async def test_the_sandbox_lock_is_held_exclusively(tmp_path: Path) -> None:
    """While a batch holds the lock nobody else can take it; afterwards they can."""
    lock = tmp_path / "asterisk.lock"
    async with sandbox_turn(lock):
        fd = os.open(lock, os.O_RDWR)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)
    fd = os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(fd)


async def test_calls_a_cut_short_run_logged_are_not_placed_again(bank: str, tmp_path: Path) -> None:
    """With every plan's row already in the log, run_calls places no call (it would need the
    sandbox) and gives those rows, one per plan, each run's own for --runs 2."""
    goal = goals()[1]
    plans = [await plan("phone-tree", goal, {"bank": Service(bank)})] * 2
    log = tmp_path / "calls.jsonl"
    logged = [
        {"goal": goal.id, "flow": "phone-tree", "done": d, "run": i, "commit": "abc1234"}
        for i, d in enumerate((True, False))
    ]
    other = {"goal": goal.id, "flow": "phone-tree", "done": True, "run": 9, "commit": "0ld0000"}
    rows = [other, *logged, {"goal": "g99", "flow": "banking", "commit": "abc1234"}]
    log.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert await run_calls(plans, tmp_path / "work", log, "abc1234") == logged  # not another commit's
    assert not (tmp_path / "work").exists()


def _row(
    goal: str, flow: str, done: bool, duration: float, first: float | None, **extra: Any
) -> dict[str, Any]:
    return {"goal": goal, "flow": flow, "repair": "", "done": done, "why_not": "" if done else "no block",
            "duration_s": duration, "caller_turns": 3, "keys_pressed": 0 if flow == "banking" else 6,
            "end_reason": "completed", "transferred": False, "agent_attempts": 0, "first_useful_s": first,
            "repairs_recognized": [], "heard": ["four four two one"], "asr": "ps", **extra}  # fmt: skip


ROWS = [
    _row("g1", "banking", True, 20.0, 8.0),
    _row("g2", "banking", True, 30.0, 9.0),
    _row("g3", "banking", False, 40.0, None),
    _row("g4", "banking", True, 10.0, 4.0, transferred=True, agent_attempts=1),
    _row("g1", "phone-tree", True, 40.0, 12.0),
    _row("g2", "phone-tree", True, 60.0, 14.0),
    _row("g3", "phone-tree", True, 50.0, 13.0),
    _row("g4", "phone-tree", True, 14.0, 6.0, transferred=True),
]


def test_flow_summary_maths() -> None:
    """Success over all calls, duration median and p90 (linear), turns, keys, transfers, and time
    to first useful action over the calls that had one."""
    s = flow_summary([r for r in ROWS if r["flow"] == "banking"])
    assert (s["calls"], s["done"], s["success"]) == (4, 3, 0.75)
    assert s["duration_median_s"] == 25.0 and s["duration_p90_s"] == 37.0
    assert s["first_useful_median_s"] == 8.0 and s["first_useful_p90_s"] == 8.8
    assert (s["turns_median"], s["keys_mean"], s["transferred"], s["agent_rings"]) == (3, 0.0, 1, 1)


def test_targets_judge_the_same_goals_done_in_both_flows() -> None:
    """The speed target compares medians over the goals both flows did (g1, g2, g4: 20 vs 40 s,
    exactly 50 %: met); success 0.75 < 1.0: not met; repairs 19 of 20: 95 %: met."""
    paired = paired_medians(ROWS)
    assert paired == {"goals": 3, "banking": 20.0, "phone-tree": 40.0}
    summary = {f: flow_summary([r for r in ROWS if r["flow"] == f]) for f in ("banking", "phone-tree")}
    t = targets(summary, paired, {"all": {"calls": 20, "done": 19, "success": 0.95}})
    assert t["speed"] == {"ratio": 0.5, "target": 0.5, "met": True}
    assert t["success"]["met"] is False and t["repairs"]["met"] is True
    slower = targets(summary, {**paired, "banking": 20.5}, {"all": {"calls": 20, "done": 18, "success": 0.9}})
    assert slower["speed"]["met"] is False and slower["repairs"]["met"] is False


def test_report_states_what_was_not_met_and_plots(tmp_path: Path) -> None:
    """The markdown names each target met or not, lists every goal and every call not done with
    what the recognizer heard; the plot is a PNG."""
    gs = [
        Goal(f"g{i}", f"goal {i}", (Task("block", "4421"),), ("I lost my card.",), ("x",))
        for i in range(1, 5)
    ]
    meta = {"command": "scripts/bench-ab", "minutes": 50, "date": "2026-12-06", "commit": "abc",
            "machine": "cpu, 2 cores", "asr": "ps", "seed": 1, "runs": 1, "margin_ms": 1200,
            "tries": 3}  # fmt: skip
    data = build(ROWS, gs, meta)
    text = markdown(data)
    assert "**not met**" in text and "**met**" in text and "`scripts/bench-ab`" in text
    assert "- g3 banking: no block. The recognizer heard: four four two one" in text
    assert (
        "| g1 | goal 1 | I lost my card. | card said, account keyed | yes, 20.0, 3, 8.0 | yes, 40.0, 3, 12.0 |"
        in text
    )
    # how the scripts were planned: as said (runs before 41f95db name nothing) or as heard
    assert "every word heard as said" in text and "as the server's recognizer hears it" not in text
    heard = markdown(build(ROWS, gs, {**meta, "planned_as": "heard"}))
    assert "as the server's recognizer hears it" in heard and "every word heard as said" not in heard
    plot(data, tmp_path / "ab.png")
    assert (tmp_path / "ab.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_call_the_shared_sandbox_took_counts_for_neither_flow() -> None:
    """A call interfered with in every try is named in the method, not counted; tries of the
    others are added up as calls placed again."""
    lost = {"goal": "g5", "flow": "banking", "repair": "", "done": False, "interfered": True, "why_not": "x"}
    rows = [{**ROWS[0], "tries": 2}, *ROWS[1:], lost]
    meta = {"command": "c", "minutes": 1, "date": "d", "commit": "c", "machine": "m", "asr": "ps",
            "seed": 1, "runs": 1, "margin_ms": 1200, "tries": 3}  # fmt: skip
    data = build(rows, [], meta)
    assert data["summary"]["banking"]["calls"] == 4 and len(data["calls"]) == 8
    assert data["meta"]["placed_again"] == 1 + 3 and data["meta"]["lost_to_sandbox"] == ["g5 banking"]
    assert "Calls placed again: 4; lost in every try (counted for neither flow): g5 banking." in markdown(
        data
    )


def test_committed_ab_md_is_the_report_of_ab_json() -> None:
    """benchmarks/ab.md is exactly what markdown makes of benchmarks/ab.json: the committed report
    is regenerable from its figures, and it has the calls it claims."""
    data = json.loads((REPO / "benchmarks" / "ab.json").read_text())
    assert markdown(data) == (REPO / "benchmarks" / "ab.md").read_text()
    assert len({c["goal"] for c in data["calls"] if not c["repair"]}) >= 40
    assert sum(1 for c in data["calls"] if c["repair"]) >= 20


@pytest.mark.e2e
@pytest.mark.usefixtures("asterisk")
async def test_a_call_the_sandboxs_restart_cut_short_is_told_by_asterisks_start_time(tmp_path: Path) -> None:
    """A restart of the shared sandbox during a call ends it as the caller's hang-up before the
    server notices ARI go; the runner tells such a call by Asterisk's start time, read before
    and after it."""
    database = f"sqlite+aiosqlite:///{tmp_path / 'ivr.sqlite3'}"
    await asyncio.to_thread(upgrade, database, "head")
    async with running_server(server_settings(database)) as server:
        before = await asterisk_started(server)
        assert before is not None and await asterisk_started(server) == before
        await asyncio.to_thread(sandbox, "restart")
        assert await asterisk_started(server) not in (None, before)
