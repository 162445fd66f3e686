"""banking (say it) against phone-tree (press keys): the same banking tasks as real calls through
the sandbox Asterisk, call duration and caller turns per task."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import statistics
import tempfile
from pathlib import Path
from typing import Any

import httpx

from benchmarks.common import REPO
from ivr_server.config import ToolService
from ivr_server.dialog.flowtest import run_test
from ivr_server.dialog.spec.loader import load_flow
from ivr_server.store.database import create_engine, upgrade
from ivr_server.store.queries import list_calls
from ivr_server.tools.client import Service
from ivr_server.tools.demo_bank import serve
from tests.conftest import running_server, server_settings, settle
from tests.support.audio import piper, piper_voice
from tests.support.sipp import Keys, Pause, SippCall, Speak, Step, scenario

MARGIN_MS = 1200  # after a prompt's audio: reply latency and end-of-turn detection, with room
SPEAK_TAIL_MS = 400  # after the caller's own sentence, before the next step
EXTENSION = {"banking": "400", "phone-tree": "401"}

Turn = dict[str, str]  # {"say": text} or {"keys": digits}, as a flow test file says

# task -> flow -> the caller's turns.
TASKS: dict[str, dict[str, list[Turn]]] = {
    "balance": {
        "banking": [{"say": "What's my balance?"}, {"keys": "12345678"}, {"say": "No thanks, that's all."}],
        "phone-tree": [{"keys": "1"}, {"keys": "12345678"}, {"keys": "9"}],
    },
    "recent transactions": {
        "banking": [
            {"say": "What are my recent transactions?"},
            {"keys": "87654321"},
            {"say": "No thanks, that's all."},
        ],
        "phone-tree": [{"keys": "2"}, {"keys": "87654321"}, {"keys": "9"}],
    },
    "lost card": {
        "banking": [
            {"say": "I lost my card"},
            {"say": "four, four, two, one."},
            {"say": "yes."},
            {"say": "No thanks, that's all."},
        ],
        "phone-tree": [{"keys": "3"}, {"keys": "4421"}, {"keys": "1"}, {"keys": "9"}],
    },
    "lost card, digits in the first sentence": {
        "banking": [
            {"say": "I lost my card ending in four four two one."},
            {"say": "yes."},
            {"say": "No thanks, that's all."},
        ],
    },
    "speak to an agent": {
        # the sandbox's agent desk never answers: the warm transfer gives up, and key 0 (pressed
        # while on hold, kept) asks again, for the dialplan's queue
        "banking": [{"say": "I want to speak to an agent."}, {"keys": "0"}],
        "phone-tree": [{"keys": "0"}],
    },
}
NEEDED = {  # what the back end must have seen for the task to count
    "balance": "/accounts/12345678/balance",
    "recent transactions": "/accounts/87654321/transactions",
    "lost card": "/cards/block",
    "lost card, digits in the first sentence": "/cards/block",
}


def audio_ms(text: str) -> int:
    """How long Piper takes to say ``text``, in ms (the caller waits that long for a prompt)."""
    return int(len(piper(text, 8000)) / 8)


async def heard_before_each_turn(flow_name: str, turns: list[Turn], bank: str) -> list[list[str]]:
    """What the system says before each caller turn (and after the last), from an in-process run."""
    flow = load_flow(REPO / "flows" / f"{flow_name}.yaml")
    services = {name: Service(bank) for name in {t.service for t in flow.tools.values()}}
    result = await run_test(flow, {"name": "compare", "turns": turns}, services, dt.date.today())
    if result.failures:
        raise SystemExit(f"compare-flows: {flow_name} script does not run: {result.failures}")
    assert result.session is not None
    groups: list[list[str]] = [[]]
    for who, text in result.session.transcript:
        if who == "caller":
            groups.append([])
        else:
            groups[-1].append(text)
    return groups


def caller_steps(turns: list[Turn], heard: list[list[str]], workdir: Path) -> list[Step]:
    """SIPp steps: before each turn, wait out what the system says first (plus MARGIN_MS), then
    speak the turn's sentence (Piper, headerless µ-law written to ``workdir``) or press its keys."""
    steps: list[Step] = []
    for i, turn in enumerate(turns):
        steps.append(Pause(sum(audio_ms(t) for t in heard[i]) + MARGIN_MS))
        if "say" in turn:
            voice = workdir / f"turn-{i}.ul"
            steps.append(Speak(voice, int(piper_voice(turn["say"], voice) * 1000) + SPEAK_TAIL_MS))
        else:
            steps.append(Keys(turn["keys"]))
    return steps


