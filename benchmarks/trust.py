"""What the trust features cost on the hot paths: log and turn redaction, the store outbox, the
store writer's throughput with and without it, and walking the audit chain."""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from benchmarks.common import median
from ivr_server.observability.logging import redact_personal_data
from ivr_server.observability.metrics import Metrics
from ivr_server.privacy.redact import Redactor, SecureValues
from ivr_server.store.audit_append import AuditEvent
from ivr_server.store.audit_trail import verify_store
from ivr_server.store.database import create_engine, upgrade
from ivr_server.store.outbox import Outbox
from ivr_server.store.writer import OP_KINDS, CallEvent, CallStarted, StoreWriter
from tests.support import postgres

T0 = datetime(2026, 11, 24, tzinfo=UTC)
LOG_LINE = {
    "event": "voice.end_of_turn", "call_id": "3f2a6b1c-1234-4678-9012-345678901234",
    "channel_id": "1732456789.12", "reason": "silence", "words": "i lost my card can you block it please",
    "confidence": 0.93, "speech_ms": 2920, "timestamp": "2026-11-24T14:00:00.000000Z", "level": "info",
}  # fmt: skip
PLAIN = "i lost my card ending four four two one can you block it please"
CARD = "my card number is four one one one one one one one one one one one one one one one"
CALLS, EVENTS_PER_CALL = 50, 40  # per writer run: 50 calls of 40 events, each with its audit event


def per_call_us(fn: Callable[[], object], n: int) -> float:
    """Mean microseconds per call of ``fn`` over ``n`` calls."""
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n * 1e6


def redaction(runs: int, n: int = 5000) -> dict[str, float | None]:
    """A call's log line through the structlog redactor; caller turns through Redactor.text."""
    r = Redactor(SecureValues())
    out: dict[str, list[float]] = {"log_line_us": [], "turn_plain_us": [], "turn_with_card_us": []}
    for _ in range(runs):
        out["log_line_us"].append(per_call_us(lambda: redact_personal_data(None, "info", dict(LOG_LINE)), n))
        out["turn_plain_us"].append(per_call_us(lambda: r.text(PLAIN), n))
        out["turn_with_card_us"].append(per_call_us(lambda: r.text(CARD), n))
    return {k: median(v, 1) for k, v in out.items()}


def outbox(runs: int, n: int = 3000) -> dict[str, float | None]:
    """Journaling one store write in a fresh outbox and marking it done."""
    times = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as tmp:
            box = Outbox(Path(tmp) / "outbox.sqlite3", "bench", OP_KINDS)
            op = CallEvent("c1", 1, T0, "dtmf", {"digit": "4"})

            def one(box: Outbox = box, op: CallEvent = op) -> None:
                box.done(box.append(op))

            times.append(per_call_us(one, n))
            box.close()
    return {"append_and_done_us": median(times, 1)}


def call_ops(run: int, calls: int = CALLS, events: int = EVENTS_PER_CALL) -> list[Any]:
    """What ``calls`` calls write: each one's start, then ``events`` decisions, each audited."""
    ops: list[Any] = []
    for c in range(calls):
        call_id = f"bench-{run}-{c}"
        ops.append(CallStarted(call_id, f"ch-{call_id}", "+15550100", None, "400", "banking", [], "b", T0))
        for seq in range(1, events + 1):
            at = T0 + timedelta(seconds=seq)
            ops.append(CallEvent(call_id, seq, at, "decision", {"intent": "balance", "said": PLAIN}))
            ops.append(AuditEvent("decision", at, {"intent": "balance", "inputs": {"said": PLAIN}}, call_id))
    return ops


