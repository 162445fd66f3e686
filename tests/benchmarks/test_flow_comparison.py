"""scripts/compare-flows' code (benchmarks.flow_comparison) apart from the real call: the in-process run
that learns the prompts, the caller's SIPp steps, when a task counts, and the report."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from benchmarks.common import REPO
from benchmarks.flow_comparison import (
    MARGIN_MS,
    SPEAK_TAIL_MS,
    TASKS,
    audio_ms,
    caller_steps,
    heard_before_each_turn,
    markdown,
    one_call,
    summarize,
    task_done,
    write,
)
from tests.support.sipp import Keys, Pause, Speak


async def test_banking_balance_task_runs_in_process_and_groups_what_is_heard(bank: str) -> None:
    """The balance task through the real banking flow and demo bank: one group of system lines
    before each of the 3 caller turns and one after the last; the greeting comes first and the
    balance is read out before the caller's goodbye."""
    turns = TASKS["balance"]["banking"]
    heard = await heard_before_each_turn("banking", turns, bank)
    assert len(heard) == len(turns) + 1
    assert heard[0] and all(heard[:3])
    assert any("balance" in line.lower() for line in heard[2]), heard


async def test_a_script_the_flow_does_not_take_stops_the_benchmark(bank: str) -> None:
    """A task script the flow leaves turns of unused is a broken benchmark: SystemExit naming it."""
    turns = [*TASKS["speak to an agent"]["phone-tree"], {"keys": "1"}]
    with pytest.raises(SystemExit, match="phone-tree script does not run: .*unused"):
        await heard_before_each_turn("phone-tree", turns, bank)


def test_caller_steps_wait_out_each_prompt_then_speak_or_press(tmp_path: Path) -> None:
    """Before each turn the caller pauses for the Piper length of what it hears plus MARGIN_MS;
    a spoken turn is the sentence in headerless µ-law (sox reads .ul), held for its length plus SPEAK_TAIL_MS."""
    heard = [["Welcome.", "Say what you need."], ["Enter your PIN."], []]
    steps = caller_steps([{"say": "yes."}, {"keys": "1234"}], heard, tmp_path)
    first_wait = audio_ms("Welcome.") + audio_ms("Say what you need.") + MARGIN_MS
    assert steps[0] == Pause(first_wait) and audio_ms("Welcome.") > 200
    assert isinstance(steps[1], Speak) and steps[1].voice == tmp_path / "turn-0.ul"
    info = subprocess.run(["soxi", str(steps[1].voice)], capture_output=True, text=True, check=True).stdout
    assert "8000" in info and "u-law" in info
    seconds = float(
        subprocess.run(["soxi", "-D", str(steps[1].voice)], capture_output=True, text=True, check=True).stdout
    )
    assert abs(steps[1].ms - SPEAK_TAIL_MS - seconds * 1000) < 5
    assert steps[2:] == [Pause(audio_ms("Enter your PIN.") + MARGIN_MS), Keys("1234")]


@pytest.mark.parametrize(
    ("task", "calls", "end_reason", "sipp_exit", "done"),
    [
        ("balance", ["/accounts/12345678/balance"], "completed", 0, True),
        ("balance", ["/accounts/12345678/balance?x=1"], "completed", 0, True),
        ("balance", ["/accounts/87654321/balance"], "completed", 0, False),
        ("balance", ["/accounts/12345678/balance"], "completed", 1, False),
        ("lost card", [], "transferred", 0, False),
        ("speak to an agent", [], "transferred", 0, True),
        ("speak to an agent", [], "completed", 0, False),
    ],
)
def test_a_task_counts_when_the_back_end_saw_its_call(
    task: str, calls: list[str], end_reason: str, sipp_exit: int, done: bool
) -> None:
    """Done: the back end saw a call starting with the task's needed path (a task with none:
    the caller was transferred), and SIPp exited 0."""
    assert task_done(task, calls, end_reason, sipp_exit) is done


def test_summarize_takes_the_median_duration_and_all_runs_done() -> None:
    """One row per task and flow: the first call's fields, the median duration, every duration,
    done only if every call was."""
    base = {"task": "balance", "flow": "banking", "caller_turns": 3, "keys_pressed": 8}
    runs = [
        {**base, "duration_s": 27.21, "task_done": True},
        {**base, "duration_s": 27.45, "task_done": False},
        {**base, "duration_s": 27.23, "task_done": True},
    ]
    row = summarize(runs)
    assert row == {**base, "duration_s": 27.23, "durations_s": [27.21, 27.45, 27.23], "task_done": False}


def test_write_gives_the_json_and_the_table(tmp_path: Path) -> None:
    """flows.json holds the rows as given; flows.md has the method with --runs and a row per task
    and flow, durations to 0.1 s, NO for a task not done."""
    rows = [
        {"task": "balance", "flow": "banking", "caller_turns": 3, "keys_pressed": 8, "duration_s": 27.23,
         "task_done": True},
        {"task": "balance", "flow": "phone-tree", "caller_turns": 3, "keys_pressed": 10, "duration_s": 32.66,
         "task_done": False},
    ]  # fmt: skip
    text = write(tmp_path / "out", rows, 2)
    assert json.loads((tmp_path / "out" / "flows.json").read_text()) == rows
    assert (tmp_path / "out" / "flows.md").read_text() == text
    assert "`scripts/compare-flows --runs 2`" in text and "median of 2 call(s)" in text
    assert text.endswith(
        "| balance | banking | 3 | 8 | 27.2 | yes |\n| balance | phone-tree | 3 | 10 | 32.7 | NO |\n"
    )


def test_committed_flows_md_is_the_table_of_flows_json() -> None:
    """benchmarks/flows.md is exactly what markdown makes of benchmarks/flows.json with the --runs
    it states: the committed report is regenerable from its figures."""
    rows = json.loads((REPO / "benchmarks" / "flows.json").read_text())
    runs = len(rows[0]["durations_s"])
    assert markdown(rows, runs) == (REPO / "benchmarks" / "flows.md").read_text()


@pytest.mark.e2e
@pytest.mark.usefixtures("asterisk")
async def test_one_real_call_asks_for_an_agent_and_is_transferred(tmp_path: Path) -> None:
    """The smallest task as a real call (SIPp speaking Piper through the sandbox Asterisk into the
    banking flow): the caller is transferred, which is what that task needs, and the store's
    answer-to-hang-up time is the duration."""
    row = await one_call("banking", "speak to an agent", TASKS["speak to an agent"]["banking"], tmp_path)
    assert row["end_reason"] == "transferred" and row["task_done"] is True
    assert row["caller_turns"] == 2 and row["keys_pressed"] == 1 and row["backend_calls"] == []
    assert 3 < row["duration_s"] < 90
