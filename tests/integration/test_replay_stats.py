"""`flows replay` and `flows stats` over stored calls (SQLite and PostgreSQL). The stored
decisions are what the engine decided with banking.yaml; the candidate adds one example phrase
to one intent, and the replay must list exactly the calls whose decision that changes."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from ivr_server.dialog.nlu.flow_model import model_for_flow
from ivr_server.dialog.replay import redecide
from ivr_server.dialog.spec.loader import check_text
from ivr_server.store.audit_append import AuditEvent
from ivr_server.store.deployments import deploy
from ivr_server.store.flow_stats import flow_stats
from ivr_server.store.writer import CallEnded, CallEvent, CallStarted, Op, Turn
from tests.conftest import REPO
from tests.integration.test_audit import write
from tests.integration.test_cli import cli

T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
BANKING = (REPO / "flows" / "banking.yaml").read_text()
EXAMPLE = "      - I want to hear my transaction history\n"
CANDIDATE = BANKING.replace(EXAMPLE, EXAMPLE + "      - where did all my money go\n")
CALLS = {  # call id -> what the caller said (or #keys) in the welcome state, turn by turn
    "c1": ["where did my money go"],  # changes: the new example makes it transactions
    "c2": ["I lost my card"],
    "c3": ["what's my balance"],
    "c4": ["tell me a joke", "agent please"],
    "c5": ["#1"],
    "c6": ["where did all my money go"],  # changes: now an exact example
}


def stored_calls(tmp_path: Path) -> list[Op]:
    spec, _ = check_text(BANKING)
    assert spec is not None
    model = model_for_flow(spec, cache_dir=tmp_path / "nlu")
    ops: list[Op] = []
    for n, (call_id, turns) in enumerate(CALLS.items()):
        at = T0 + timedelta(minutes=n)
        ops.append(CallStarted(call_id, f"ch-{call_id}", "+15550100", None, "400", "banking", [], "t", at))
        outcome = "ended"
        for i, said in enumerate(turns):
            keyed, words = (said[1:], "") if said.startswith("#") else ("", said)
            d = redecide(spec, model, "welcome", words, keyed)  # as the engine decided it
            ops.append(AuditEvent("decision", at, {"flow": "banking", "flow_version": spec.version,
                                  "state": "welcome", "inputs": {"said": words, "keyed": keyed},
                                  "intent": d.intent, "action": d.kind}, call_id))  # fmt: skip
            ops.append(CallEvent(call_id, 2 * i + 1, at, "decision", {"flow_version": spec.version}))
            if words:
                ops.append(Turn(call_id, i + 1, "caller", at, words, "silence"))
            outcome = "transfer" if d.intent == "agent" else outcome
        if call_id == "c4":  # as the runner records a repair: "say that again" after the joke
            repair = {"state": "welcome", "repair": "repeat", "flow_version": spec.version}
            ops.append(CallEvent(call_id, 50, at, "repair", repair))
        tools = [["block_card", "tool_timeout"]] if call_id == "c2" else []
        ops.append(CallEvent(call_id, 99, at, "flow_ended", {"flow": "banking", "flow_version": spec.version,
                                                             "outcome": outcome, "tools": tools}))  # fmt: skip
        ops.append(
            CallEnded(
                call_id, at + timedelta(seconds=30), "transferred" if outcome == "transfer" else "completed"
            )
        )
    return ops


async def test_replay_lists_exactly_the_calls_whose_decision_changes(
    database_url: str, engine: AsyncEngine, tmp_path: Path
) -> None:
    await write(engine, *stored_calls(tmp_path))
    candidate = tmp_path / "banking-candidate.yaml"
    candidate.write_text(CANDIDATE)
    env = {"IVR_DATABASE_URL": database_url, "IVR_DATA_DIR": str(tmp_path / "data")}
    result = cli("flows", "replay", str(candidate), "--last", "10", "--json", env=env, timeout=120)
    assert result.returncode == 1, result.stderr  # 1: some decisions would change
    report = json.loads(result.stdout)
    assert report["changed_calls"] == ["c1", "c6"]
    assert (report["calls"], report["decisions"]) == (6, 7)
    assert {c["after"]["intent"] for c in report["changes"]} == {"transactions"}
    same = tmp_path / "banking.yaml"
    same.write_text(BANKING)
    unchanged = cli("flows", "replay", str(same), "--last", "10", env=env, timeout=120)
    assert (
        unchanged.returncode == 0
        and "6 calls, 7 decisions replayed; 0 calls would change" in unchanged.stdout
    )
    # The deployed candidate, by the flow's name; only the last 3 calls.
    await deploy(engine, "banking", check_text(BANKING)[0].version, BANKING, None, None)  # type: ignore[union-attr]
    await deploy(engine, "banking", check_text(CANDIDATE)[0].version, CANDIDATE, 10, None)  # type: ignore[union-attr]
    last3 = json.loads(
        cli("flows", "replay", "banking", "--last", "3", "--json", env=env, timeout=120).stdout
    )
    assert last3["candidate"] == "banking v2" and last3["changed_calls"] == ["c6"] and last3["calls"] == 3
    assert cli("flows", "replay", "no-such-flow", env=env).returncode == 6


async def test_stats_per_version(database_url: str, engine: AsyncEngine, tmp_path: Path) -> None:
    await write(engine, *stored_calls(tmp_path))
    (row,) = [s.as_dict() for s in await flow_stats(engine, "banking")]
    assert (row["calls"], row["transfer_rate"], row["containment"], row["abandoned"]) == (
        6,
        round(1 / 6, 4),
        round(5 / 6, 4),
        0,
    )
    assert (row["avg_turns"], row["errors"], row["tool_failures"]) == (round(7 / 6, 2), 0, 1)
    assert row["repairs"] == {"repeat": 1}
    shown = cli("flows", "stats", env={"IVR_DATABASE_URL": database_url})
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.splitlines()[1].split()[:5] == ["banking", "file", row["version"], "6", "83%"]
    assert (
        shown.stdout.splitlines()[0].split()[-1] == "REPAIRS"
        and shown.stdout.splitlines()[1].split()[-1] == "repeat:1"
    )