async def writer(url: str, runs: int, with_outbox: bool, calls: int = CALLS) -> dict[str, float | None]:
    """StoreWriter throughput into the migrated database ``url``, committed end to end."""
    rates = []
    for run in range(runs):
        engine = create_engine(url)
        tmp = tempfile.TemporaryDirectory()
        box = Outbox(Path(tmp.name) / "outbox.sqlite3", url, OP_KINDS) if with_outbox else None
        w = StoreWriter(engine, Metrics(), outbox=box)
        task = asyncio.create_task(w.run())
        ops = call_ops(run, calls)
        start = time.perf_counter()
        for op in ops:
            w.submit(op)
        assert await w.flush(300)
        rates.append(len(ops) / (time.perf_counter() - start))
        task.cancel()
        if box is not None:
            box.close()
        tmp.cleanup()
        await engine.dispose()
    return {"writes_per_s": round(statistics.median(rates))}


async def verify_speed(url: str, runs: int) -> dict[str, float | None]:
    """`audit verify` over the whole chain in ``url``: its length and rows per second."""
    engine = create_engine(url)
    try:
        rates = []
        rows = 0
        for _ in range(runs):
            start = time.perf_counter()
            verdict = await verify_store(engine, None)
            assert verdict.intact
            rates.append(verdict.rows / (time.perf_counter() - start))
            rows = verdict.rows
        return {"rows": rows, "rows_per_s": round(statistics.median(rates))}
    finally:
        await engine.dispose()


async def store(url: str, runs: int, name: str, calls: int = CALLS) -> dict[str, dict[str, float | None]]:
    """Writer (with and without the outbox) then verify, on one migrated database."""
    return {
        f"writer_{name}": await writer(url, runs, with_outbox=True, calls=calls),
        f"writer_{name}_no_outbox": await writer(url, runs, with_outbox=False, calls=calls),
        f"verify_{name}": await verify_speed(url, runs),
    }


async def run(runs: int) -> dict[str, Any]:
    """Every figure of trust.json; PostgreSQL's only when 127.0.0.1 has one."""
    results: dict[str, Any] = {"runs": runs, "redaction": redaction(runs), "outbox": outbox(runs)}
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite+aiosqlite:///{tmp}/bench.sqlite3"
        await asyncio.to_thread(upgrade, url)
        results.update(await store(url, runs, "sqlite"))
    try:
        pg = await postgres.create_database()
    except OSError:
        return results
    try:
        await asyncio.to_thread(upgrade, pg)
        results.update(await store(pg, runs, "postgres"))
    finally:
        await postgres.drop_database(pg)
    return results


def render(r: dict[str, Any]) -> str:
    """trust.md from the figures ``run`` returns."""
    red, box = r["redaction"], r["outbox"]
    lines = [
        "# What the trust features cost",
        "",
        f"`nice scripts/bench-trust --runs {r['runs']}` (medians of {r['runs']} runs; "
        "the machine is shared and",
        "noisy). Regenerate with the same command; the raw figures are in `trust.json`.",
        "",
        "| what | cost |",
        "|---|---|",
        f"| redacting one call's log line (structlog processor) | {red['log_line_us']} µs |",
        f"| redacting a caller turn without personal data | {red['turn_plain_us']} µs |",
        f"| redacting a caller turn with a spoken card number | {red['turn_with_card_us']} µs |",
        f"| journaling one store write in the outbox and marking it done | {box['append_and_done_us']} µs |",
    ]
    for db in ("sqlite", "postgres"):
        if f"writer_{db}" in r:
            with_box, without = r[f"writer_{db}"]["writes_per_s"], r[f"writer_{db}_no_outbox"]["writes_per_s"]
            lines.append(
                f"| store writer, {db}: call events + chained audit events, with / without the outbox | "
                f"{with_box} / {without} writes/s |"
            )
            v = r[f"verify_{db}"]
            lines.append(
                f"| `audit verify`, {db}: walking {v['rows']} chained events | {v['rows_per_s']} rows/s |"
            )
    lines += [
        "",
        "Redaction runs on every log line and stored row; journaling on every stored row. Both are",
        "tens of microseconds, on the event loop; the database writes themselves run off the call's path.",
        "",
    ]
    return "\n".join(lines)
