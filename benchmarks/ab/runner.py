"""The real calls: each plan's turns played by SIPp through the sandbox Asterisk into a server in
this process, the demo bank behind it. Calls run one at a time, in batches of one flow: a batch
holds the sandbox's lock (others' tests share it) for at most BATCH_S, with one server, one bank
and one store; each call's slice of the bank's log and its store row are taken as it ends."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from benchmarks.ab.caller import Hearing, Plan, as_dict, flow_named, plan
from benchmarks.ab.goals import Goal
from benchmarks.ab.verify import first_useful_s, verdict
from benchmarks.flow_comparison import EXTENSION, audio_ms, caller_steps
from ivr_server.app import IvrServer
from ivr_server.config import ToolService
from ivr_server.errors import AriError
from ivr_server.speech.adapt.compile import Compiler
from ivr_server.speech.voice_services import engine_spec
from ivr_server.store.database import create_engine, upgrade
from ivr_server.store.queries import call_events_of, list_calls, turns_of
from ivr_server.tools.client import Service
from ivr_server.tools.demo_bank import serve
from tests.conftest import running_server, server_settings, settle
from tests.support.sipp import Pause, SippCall, Step, scenario

LOCK = Path("/tmp/asterisk.lock")  # taken by everyone placing calls into the shared sandbox
BATCH_S = 240  # the lock is given up between batches, so others get a turn every few minutes
PATIENCE_MS = 10000  # a caller whose script is over and is not let go hangs up after this
RETRY_AFTER_S = 15
TURN_GAP_S = 5  # between batches: the lock is free this long, for whoever waits on it (flock is not FIFO)
TRIES = 3  # a call the shared sandbox interfered with is placed again, at most this often
SPOKEN_FLOWS = ("banking",)  # callers speak here (the phone tree's key)


@asynccontextmanager
async def sandbox_turn(lock: Path = LOCK) -> AsyncIterator[None]:
    """The sandbox's lock, held exclusively (waiting in a thread, not blocking the loop)."""
    fd = os.open(lock, os.O_CREAT | os.O_RDWR, 0o666)
    try:
        await asyncio.to_thread(fcntl.flock, fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def steps_of(plan: Plan, workdir: Path) -> list[Step]:
    """The caller's SIPp steps (flow_comparison.caller_steps: wait out each prompt, then speak or
    key), with an agent's ring (nobody answers in the sandbox) waited out before the turn after it."""
    steps = caller_steps(plan.turns, plan.heard, workdir)
    for i, ms in plan.rung_ms.items():
        pause = steps[2 * i]
        if i < len(plan.turns) and isinstance(pause, Pause):
            steps[2 * i] = Pause(pause.ms + ms)
    return steps


def sipp_call(plan: Plan, calldir: Path) -> SippCall:
    """SIPp with the plan's steps (their files in ``calldir``). After its last turn the caller
    waits for what the line should still say, and PATIENCE_MS more, for the line to hang up (or
    transfer it); then it hangs up itself, and the scenario has failed."""
    calldir.mkdir()
    steps = steps_of(plan, calldir)
    last = len(plan.turns)
    ending_ms = sum(audio_ms(t) for t in plan.heard[last]) + plan.rung_ms.get(last, 0) + PATIENCE_MS
    caller_ms = sum(getattr(s, "ms", 0) for s in steps) + ending_ms  # keys aside
    return SippCall(scenario(steps, calldir, bye_timeout_ms=ending_ms), service=EXTENSION[plan.flow],
                    workdir=calldir, timeout_s=caller_ms / 1000 + 60)  # fmt: skip


async def _bank_log(http: httpx.AsyncClient, bank: str) -> list[dict[str, Any]]:
    return list((await http.get(f"{bank}/_calls")).json())


async def run_batch(
    flow_name: str,
    plans: list[Plan],
    workdir: Path,
    on_call: Callable[[dict[str, Any]], None],
    tried: int = 0,
) -> tuple[int, dict[str, Any] | None]:
    """Calls of ``plans`` (all of ``flow_name``) in one batch, until BATCH_S has passed; each row
    goes to ``on_call`` (the first plan's ``tried`` times before). Returns how many were called,
    and the row of a call the sandbox interfered with, which ends the batch: the next try gets a
    new server, and so a new ARI connection."""
    done = 0
    async with sandbox_turn():
        started = time.monotonic()
        runner, port = await serve("127.0.0.1", 0)
        bank = f"http://127.0.0.1:{port}"
        database = f"sqlite+aiosqlite:///{workdir / 'ivr.sqlite3'}"
        await asyncio.to_thread(upgrade, database, "head")  # Alembic runs its own event loop
        settings = server_settings(
            database, tools_services={"bank": ToolService.model_validate({"url": bank})}
        )
        store = create_engine(database)
        try:
            async with running_server(settings) as server, httpx.AsyncClient() as http:
                if server.voice is None or server.voice.services.asr is None:
                    raise SystemExit("bench-ab: the server started without a recognizer (see its log)")
                asr = server.voice.services.asr.model_id
                seen: set[str] = set()
                for n, plan in enumerate(plans):
                    calldir = workdir / f"{n:03d}-{plan.goal.id}-{flow_name}"
                    row = await _place(server, store, http, bank, plan, calldir, seen)
                    if row.get("interfered"):
                        return done, row
                    on_call({**row, "asr": asr, "tries": (tried if n == 0 else 0) + 1})
                    done += 1
                    if time.monotonic() - started > BATCH_S:
                        break
        finally:
            await store.dispose()
            await runner.cleanup()
    return done, None


async def asterisk_started(server: IvrServer) -> str | None:
    """When the sandbox Asterisk started (ARI's asterisk/info), or None if it does not answer: a
    restart during a call (a test run that restarts it, not holding the sandbox's lock) ends the
    call as a caller's hang-up, before the server has even noticed ARI go."""
    assert server.manager is not None
    try:
        info = await server.manager.deps.rest.asterisk_info()
    except (AriError, OSError):
        return None
    status = info.get("status")
    return str(status.get("startup_time")) if isinstance(status, dict) else None


def _ari_connects(server: IvrServer) -> float:
    return server.metrics.registry.get_sample_value("ivr_ari_connects_total") or 0.0


async def _place(
    server: IvrServer, store: AsyncEngine, http: httpx.AsyncClient, bank: str, plan: Plan, calldir: Path,
    seen: set[str],
) -> dict[str, Any]:  # fmt: skip
    """One real call of ``plan``, and its row. ``interfered``: the shared sandbox was not ours for
    the whole call (Asterisk restarted, or another server took the ARI app): no figure of the flow."""
    async with asyncio.timeout(90):  # a restarted Asterisk: the server reconnects by itself
        # the server has no event for it: its gauge is what there is
        while server.metrics.registry.get_sample_value("ivr_ari_connected") != 1:  # noqa: ASYNC110
            await asyncio.sleep(0.5)
    connects = _ari_connects(server)
    booted = await asterisk_started(server)
    call = sipp_call(plan, calldir)
    before = len(await _bank_log(http, bank))
    sipp_exit = await call.run()
    try:
        await settle(server, 30)
    except TimeoutError:
        return _interfered(plan, "the call's session did not end 30 s after SIPp did")
    made = (await _bank_log(http, bank))[before:]
    newest = await list_calls(store, 1)
    if not newest or newest[0].id in seen or _ari_connects(server) != connects:
        said = call.errors()[-200:]
        return _interfered(plan, f"the sandbox's ARI connection was lost or taken during the call ({said!r})")
    if booted is None or await asterisk_started(server) != booted:  # restarted after the call ended it
        return _interfered(plan, f"Asterisk restarted during the call (started {booted})")
    record = newest[0]
    seen.add(record.id)
    events = await call_events_of(store, record.id)
    heard = [t.text for t in await turns_of(store, record.id) if t.role == "caller"]
    return {**_row(plan, made, record, events, sipp_exit, call), "heard": heard}


def _interfered(plan: Plan, why: str) -> dict[str, Any]:
    """The row of a call the shared sandbox was not ours for: no figure of the flow."""
    return {"goal": plan.goal.id, "flow": plan.flow, "repair": plan.goal.repair, "done": False,
            "interfered": True, "why_not": why}  # fmt: skip


def _row(plan: Plan, made: list[dict[str, Any]], record: Any, events: list[Any], sipp_exit: int,
         call: SippCall) -> dict[str, Any]:  # fmt: skip
    """One call's figures (see report.py for what each means)."""
    answered = record.answered_at
    ended = record.ended_at
    handoff = next((e.at.timestamp() for e in events if e.type == "handoff"), None)
    flow_ended: dict[str, Any] = next((e.payload for e in events if e.type == "flow_ended"), {})
    done, why = verdict(plan.goal, made, record.end_reason, sipp_exit)
    return {
        "goal": plan.goal.id,
        "flow": plan.flow,
        "repair": plan.goal.repair,
        "done": done,
        "why_not": why or (call.errors()[-300:] if sipp_exit else ""),
        "duration_s": round((ended - answered).total_seconds(), 2) if answered and ended else None,
        "caller_turns": len(plan.turns),
        "keys_pressed": sum(len(t.get("keys", "")) for t in plan.turns),
        "end_reason": record.end_reason,
        "transferred": record.end_reason == "transferred",
        "agent_attempts": len(flow_ended.get("agent_attempts") or []),
        "first_useful_s": first_useful_s(plan.goal, made, answered.timestamp(), handoff)
        if answered
        else None,
        "repairs_recognized": [r for _, r in flow_ended.get("repairs") or []],
        "states": flow_ended.get("states"),
        "backend_calls": [{k: c.get(k) for k in ("method", "path", "body")} for c in made],
        "planned": as_dict(plan),
        "sipp_exit": sipp_exit,
    }


def hearing_for(flow_name: str) -> Hearing:
    """The recognizer the bench's server loads (its settings' engine, the flow's resources from
    the same cache), to plan with the caller's words as the call will hear them."""
    settings = server_settings("sqlite+aiosqlite://")
    engine = engine_spec(settings, 8000).load().engine
    resources = Compiler(settings.asr_resources_path).compile(flow_named(flow_name))
    return Hearing(engine, resources)


async def plans_for(goals: list[Goal], flows: tuple[str, ...], hear: bool = True) -> list[Plan]:
    """Each goal's plan through each of ``flows``, against a bank of its own (so the real calls'
    bank sees only the real calls); a spoken flow's with the caller's words as the recognizer
    hears them (``hear``; off: as said)."""
    runner, port = await serve("127.0.0.1", 0)
    services = {"bank": Service(f"http://127.0.0.1:{port}")}
    try:
        plans = []
        for f in flows:
            hearing = await asyncio.to_thread(hearing_for, f) if hear and f in SPOKEN_FLOWS else None
            plans += [await plan(f, g, services, hearing) for g in goals]
        return plans
    finally:
        await runner.cleanup()


def logged_rows(log: Path) -> list[dict[str, Any]]:
    """The rows a run wrote to ``log`` (none if there is no such file)."""
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


async def run_calls(plans: list[Plan], workdir: Path, log: Path, at_commit: str) -> list[dict[str, Any]]:
    """Every plan as a real call, batch after batch per flow, each row printed as it ends and
    appended to ``log`` (JSON lines). Calls ``log`` already has rows for (a run cut short) are not
    placed again: their rows are taken from it, the first of each goal and flow per --runs (a call
    the sandbox interfered with is placed again), but only rows of the same ``at_commit``: a run
    of other code, or one cut short and then thrown away, is never taken for this one."""
    done = [r for r in logged_rows(log) if r.get("commit") == at_commit]
    rows: list[dict[str, Any]] = []
    todo_all: list[Plan] = []
    for p in plans:
        mine = (r for r in done if (r["goal"], r["flow"]) == (p.goal.id, p.flow) and not r.get("interfered"))
        had = next(mine, None)
        if had is not None:
            done.remove(had)
            rows.append(had)
        else:
            todo_all.append(p)

    def keep(row: dict[str, Any]) -> None:
        row = {**row, "commit": at_commit}
        rows.append(row)
        with log.open("a") as f:
            f.write(json.dumps(row) + "\n")
        short = ("goal", "flow", "done", "why_not", "duration_s", "first_useful_s")
        print(json.dumps({k: row.get(k) for k in short}), flush=True)

    for flow_name in dict.fromkeys(p.flow for p in todo_all):
        todo = [p for p in todo_all if p.flow == flow_name]
        batch = tries = 0
        while todo:
            batch += 1
            place = workdir / f"{flow_name}-{batch}"
            place.mkdir(parents=True)
            called, lost = await run_batch(flow_name, todo, place, keep, tries)
            todo = todo[called:]
            tries = 0 if called else tries
            if lost is None:
                if todo:
                    await asyncio.sleep(TURN_GAP_S)
                continue
            tries += 1
            print(f"bench-ab: {lost['goal']} {flow_name} (try {tries}): {lost['why_not']}", flush=True)
            if tries < TRIES:
                await asyncio.sleep(RETRY_AFTER_S)
            else:
                keep({**lost, "tries": tries})
                todo, tries = todo[1:], 0
    return rows