def task_done(task: str, backend_calls: list[str], end_reason: str | None, sipp_exit: int) -> bool:
    """The back end saw the call the task needs (no such call: the caller was transferred), and
    SIPp finished its scenario."""
    needed = NEEDED.get(task)
    reached = any(p.startswith(needed) for p in backend_calls) if needed else end_reason == "transferred"
    return reached and sipp_exit == 0


async def one_call(flow_name: str, task: str, turns: list[Turn], workdir: Path) -> dict[str, Any]:
    """One real call of ``task`` into ``flow_name`` (the sandbox Asterisk must be running)."""
    dry, dry_port = await serve("127.0.0.1", 0)  # its own bank: the real call's must see only the call
    try:
        heard = await heard_before_each_turn(flow_name, turns, f"http://127.0.0.1:{dry_port}")
    finally:
        await dry.cleanup()
    runner, port = await serve("127.0.0.1", 0)
    bank = f"http://127.0.0.1:{port}"
    try:
        call = SippCall(
            scenario(caller_steps(turns, heard, workdir), workdir, bye_timeout_ms=60000),
            service=EXTENSION[flow_name],
            workdir=workdir,
        )
        database = f"sqlite+aiosqlite:///{workdir / 'ivr.sqlite3'}"
        await asyncio.to_thread(upgrade, database, "head")  # Alembic runs its own event loop
        settings = server_settings(
            database, tools_services={"bank": ToolService.model_validate({"url": bank})}
        )
        async with running_server(settings) as server:
            sipp_exit = await call.run()
            await settle(server, 30)
        async with httpx.AsyncClient() as http:
            made = [c["path"] for c in (await http.get(f"{bank}/_calls")).json()]
    finally:
        await runner.cleanup()
    engine = create_engine(database)
    try:
        (record,) = await list_calls(engine, 5)
    finally:
        await engine.dispose()
    assert record.answered_at is not None and record.ended_at is not None
    return {
        "task": task,
        "flow": flow_name,
        "caller_turns": len(turns),
        "keys_pressed": sum(len(t.get("keys", "")) for t in turns),
        "duration_s": round((record.ended_at - record.answered_at).total_seconds(), 2),
        "end_reason": record.end_reason,
        "task_done": task_done(task, made, record.end_reason, sipp_exit),
        "backend_calls": made,
    }


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One task and flow over its calls: the first call's row with the median duration, every
    duration, and done only if every call did it."""
    return {
        **runs[0],
        "duration_s": statistics.median(r["duration_s"] for r in runs),
        "durations_s": [r["duration_s"] for r in runs],
        "task_done": all(r["task_done"] for r in runs),
    }


async def run(runs: int, only: str | None = None) -> list[dict[str, Any]]:
    """``runs`` calls per task and flow (only task ``only`` if given), each printed as it ends;
    one summary row per task and flow."""
    rows = []
    for task, flows in TASKS.items():
        if only and task != only:
            continue
        for flow_name, turns in flows.items():
            calls = []
            for _ in range(runs):
                with tempfile.TemporaryDirectory() as tmp:
                    calls.append(await one_call(flow_name, task, turns, Path(tmp)))
                print(json.dumps(calls[-1]), flush=True)
            rows.append(summarize(calls))
    return rows


def markdown(rows: list[dict[str, Any]], runs: int) -> str:
    """flows.md: the method, then one table row per task and flow."""
    lines = [
        "# banking (say it) vs phone-tree (press keys): the same tasks as real calls",
        "",
        f"Regenerate: `scripts/compare-flows --runs {runs}` (sandbox Asterisk running). Each call: SIPp",
        "through the sandbox Asterisk to the server, the demo bank behind it. The caller waits for each",
        f"prompt to finish (its Piper length + {MARGIN_MS} ms) before speaking or keying: no barge-in, so",
        "durations are those of a caller who listens to every prompt. Duration: answer to hang-up",
        f"(or transfer) in the store, median of {runs} call(s). 'done': the back end saw the call the",
        "task needs (or the caller reached [ivr-agents]).",
        "",
        "| Task | Flow | Caller turns | Keys pressed | Call duration (s) | Done |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['task']} | {r['flow']} | {r['caller_turns']} | {r['keys_pressed']} | "
            f"{r['duration_s']:.1f} | {'yes' if r['task_done'] else 'NO'} |"
        )
    return "\n".join(lines) + "\n"


def write(out: Path, rows: list[dict[str, Any]], runs: int) -> str:
    """flows.json and flows.md into ``out``; returns the markdown."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "flows.json").write_text(json.dumps(rows, indent=2) + "\n")
    text = markdown(rows, runs)
    (out / "flows.md").write_text(text)
    return text
